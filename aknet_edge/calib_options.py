"""Calibration choices and their defaults: the one definition the build, its CLI, the package contract,
the quantizer and TensorRT's implicit calibrators share.

Ground (pyproject.toml, [tool.importlinter]): the package contract (:mod:`aknet_edge.package`) and the runtime's
TensorRT calibrators read these, so they live below every stage; :mod:`aknet_edge.calibration.options` re-exports
them for the calibration stage. Imports nothing heavy."""

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
# How an INT8 Q/DQ graph stores its weights (which TensorRT takes which: aknet_edge.package.INT8_WEIGHTS_SERVE).
# "int8": INT8 initializers behind DequantizeLinear (smaller; TensorRT 10.x/11.x, ONNX Runtime);
# "qdq": FP32 initializers behind a QuantizeLinear -> DequantizeLinear pair (TensorRT 8.x: 8.4's builder rejected
# INT8 constants and nothing shows 8.5/8.6 take them).
INT8_WEIGHT_FORMS = ("int8", "qdq")
DEFAULT_INT8_WEIGHTS = "int8"


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


def check_int8_weights(form: str) -> str:
    if form not in INT8_WEIGHT_FORMS:
        raise ConfigError(f"INT8 weight form {form!r}: expected one of {', '.join(INT8_WEIGHT_FORMS)}")
    return form


def implicit_method(method: str) -> str:
    """The TensorRT calibrator for an explicit method: the same where TensorRT has it, else the default."""
    return method if method in IMPLICIT_METHODS else DEFAULT_IMPLICIT_METHOD
