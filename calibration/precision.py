"""Precision lives in the graph: an INT8 Q/DQ ONNX and an FP16 ONNX with the keypoint path kept in FP32.

TensorRT 11 removed the FP16/INT8 builder flags and implicit calibration, so
both variants are made here as ONNX graphs that a strongly typed build takes
as they are, and that ONNX Runtime runs for the accuracy report.

Kept in float in both: keypoint scoring (``/scorer``), the coordinate path
(``/coord_proj``), and every node of selection and ranking (TopK, gathers,
scatters, prefix sums).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from aknet_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)
CALIB_METHODS = ("minmax", "entropy", "percentile")
FLOAT_PREFIXES = ("/scorer", "/coord_proj", "/KeypointSelect", "/KeypointRank")
FLOAT_OP_TYPES = ("TopK", "CumSum", "ScatterElements", "GatherElements", "Gather", "Softmax", "Min", "Expand")


def float_kept_nodes(model: onnx.ModelProto, extra_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Names of nodes that must stay FP32: the keypoint scoring, selection, ranking and coordinate path."""
    prefixes = FLOAT_PREFIXES + tuple(extra_prefixes)
    return [n.name for n in model.graph.node if n.name.startswith(prefixes) or n.op_type in FLOAT_OP_TYPES]


DEFAULT_PERCENTILE = 99.99


def scorer_feed_prefixes(cut: int) -> tuple[str, ...]:
    """Encoder nodes INT8 keeps in float by default: the stem and the stage whose output the scorer reads.

    Top-K over near-equal attention scores is sensitive to small feature
    errors. The stem quantizes the raw image and the last stage feeds the
    scorer directly; keeping both in float lifts the demo's keypoint overlap
    with FP32 from 0.85 to 0.91 (``bench/int8_report.py`` measures the variants).
    """
    return ("/encoder/conv1", f"/encoder/layer{cut}/")


class _Reader:
    """ONNX Runtime CalibrationDataReader over preprocessed clips, one clip per batch (scales do not depend on B)."""

    def __init__(self, input_name: str, clips: np.ndarray) -> None:
        self.input_name, self.clips = input_name, clips
        self._it: Iterator | None = None
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter({self.input_name: c[None].astype(np.float32)} for c in self.clips)


def quantize_int8(model: onnx.ModelProto, clips: np.ndarray, method: str = "minmax",
                  extra_float_prefixes: tuple[str, ...] = (), percentile: float = DEFAULT_PERCENTILE) -> onnx.ModelProto:
    """Static INT8 Q/DQ: symmetric INT8 activations, per-channel symmetric INT8 weights, zero points 0.

    ``percentile`` (method ``percentile``): the share of each activation histogram the range covers;
    99.99 clips fewer outliers away than ONNX Runtime's 99.999 default and measured better on the demo.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {method!r}: expected one of {', '.join(CALIB_METHODS)}")
    if len(clips) == 0:
        raise DataError("no calibration clips: INT8 needs real clips to measure activation ranges")
    if not 90.0 <= percentile < 100.0:
        raise ConfigError(f"--calib-percentile {percentile}: expected a value in [90, 100), e.g. 99.99")
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    keep = float_kept_nodes(model, extra_float_prefixes)
    with tempfile.TemporaryDirectory(prefix="aknet-q-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, src)
        with contextlib.redirect_stdout(io.StringIO()):  # ORT's calibrators print progress to stdout
            quantize_static(
                str(src), str(dst), _Reader(model.graph.input[0].name, clips),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=cm, op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                nodes_to_exclude=keep,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "CalibTensorRangeSymmetric": True, "CalibMovingAverage": False,
                               "QuantizeBias": False,  # TensorRT takes INT8 Q/DQ only: biases stay float
                               "CalibPercentile": float(percentile)},
            )
        q = onnx.load(str(dst))
    q.producer_name = "aknet_edge"
    log.info("INT8 Q/DQ (%s): %d nodes kept in float", method, len(keep))
    return q


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and activations, FP32 graph I/O, the keypoint path blocked from conversion."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    keep = float_kept_nodes(model)
    out = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, disable_shape_infer=False)
    out.producer_name = "aknet_edge"
    return out
