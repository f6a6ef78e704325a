"""Calibration choices and their defaults, as the calibration stage names them.

The definitions are ground (:mod:`aknet_edge.calib_options`): the package contract and the runtime's TensorRT
calibrators read them too, and neither may import a stage. Re-exported here unchanged."""

from __future__ import annotations

from aknet_edge.calib_options import (CALIB_METHODS, CALIB_MODES, DEFAULT_CLIPS, DEFAULT_IMPLICIT_METHOD,
                                      DEFAULT_INT8_WEIGHTS, DEFAULT_METHOD, DEFAULT_PERCENTILE, IMPLICIT_METHODS,
                                      INT8_WEIGHT_FORMS, PERCENTILE_RANGE, check_int8_weights, check_method,
                                      check_percentile, implicit_method)

__all__ = [
    "CALIB_METHODS", "CALIB_MODES", "DEFAULT_CLIPS", "DEFAULT_IMPLICIT_METHOD", "DEFAULT_INT8_WEIGHTS", "DEFAULT_METHOD",
    "DEFAULT_PERCENTILE", "IMPLICIT_METHODS", "INT8_WEIGHT_FORMS", "PERCENTILE_RANGE", "check_int8_weights",
    "check_method", "check_percentile", "implicit_method",
]
