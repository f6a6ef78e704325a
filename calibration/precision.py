"""Precision lives in the graph: an INT8 Q/DQ ONNX and an FP16 ONNX with the keypoint path kept in FP32.

TensorRT 11 removed the FP16/INT8 builder flags and implicit calibration, so
both variants are made here as ONNX graphs that a strongly typed build takes
as they are, and that ONNX Runtime runs for the accuracy report.

What stays in float comes from two places. The model declares module paths
(``model.float_modules("int8")`` / ``("fp16")`` in ``aknet_edge/model.py``),
which the caller maps to node names with
``aknet_edge.export.module_nodes.nodes_of_modules`` and passes here as
``keep_float_nodes``; this module knows no module names. The graph itself
decides the rest: every node of keypoint selection and ranking (the aknet
custom nodes and their inlined bodies) and the selection op types (TopK,
gathers, scatters, prefix sums), which have no module to name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from aknet_edge.errors import ConfigError, DataError
from .islands import CUSTOM_OP_SCOPES, FLOAT_OP_TYPES, float_kept_nodes  # noqa: F401 - re-exported
from .options import (DEFAULT_INT8_WEIGHTS, DEFAULT_METHOD, DEFAULT_PERCENTILE, check_int8_weights, check_method,
                      check_percentile)

log = logging.getLogger(__name__)


PREPROCESS_ADVICE = "pre-processing before quantization"  # in both lines ONNX Runtime's quantize_static logs


class _NoPreprocessAdvice(logging.Filter):
    """Drops ONNX Runtime's "Please consider (to run) pre-processing before quantization" advice, and nothing else.

    ``quantize_static`` logs it twice a call on the root logger whenever the graph lacks
    ``onnxruntime.quantization.shape_inference.quant_pre_process``'s metadata: 8 warnings a default build. We
    measured that pre-processing on the demo model (ONNX Runtime 1.32, 330 held-out clips, the build's own
    evaluation) and it does not apply here: its symbolic shape inference fails on our graph; with that skipped,
    shape inference alone gives the same Q/DQ graph (156 nodes; top-1 97.58%, agreement with FP32 99.39%,
    keypoint IoU 0.919, CPU latency within noise), and its graph optimisation folds 9 of the 43 nodes the model
    keeps in FP32 (the keep list no longer names them) for the same accuracy and no speed. So the build leaves the
    graph as exported and silences the advice, only around the call that gives it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return PREPROCESS_ADVICE not in record.getMessage()


_ADVICE_FILTER = _NoPreprocessAdvice()
_advice_lock = threading.Lock()
_advice_users = 0  # quantize calls running (threads): the filter stays on the root logger until the last ends


@contextlib.contextmanager
def _no_preprocess_advice() -> Iterator[None]:
    global _advice_users
    root = logging.getLogger()
    with _advice_lock:
        _advice_users += 1
        root.addFilter(_ADVICE_FILTER)
    try:
        yield
    finally:
        with _advice_lock:
            _advice_users -= 1
            if not _advice_users:
                root.removeFilter(_ADVICE_FILTER)


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


