"""aknet_edge.calibration: calibration clips, the INT8 Q/DQ graph and the FP16 graph.

Imports without TensorRT: TensorRT's implicit calibrators are made by a
factory in :mod:`aknet_edge.runtime.trt` only when a build asks for them.
Names load lazily, so ``aknet_edge.calibration.options`` (the calibration
choices and defaults, defined in the ground: :mod:`aknet_edge.calib_options`)
stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CalibrationSet": "data", "find_clips": "data", "load_calibration_set": "data", "preprocess_clip": "data",
    "convert_fp16": "precision", "float_kept_nodes": "islands", "quantize_int8": "precision",
    "explicit_qdq_axes": "precision", "int8_weight_form": "precision", "fp32_island_nodes": "islands",
    "CALIB_METHODS": "options", "INT8_WEIGHT_FORMS": "options",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
