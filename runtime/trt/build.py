"""Building a serialized engine (a plan) from an ONNX file.

Why here and in this shape: build_serialized_engine carries out a
:class:`~.plan.BuildPlan`; every TensorRT call that exists only in some
eras sits in a helper named for those eras (see the package docstring), so
tests/test_trt_names.py can check it against that era's symbol list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aknet_edge import trt_eras

from .build_config import add_batch_profile, configure_dla, load_timing_cache, save_timing_cache
from .islands import FLOAT, HALF, OTHER, LayerView, PinPlan, plan_pinning
from .onnx_info import OnnxGraphInfo, inspect_onnx
from .plan import BuildPlan, plan_build
from .plugins import check_graph_plugins, ensure_registry, load_plugin_libraries
from .settings import BuildSettings, PathLike
from .version import (LOGGER_NAME, EngineBuildError, Version, check_supported, format_version, get_trt_logger,
                      load_tensorrt, require, trt_version)

log = logging.getLogger(__name__)


def build_serialized_engine(onnx_path: PathLike, settings: BuildSettings, calibrator: Any = None,
                            logger_name: str = LOGGER_NAME) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (a plan) for this GPU and TensorRT.

    The result is tied to the TensorRT version and GPU it was built on (unless
    ``settings.version_compatible``): cache it by model hash, precision,
    shapes, TensorRT version and GPU.
    """
    trt = load_tensorrt()
    version = check_supported(trt_version(trt))
    graph = inspect_onnx(onnx_path)
    plan = plan_build(version, settings, graph, calibrator is not None)
    if settings.version_compatible:
        require("version_compatible", version)
    log.info("building %s engine from %s with TensorRT %s (strongly typed: %s)", settings.precision, onnx_path,
             format_version(version), plan.strongly_typed)

    logger = get_trt_logger(logger_name)
    load_plugin_libraries(settings.plugin_libs)  # before parsing: the parser looks plugins up in the registry
    ensure_registry(trt)
    check_graph_plugins(trt, graph, version, onnx_path)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    _parse_onnx(parser, Path(onnx_path), version)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_bytes))
    add_batch_profile(builder, network, config, settings)
    if plan.fp16_flag or plan.int8_flag:
        _set_precision_flags_trt8_trt10(trt, config, plan)
    if plan.pin_fp32:
        _pin_fp32_islands(trt, network, config, graph, settings)
    if plan.use_calibrator:
        _set_calibrator_trt8_trt10(config, calibrator)
    if settings.dla_core is not None:
        if settings.precision == "fp32":
            log.warning("DLA runs only FP16/INT8 layers; with precision 'fp32' every layer falls back to the GPU")
        configure_dla(trt, builder, config, settings.dla_core)
    if settings.version_compatible:
        _set_version_compatible_trt86_trt10_trt11(trt, config)
    if settings.timing_cache is not None:
        load_timing_cache(config, settings.timing_cache)

    serialized = builder.build_serialized_network(network, config)
    failure = getattr(calibrator, "failure", None)
    if failure is not None:
        raise EngineBuildError(f"INT8 calibration failed: {failure}") from failure
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}; "
                               f"its reasons are in the log (logger {logger_name!r})")
    if settings.timing_cache is not None:
        save_timing_cache(config, settings.timing_cache)
    return bytes(serialized)


# --------------------------------------------------------------------------- network flags and precision


def _network_flags(trt: Any, plan: BuildPlan) -> int:
    """Network creation flags per era (only the eras' helpers touch the enum)."""
    if plan.era == 11:
        return _network_flags_trt11()
    flags = 0
    if plan.explicit_batch:
        flags |= _explicit_batch_flag_trt8(trt)
    if plan.strongly_typed:
        flags |= _strongly_typed_flag_trt10(trt)
    return flags


def _explicit_batch_flag_trt8(trt: Any) -> int:
    """8.x/9.x: explicit batch must be requested (ignored in 10.x, removed in 11.0)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _strongly_typed_flag_trt10(trt: Any) -> int:
    """9.0 to 10.x: strong typing is opt-in; the types come from the ONNX graph."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _network_flags_trt11() -> int:
    """11.x: every network is strongly typed; STRONGLY_TYPED is deprecated and ignored, EXPLICIT_BATCH gone."""
    return 0