def quantize_int8(model: onnx.ModelProto, clips: np.ndarray, method: str = DEFAULT_METHOD,
                  keep_float_nodes: Sequence[str] = (), percentile: float = DEFAULT_PERCENTILE,
                  weights: str = DEFAULT_INT8_WEIGHTS) -> onnx.ModelProto:
    """Static INT8 Q/DQ: symmetric INT8 activations, per-channel symmetric INT8 weights, zero points 0.

    ``keep_float_nodes``: node names to leave in FP32, normally
    ``nodes_of_modules(model, aknet_model.float_modules("int8"))``; selection
    and ranking nodes stay FP32 regardless (:func:`float_kept_nodes`).
    ``percentile`` (method ``percentile``): the share of each activation histogram the range covers;
    99.99 clips fewer outliers away than ONNX Runtime's 99.999 default and measured better on the demo.
    ``weights`` (:data:`~.options.INT8_WEIGHT_FORMS`): ``"int8"`` stores the weights as INT8 initializers
    behind DequantizeLinear (TensorRT 10.x/11.x); ``"qdq"`` keeps them FP32 behind a QuantizeLinear ->
    DequantizeLinear pair (ONNX Runtime's ``AddQDQPairToWeight``), the form TensorRT 8.x's builder takes (8.4's
    rejected INT8 constants). Same calibration, same scales: the two compute the same thing. Every
    per-channel Q/DQ gets an explicit ``axis`` (TensorRT 11.0 changed the default it assumes).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    check_method(method)
    if len(clips) == 0:
        raise DataError("no calibration clips: INT8 needs real clips to measure activation ranges")
    check_percentile(percentile)
    check_int8_weights(weights)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    keep = float_kept_nodes(model, keep_float_nodes)
    with tempfile.TemporaryDirectory(prefix="aknet-q-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, src)
        # ORT's calibrators print progress to stdout; its pre-processing advice does not apply (_NoPreprocessAdvice)
        with contextlib.redirect_stdout(io.StringIO()), _no_preprocess_advice():
            quantize_static(
                str(src), str(dst), _Reader(model.graph.input[0].name, clips),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=cm, op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                nodes_to_exclude=keep,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "CalibTensorRangeSymmetric": True, "CalibMovingAverage": False,
                               "QuantizeBias": False,  # TensorRT takes INT8 Q/DQ only: biases stay float
                               "CalibPercentile": float(percentile),
                               "AddQDQPairToWeight": weights == "qdq"},
            )
        q = onnx.load(str(dst))
    q.producer_name = "aknet_edge"
    explicit_qdq_axes(q)
    log.info("INT8 Q/DQ (%s, %s weights): %d nodes kept in float", method, weights, len(keep))
    return q


def int8_weight_form(model: onnx.ModelProto) -> str | None:
    """``"int8"`` or ``"qdq"``: how a Q/DQ graph stores its quantized weights; None when it quantizes none."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    forms = set()
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) == onnx.TensorProto.INT8:
            forms.add("int8")
        if n.op_type == "QuantizeLinear" and inits.get(n.input[0]) == onnx.TensorProto.FLOAT:
            forms.add("qdq")
    if len(forms) > 1:
        raise ConfigError(f"the graph {model.graph.name!r} mixes INT8 weight forms {sorted(forms)}; quantize it again")
    return forms.pop() if forms else None


def explicit_qdq_axes(model: onnx.ModelProto) -> int:
    """Write ``axis`` on every per-channel QuantizeLinear/DequantizeLinear that lacks it; returns how many.

    The value written is what the graph means now (ONNX's default, 1, at the opsets we export), so ONNX
    Runtime's results do not change; TensorRT 8.x and 10.1 assumed 0 when the attribute was absent and 11.0
    assumes 1, so only an explicit axis reads the same everywhere.
    """
    scales = {i.name: int(np.prod(i.dims)) if len(i.dims) else 1 for i in model.graph.initializer}
    written = 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 2:
            continue
        if scales.get(n.input[1], 1) > 1 and not any(a.name == "axis" for a in n.attribute):
            n.attribute.append(onnx.helper.make_attribute("axis", 1))
            written += 1
    return written


def convert_fp16(model: onnx.ModelProto, keep_float_nodes: Sequence[str] = ()) -> onnx.ModelProto:
    """FP16 weights and activations, FP32 graph I/O; ``keep_float_nodes`` and selection/ranking stay FP32.

    ``keep_float_nodes``: as for :func:`quantize_int8`, from ``model.float_modules("fp16")`` (the
    keypoint scorer and coordinate path); without it only selection and ranking stay FP32.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    keep = float_kept_nodes(model, keep_float_nodes)
    out = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, disable_shape_infer=False)
    out.producer_name = "aknet_edge"
    return out
