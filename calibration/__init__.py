"""aknet_edge.calibration: calibration clips, the INT8 Q/DQ graph and the FP16 graph.

Imports without TensorRT: TensorRT's implicit calibrators are made by a
factory in :mod:`aknet_edge.runtime.trt` only when a build asks for them.
"""

from .data import CalibrationSet, find_clips, load_calibration_set, preprocess_clip
from .precision import CALIB_METHODS, convert_fp16, float_kept_nodes, quantize_int8

__all__ = ["CALIB_METHODS", "CalibrationSet", "convert_fp16", "find_clips", "float_kept_nodes",
           "load_calibration_set", "preprocess_clip", "quantize_int8"]