def _set_precision_flags_trt8_trt10(trt: Any, config: Any, plan: BuildPlan) -> None:
    """8.x to 10.x, weakly typed only: allow FP16/INT8 kernels (removed in 11.0)."""
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:
        config.set_flag(trt.BuilderFlag.INT8)


def _pin_fp32_islands(trt: Any, network: Any, config: Any, graph: OnnxGraphInfo, settings: BuildSettings) -> PinPlan:
    """Weakly typed FP16/INT8: keep the graph's FP32 islands FP32 (islands.py decides which layers)."""
    if not settings.fp32_nodes:
        log.warning("weakly typed %s build without FP32 islands: TensorRT may run scoring, selection and ranking in "
                    "FP16 (exact integers only up to 2048); build from a package that records float_modules",
                    settings.precision)
        return PinPlan((), 0, 0)
    views = [_layer_view(trt, network.get_layer(i)) for i in range(int(network.num_layers))]
    pin = plan_pinning(views, graph.node_names, settings.fp32_nodes)
    _obey_fp32_layers_trt8_trt10(trt, network, config, pin)
    log.info("FP32 islands: %d of %d layers pinned to FP32 (%d of %d island nodes found among the layers)",
             pin.count, len(views), pin.matched_nodes, pin.island_nodes)
    if pin.matched_nodes < pin.island_nodes:
        log.debug("island nodes without a layer of their name were folded away by the parser (constants, "
                  "identities) or merged into another node's layers")
    return pin


def _layer_view(trt: Any, layer: Any) -> LayerView:
    """What plan_pinning needs from a layer: its name, tensor kinds, Q/DQ or not, shape outputs (every era)."""
    kinds = {trt.DataType.FLOAT: FLOAT, trt.DataType.HALF: HALF}
    inputs = []
    for j in range(int(layer.num_inputs)):
        tensor = layer.get_input(j)
        if tensor is not None:  # optional inputs left empty
            inputs.append(kinds.get(tensor.dtype, OTHER))
    outputs, shape_output = [], False
    for j in range(int(layer.num_outputs)):
        tensor = layer.get_output(j)
        outputs.append(kinds.get(tensor.dtype, OTHER))
        shape_output = shape_output or bool(tensor.is_shape_tensor)
    is_qdq = layer.type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return LayerView(str(layer.name), tuple(inputs), tuple(outputs), is_qdq, shape_output)


def _obey_fp32_layers_trt8_trt10(trt: Any, network: Any, config: Any, pin: PinPlan) -> None:
    """8.x to 10.x, weakly typed: FP32 precision and output types, obeyed (all three removed in 11.0)."""
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    for index, outputs in pin.layers:
        layer = network.get_layer(index)
        layer.precision = trt.DataType.FLOAT
        for j in outputs:
            layer.set_output_type(j, trt.DataType.FLOAT)


def _set_calibrator_trt8_trt10(config: Any, calibrator: Any) -> None:
    """8.x to 10.x: implicit INT8 calibration (deprecated in 10.1, removed in 11.0)."""
    config.int8_calibrator = calibrator


def _set_version_compatible_trt86_trt10_trt11(trt: Any, config: Any) -> None:
    """8.6+: embed the lean runtime so later TensorRT versions can run the plan."""
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)


# --------------------------------------------------------------------------- ONNX parsing


def _parse_onnx(parser: Any, onnx_path: Path, version: Version) -> None:
    """Parse from the file (external weights resolve next to it); collect every error."""
    if parser.parse_from_file(str(onnx_path)):
        return
    messages = []
    for i in range(int(parser.num_errors)):
        parser_error = parser.get_error(i)
        if trt_eras.available("parser_error_node_names", version):
            where = _parser_error_node_trt10_trt11(parser_error)
        else:
            where = _parser_error_node_trt8(parser_error)
        messages.append(f"  - {where}: {parser_error.desc()}")
    detail = "\n".join(messages) or "  (the parser reported no details; see the TensorRT log)"
    raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n{detail}")


def _parser_error_node_trt8(parser_error: Any) -> str:
    """8.x/9.x: parser errors carry only the failing node's index."""
    return f"node #{parser_error.node()}"


def _parser_error_node_trt10_trt11(parser_error: Any) -> str:
    """10.0+: parser errors name the failing node and its operator."""
    return f"node {parser_error.node_name()!r} ({parser_error.node_operator()})"
