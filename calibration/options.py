"""Calibration choices and their defaults: the one definition the build, its CLI, the package contract,
the quantizer and TensorRT's implicit calibrators share. Imports nothing heavy."""

from __future__ import annotations

from aknet_edge.errors import ConfigError

CALIB_METHODS = ("minmax", "entropy", "percentile")  # explicit (Q/DQ) calibration with ONNX Runtime
DEFAULT_METHOD = "percentile"  # measured best keypoint overlap on the demo (README, INT8 section)
DEFAULT_PERCENTILE = 99.99  # clips fewer outliers than ONNX Runtime's 99.999 default; measured better on the demo
PERCENTILE_RANGE = (90.0, 100.0)  # [low, high): below 90 clips most of a histogram away; 100 is MinMax
DEFAULT_CLIPS = 64  # calibration clips
CALIB_MODES = ("explicit", "implicit")  # explicit: INT8 Q/DQ graph (every TensorRT); implicit: TensorRT calibrates
IMPLICIT_METHODS = ("entropy", "minmax")  # what TensorRT's implicit calibrators offer (8.5-10.x)
DEFAULT_IMPLICIT_METHOD = "entropy"


def check_method(method: str) -> str:
    if method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {method!r}: expected one of {', '.join(CALIB_METHODS)}")
    return method


def check_percentile(percentile: float) -> float:
    low, high = PERCENTILE_RANGE
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not low <= percentile < high:
        raise ConfigError(f"--calib-percentile {percentile}: expected a value in [{low:g}, {high:g}), "
                          f"e.g. {DEFAULT_PERCENTILE}")
    return float(percentile)


def implicit_method(method: str) -> str:
    """The TensorRT calibrator for an explicit method: the same where TensorRT has it, else the default."""
    return method if method in IMPLICIT_METHODS else DEFAULT_IMPLICIT_METHOD
