"""The per-version decisions of an engine build, made without TensorRT.

Why pure: which network flags, builder precision flags and calibration a
build uses depends on the TensorRT version, the requested precision and what
the ONNX graph carries. Deciding it here, from the rows of
:mod:`aknet_edge.trt_eras`, makes every era's behaviour testable on a machine
without TensorRT; build.py only carries the plan out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aknet_edge import trt_eras
from aknet_edge.errors import ConfigError

from .onnx_info import OnnxGraphInfo
from .settings import BuildSettings
from .version import TensorRTFeatureError, Version, api_era, check_supported, require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildPlan:
    """The per-version decisions of a build, made without TensorRT so they are testable."""

    version: Version
    era: int
    explicit_batch: bool
    strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool
    use_calibrator: bool
    # weakly typed FP16/INT8: the FP32 islands' layers get FP32 precision and output types, and the build obeys them
    # (BuilderFlag.OBEY_PRECISION_CONSTRAINTS, 8.x/10.x); strongly typed builds follow the graph's types anyway
    pin_fp32: bool = False


def plan_build(version: Version, settings: BuildSettings, graph: OnnxGraphInfo, has_calibrator: bool) -> BuildPlan:
    """Decide network flags, precision flags and calibration for one TensorRT version."""
    version = check_supported(tuple(version))  # type: ignore[arg-type]
    strongly_typed = _decide_strong_typing(version, settings, graph)
    if has_calibrator:
        _check_calibrator(version, settings, graph, strongly_typed)
    _check_precision(version, settings, graph, strongly_typed, has_calibrator)

    weak = not strongly_typed
    fp16_flag = weak and settings.precision in ("fp16", "int8")
    int8_flag = weak and (settings.precision == "int8" or graph.has_qdq)
    return BuildPlan(
        version=version,
        era=api_era(version),
        explicit_batch=trt_eras.available("explicit_batch_required", version),
        strongly_typed=strongly_typed,
        # INT8 builds also enable FP16 so layers left unquantized need not fall back to FP32.
        fp16_flag=fp16_flag,
        # 8.x needs the INT8 flag for Q/DQ graphs too; weakly typed 10.x likewise.
        int8_flag=int8_flag,
        use_calibrator=has_calibrator,
        pin_fp32=fp16_flag or int8_flag,
    )


def _decide_strong_typing(version: Version, settings: BuildSettings, graph: OnnxGraphInfo) -> bool:
    """8.x: never (it arrived in 9.0); 9.x/10.x: asked for, or auto from the graph; 11.x: always."""
    if not trt_eras.available("weakly_typed", version):  # the precision builder flags are gone
        if settings.strongly_typed is False:
            require("weakly_typed", version)
        return True
    if not trt_eras.available("strongly_typed", version):
        if settings.strongly_typed:
            require("strongly_typed", version)
        return False
    if settings.strongly_typed is None:  # auto: follow the graph when it carries precision
        return graph.has_qdq or graph.has_fp16
    return settings.strongly_typed


def _check_calibrator(version: Version, settings: BuildSettings, graph: OnnxGraphInfo, strongly_typed: bool) -> None:
    require("implicit_calibration", version)
    if settings.precision != "int8":
        raise ConfigError(f"a calibrator only makes sense with precision 'int8', not {settings.precision!r}")
    if graph.has_qdq:
        raise ConfigError("the ONNX graph is already quantized (Q/DQ nodes); drop the calibrator")
    if strongly_typed:
        raise ConfigError("a calibrator cannot be used with a strongly typed network; "
                          "set strongly_typed=False or build from a Q/DQ graph")


def _check_precision(version: Version, settings: BuildSettings, graph: OnnxGraphInfo, strongly_typed: bool,
                     has_calibrator: bool) -> None:
    """Refuse precisions the graph and version cannot give; warn where the graph overrides the request."""
    weak_available = trt_eras.available("weakly_typed", version)
    if settings.precision == "int8" and not (graph.has_qdq or has_calibrator):
        if not weak_available:
            raise TensorRTFeatureError("INT8 without a Q/DQ graph", version,
                                       f"TensorRT {version[0]} takes INT8 only from Q/DQ nodes in the ONNX; "
                                       "quantize it first")
        raise ConfigError("precision 'int8' needs a Q/DQ ONNX graph (explicit quantization) or a calibrator")
    if strongly_typed and settings.precision == "fp16" and not graph.has_fp16:
        if not weak_available:
            raise TensorRTFeatureError("the FP16 builder flag", version,
                                       f"precision lives in the ONNX in TensorRT {version[0]}: export an FP16 graph")
        raise ConfigError("precision 'fp16' with a strongly typed network needs an FP16 ONNX graph; "
                          "export one, or set strongly_typed=False")
    if strongly_typed and settings.precision == "fp32" and (graph.has_fp16 or graph.has_qdq):
        log.warning("the ONNX graph carries FP16 tensors or Q/DQ nodes; a strongly typed build follows the graph, "
                    "not precision 'fp32'")
