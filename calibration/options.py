"""Calibration choices and their defaults: the one definition the build, its CLI and the quantizer share."""

from __future__ import annotations

from aknet_edge.errors import ConfigError

CALIB_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "percentile"  # measured best keypoint overlap on the demo (README, INT8 section)
DEFAULT_PERCENTILE = 99.99  # clips fewer outliers than ONNX Runtime's 99.999 default; measured better on the demo
PERCENTILE_RANGE = (90.0, 100.0)  # [low, high): below 90 clips most of a histogram away; 100 is MinMax
SYNTHETIC = "synthetic"  # calibrate on the synthetic generator's clips


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
