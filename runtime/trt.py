"""Every TensorRT call aknet_edge makes: engine build, INT8 calibration, inference.

Why one module: TensorRT's Python API changed shape twice (10.0 removed the
binding API, ``build_engine`` and ``max_workspace_size``; 11.0 removed the
FP16/INT8 builder flags and implicit INT8 calibration, and made every network
strongly typed). Keeping all of it here lets ``tests/test_trt_names.py`` check
each name we use against the names the real bindings define, per era.

Conventions the static check relies on (keep them when editing):

* The TensorRT module is always the local name ``trt``; the objects it hands
  out are always named ``builder``, ``network``, ``config``, ``parser``,
  ``parser_error``, ``profile``, ``tensor``, ``timing_cache``, ``runtime``,
  ``engine``, ``context`` (or ``self._engine`` and so on). Never give these
  names to non-TensorRT objects.
* Code valid only in some eras lives in a helper whose name ends with the eras
  it runs in: ``_trt8`` (8.5 to 9.x), ``_trt86`` (8.6+ names), ``_trt10``,
  ``_trt11``, e.g. ``_set_precision_flags_trt8_trt10``. Functions without such
  a suffix must only use names that exist in every supported version.

Imports neither tensorrt, pycuda, onnx nor torch at module import time.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from aknet_edge.errors import AknetError, ConfigError, DataError, DependencyError, InputShapeError
from aknet_edge.io_utils import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

Version = Tuple[int, int, int]
PathLike = Union[str, "os.PathLike[str]"]

INSTALL_HINT = "pip install tensorrt (desktop) or JetPack's python3-libnvinfer (Jetson)"
MIN_VERSION: Version = (8, 5, 0)
MAX_VERSION_EXCLUSIVE: Version = (12, 0, 0)
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("entropy", "minmax")
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


# --------------------------------------------------------------------------- errors


class TensorRTFeatureError(AknetError, RuntimeError):
    """A feature the caller asked for does not exist in the installed TensorRT."""

    def __init__(self, feature: str, version: Version, hint: str = "") -> None:
        self.feature = feature
        self.version = version
        message = f"{feature} is not available in TensorRT {format_version(version)}"
        super().__init__(f"{message}: {hint}" if hint else message)


class UnsupportedTensorRTError(DependencyError):
    """The installed TensorRT is outside the range aknet_edge supports."""


class EngineBuildError(AknetError, RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


class EngineRuntimeError(AknetError, RuntimeError):
    """An engine could not be loaded or run."""


# --------------------------------------------------------------------------- version


def load_tensorrt() -> Any:
    """Import ``tensorrt`` on first use, so this module imports without it."""
    try:
        import tensorrt as trt  # noqa: WPS433 - optional dependency
    except (ImportError, OSError) as exc:  # OSError: bindings present, native libraries missing
        raise DependencyError(f"TensorRT cannot be imported ({exc}): {INSTALL_HINT}") from exc
    return trt


def format_version(version: Tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def parse_trt_version(text: str) -> Version:
    """``"10.3.0.26"`` -> ``(10, 3, 0)``; pure, so it is testable without TensorRT."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if match is None:
        raise UnsupportedTensorRTError(f"cannot read a TensorRT version from {text!r}; expected like '10.3.0'")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def check_supported(version: Version) -> Version:
    """Refuse versions whose API this module was not written against."""
    if not MIN_VERSION <= tuple(version) < MAX_VERSION_EXCLUSIVE:
        raise UnsupportedTensorRTError(
            f"TensorRT {format_version(version)} is not supported: aknet_edge needs "
            f"{format_version(MIN_VERSION[:2])} <= version < {MAX_VERSION_EXCLUSIVE[0]} "
            f"(JetPack 5.1+ on Jetson, or pip install 'tensorrt<{MAX_VERSION_EXCLUSIVE[0]}')")
    return version


def trt_version(trt: Any = None) -> Version:
    """The (major, minor, patch) of the given or the installed TensorRT module."""
    if trt is None:
        trt = load_tensorrt()
    return parse_trt_version(getattr(trt, "__version__", ""))


def api_era(version: Version) -> int:
    """8 (8.5 to 9.x: EXPLICIT_BATCH, builder precision flags), 10, or 11 (strongly typed only)."""
    if version < (10, 0, 0):
        return 8
    if version < (11, 0, 0):
        return 10
    return 11


# --------------------------------------------------------------------------- logger

_LOGGER_LOCK = threading.Lock()
_TRT_LOGGER: Any = None


def get_trt_logger(logger_name: str = __name__) -> Any:
    """The process-wide TensorRT logger, forwarding to ``logging.getLogger(logger_name)``.

    One instance per process: TensorRT keeps the first logger it is given for
    builders and runtimes alike and warns when handed a different one.
    """
    global _TRT_LOGGER
    trt = load_tensorrt()
    with _LOGGER_LOCK:
        if _TRT_LOGGER is None:
            _TRT_LOGGER = _logger_class(trt)()
        _TRT_LOGGER.target = logging.getLogger(logger_name)
    return _TRT_LOGGER


def _logger_class(trt: Any) -> type:
    """An ILogger subclass; made here so this module imports without TensorRT."""
    levels = {
        int(trt.ILogger.Severity.INTERNAL_ERROR): logging.CRITICAL,
        int(trt.ILogger.Severity.ERROR): logging.ERROR,
        int(trt.ILogger.Severity.WARNING): logging.WARNING,
        int(trt.ILogger.Severity.INFO): logging.INFO,
        int(trt.ILogger.Severity.VERBOSE): logging.DEBUG,
    }

    class PythonLogger(trt.ILogger):
        """Forwards TensorRT messages to Python logging (VERBOSE becomes DEBUG)."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.target = log

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(int(severity), logging.INFO)
            if self.target.isEnabledFor(level):
                self.target.log(level, "TensorRT: %s", msg)

    return PythonLogger


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BuildSettings:
    """What to build. Validated on construction, so mistakes surface before a long build.

    ``input_shape`` is one sample's shape without the batch axis, e.g.
    ``(8, 3, 112, 112)``; ``batch`` is the optimization profile's
    (min, opt, max) batch size. ``strongly_typed=None`` picks per version and
    graph: on 9.x/10.x strongly typed when the ONNX carries Q/DQ nodes or FP16
    tensors; always on 11.x; never on 8.x (it does not exist there).
    """

    precision: str
    input_name: str
    input_shape: Tuple[int, ...]
    batch: Tuple[int, int, int] = (1, 1, 1)
    workspace_bytes: int = 1 << 30
    dla_core: Optional[int] = None
    strongly_typed: Optional[bool] = None
    timing_cache: Optional[Path] = None
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.input_name, str) or not self.input_name:
            raise ConfigError(f"input_name must be a non-empty string, got {self.input_name!r}")
        shape = _int_tuple("input_shape", self.input_shape)
        if not shape or any(d < 1 for d in shape):
            raise ConfigError(f"input_shape must be positive sizes without the batch axis, e.g. (8, 3, 112, 112); "
                              f"got {self.input_shape!r}")
        batch = _int_tuple("batch", self.batch)
        if len(batch) != 3 or batch[0] < 1 or not batch[0] <= batch[1] <= batch[2]:
            raise ConfigError(f"batch must be (min, opt, max) with 1 <= min <= opt <= max, got {self.batch!r}")
        if not _is_int(self.workspace_bytes) or self.workspace_bytes < 1:
            raise ConfigError(f"workspace_bytes must be a positive int, got {self.workspace_bytes!r}")
        if self.dla_core is not None and (not _is_int(self.dla_core) or self.dla_core < 0):
            raise ConfigError(f"dla_core must be None or a DLA core index >= 0, got {self.dla_core!r}")
        if self.strongly_typed not in (None, True, False):
            raise ConfigError(f"strongly_typed must be None (auto), True or False, got {self.strongly_typed!r}")
        if not isinstance(self.version_compatible, bool):
            raise ConfigError(f"version_compatible must be a bool, got {self.version_compatible!r}")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "batch", batch)
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _int_tuple(field: str, value: Any) -> Tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise ConfigError(f"{field} must be a tuple of ints, got {value!r}") from None
    if not all(_is_int(v) for v in items):
        raise ConfigError(f"{field} must be a tuple of ints, got {value!r}")
    return tuple(int(v) for v in items)


# --------------------------------------------------------------------------- ONNX inspection


@dataclass(frozen=True)
class OnnxGraphInfo:
    """What the ONNX file says about precision (strong typing takes it from there)."""

    has_qdq: bool
    has_fp16: bool


def inspect_onnx(onnx_path: PathLike) -> OnnxGraphInfo:
    """Look for Q/DQ nodes and FP16 tensors without loading external weights."""
    path = Path(onnx_path)
    if not path.is_file():
        raise ConfigError(f"ONNX file {path} does not exist")
    try:
        import onnx  # noqa: WPS433 - only needed to build, not to run engines
    except ImportError as exc:
        raise DependencyError(f"onnx is needed to build engines ({exc}): pip install onnx") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from exc
    fp16 = onnx.TensorProto.FLOAT16
    has_qdq = False
    has_fp16 = False

    def visit_graph(graph: Any) -> None:
        nonlocal has_fp16
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type == fp16:
                has_fp16 = True
        if any(init.data_type == fp16 for init in graph.initializer):
            has_fp16 = True
        visit_nodes(graph.node)

    def visit_nodes(nodes: Iterable[Any]) -> None:
        nonlocal has_qdq, has_fp16
        for node in nodes:
            if node.op_type in _QDQ_OPS and node.domain in ("", "ai.onnx"):
                has_qdq = True
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == fp16:
                    has_fp16 = True
                if attr.HasField("t") and attr.t.data_type == fp16:
                    has_fp16 = True
                if attr.HasField("g"):
                    visit_graph(attr.g)
                for sub in attr.graphs:
                    visit_graph(sub)

    visit_graph(model.graph)
    for function in model.functions:
        visit_nodes(function.node)
    return OnnxGraphInfo(has_qdq=has_qdq, has_fp16=has_fp16)


# --------------------------------------------------------------------------- build plan (pure)


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


def plan_build(version: Version, settings: BuildSettings, graph: OnnxGraphInfo, has_calibrator: bool) -> BuildPlan:
    """Decide network flags, precision flags and calibration for one TensorRT version."""
    version = check_supported(tuple(version))  # type: ignore[arg-type]
    era = api_era(version)
    strongly_typed = _decide_strong_typing(version, era, settings, graph)

    if has_calibrator:
        if era == 11:
            raise TensorRTFeatureError("implicit INT8 calibration", version,
                                       "quantize the ONNX to Q/DQ (explicit quantization) instead")
        if settings.precision != "int8":
            raise ConfigError(f"a calibrator only makes sense with precision 'int8', not {settings.precision!r}")
        if graph.has_qdq:
            raise ConfigError("the ONNX graph is already quantized (Q/DQ nodes); drop the calibrator")
        if strongly_typed:
            raise ConfigError("a calibrator cannot be used with a strongly typed network; "
                              "set strongly_typed=False or build from a Q/DQ graph")
    if settings.precision == "int8" and not (graph.has_qdq or has_calibrator):
        if era == 11:
            raise TensorRTFeatureError("INT8 without a Q/DQ graph", version,
                                       "TensorRT 11 takes INT8 only from Q/DQ nodes in the ONNX; quantize it first")
        raise ConfigError("precision 'int8' needs a Q/DQ ONNX graph (explicit quantization) or a calibrator")
    if strongly_typed and settings.precision == "fp16" and not graph.has_fp16:
        if era == 11:
            raise TensorRTFeatureError("the FP16 builder flag", version,
                                       "precision lives in the ONNX in TensorRT 11: export an FP16 graph")
        raise ConfigError("precision 'fp16' with a strongly typed network needs an FP16 ONNX graph; "
                          "export one, or set strongly_typed=False")
    if strongly_typed and settings.precision == "fp32" and (graph.has_fp16 or graph.has_qdq):
        log.warning("the ONNX graph carries FP16 tensors or Q/DQ nodes; a strongly typed build follows the graph, "
                    "not precision 'fp32'")

    weak = not strongly_typed
    return BuildPlan(
        version=version,
        era=era,
        explicit_batch=era == 8,
        strongly_typed=strongly_typed,
        # INT8 builds also enable FP16 so layers left unquantized need not fall back to FP32.
        fp16_flag=weak and settings.precision in ("fp16", "int8"),
        # 8.x needs the INT8 flag for Q/DQ graphs too; weakly typed 10.x likewise.
        int8_flag=weak and (settings.precision == "int8" or graph.has_qdq),
        use_calibrator=has_calibrator,
    )


def _decide_strong_typing(version: Version, era: int, settings: BuildSettings, graph: OnnxGraphInfo) -> bool:
    if era == 11:  # 11.x: always strongly typed; the precision builder flags are gone
        if settings.strongly_typed is False:
            raise TensorRTFeatureError("weakly typed networks (BuilderFlag.FP16/INT8)", version,
                                       "put the precision in the ONNX (an FP16 or a Q/DQ graph)")
        return True
    if version < (9, 0, 0):  # 8.x: STRONGLY_TYPED arrived in 9.0
        if settings.strongly_typed:
            raise TensorRTFeatureError("strongly typed networks", version, "they exist from TensorRT 9.0")
        return False
    if settings.strongly_typed is None:  # 9.x/10.x auto: follow the graph when it carries precision
        return graph.has_qdq or graph.has_fp16
    return settings.strongly_typed


# --------------------------------------------------------------------------- engine build


def build_serialized_engine(onnx_path: PathLike, settings: BuildSettings, calibrator: Any = None,
                            logger_name: str = __name__) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (a plan) for this GPU and TensorRT.

    The result is tied to the TensorRT version and GPU it was built on (unless
    ``settings.version_compatible``): cache it by model hash, precision,
    shapes, TensorRT version and GPU.
    """
    trt = load_tensorrt()
    version = check_supported(trt_version(trt))
    plan = plan_build(version, settings, inspect_onnx(onnx_path), calibrator is not None)
    if settings.version_compatible and version < (8, 6, 0):
        raise TensorRTFeatureError("version-compatible engines", version, "they exist from TensorRT 8.6")
    log.info("building %s engine from %s with TensorRT %s (strongly typed: %s)", settings.precision, onnx_path,
             format_version(version), plan.strongly_typed)

    logger = get_trt_logger(logger_name)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    _parse_onnx(parser, Path(onnx_path), version)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_bytes))
    _add_batch_profile(builder, network, config, settings)
    if plan.fp16_flag or plan.int8_flag:
        _set_precision_flags_trt8_trt10(trt, config, plan)
    if plan.use_calibrator:
        _set_calibrator_trt8_trt10(config, calibrator)
    if settings.dla_core is not None:
        if settings.precision == "fp32":
            log.warning("DLA runs only FP16/INT8 layers; with precision 'fp32' every layer falls back to the GPU")
        _configure_dla(trt, builder, config, settings.dla_core)
    if settings.version_compatible:
        _set_version_compatible_trt86_trt10_trt11(trt, config)
    if settings.timing_cache is not None:
        _load_timing_cache(config, settings.timing_cache)

    serialized = builder.build_serialized_network(network, config)
    failure = getattr(calibrator, "failure", None)
    if failure is not None:
        raise EngineBuildError(f"INT8 calibration failed: {failure}") from failure
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}; "
                               f"its reasons are in the log (logger {logger_name!r})")
    if settings.timing_cache is not None:
        _save_timing_cache(config, settings.timing_cache)
    return bytes(serialized)


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


def _set_calibrator_trt8_trt10(config: Any, calibrator: Any) -> None:
    """8.x to 10.x: implicit INT8 calibration (deprecated in 10.1, removed in 11.0)."""
    config.int8_calibrator = calibrator


def _set_version_compatible_trt86_trt10_trt11(trt: Any, config: Any) -> None:
    """8.6+: embed the lean runtime so later TensorRT versions can run the plan."""
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)


def _configure_dla(trt: Any, builder: Any, config: Any, core: int) -> None:
    """Jetson: run layers on a DLA core, falling back to the GPU for the rest."""
    available = int(builder.num_DLA_cores)
    if core >= available:
        raise ConfigError(f"DLA core {core} requested but this device has {available} DLA core(s) "
                          "(only Jetson Xavier/Orin have DLA)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _parse_onnx(parser: Any, onnx_path: Path, version: Version) -> None:
    """Parse from the file (external weights resolve next to it); collect every error."""
    if parser.parse_from_file(str(onnx_path)):
        return
    messages = []
    for i in range(int(parser.num_errors)):
        parser_error = parser.get_error(i)
        if version >= (10, 0, 0):
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


def _add_batch_profile(builder: Any, network: Any, config: Any, settings: BuildSettings) -> None:
    """One optimization profile over the batch axis of every network input."""
    profile = builder.create_optimization_profile()
    found = []
    for i in range(int(network.num_inputs)):
        tensor = network.get_input(i)
        name = tensor.name
        dims = tuple(int(d) for d in tensor.shape)
        found.append(f"{name} {dims}")
        if name == settings.input_name:
            sample = settings.input_shape
            if len(dims) != len(sample) + 1 or any(d not in (-1, s) for d, s in zip(dims[1:], sample)):
                raise ConfigError(f"input {name!r} has shape {dims} in the ONNX, which does not fit "
                                  f"input_shape {sample} with a leading batch axis")
        else:
            sample = dims[1:]
            if not dims or any(d < 0 for d in sample):
                raise ConfigError(f"input {name!r} has dynamic non-batch axes {dims}; "
                                  "only the batch axis may be dynamic")
        if dims and dims[0] != -1 and settings.batch != (dims[0],) * 3:
            raise ConfigError(f"input {name!r} has a fixed batch of {dims[0]} in the ONNX but batch={settings.batch}; "
                              "export with a dynamic batch axis or set batch to "
                              f"({dims[0]}, {dims[0]}, {dims[0]})")
        lo, opt, hi = settings.batch
        profile.set_shape(name, (lo,) + tuple(sample), (opt,) + tuple(sample), (hi,) + tuple(sample))
    if not any(entry.startswith(settings.input_name + " ") for entry in found):
        raise ConfigError(f"the ONNX has no input named {settings.input_name!r}; its inputs: {', '.join(found)}")
    config.add_optimization_profile(profile)


def _load_timing_cache(config: Any, path: Path) -> None:
    """Reuse tactic timings from an earlier build with the same TensorRT version."""
    blob = path.read_bytes() if path.is_file() else b""
    timing_cache = config.create_timing_cache(blob)
    if timing_cache is None or not config.set_timing_cache(timing_cache, False):
        log.warning("timing cache %s does not fit this TensorRT/GPU; starting an empty one", path)
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, False)
    elif blob:
        log.info("using timing cache %s", path)


def _save_timing_cache(config: Any, path: Path) -> None:
    timing_cache = config.get_timing_cache()
    if timing_cache is None:
        return
    atomic_write_bytes(path, bytes(timing_cache.serialize()))
    log.info("saved timing cache %s", path)


# --------------------------------------------------------------------------- INT8 calibration


def make_calibrator(method: str, batches: Iterable[np.ndarray], cache_path: PathLike, device: Any = None) -> Any:
    """An INT8 calibrator (entropy or min-max) feeding ``batches`` to TensorRT < 11.

    Each batch is a float32 array with the batch axis first; all batches share
    one shape. The cache file is reused on the next build with the same
    TensorRT version (its version is kept beside it in ``<cache>.trt-version``).
    Entropy calibration has cost some models far more accuracy than MinMax:
    try both and measure.
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    trt = load_tensorrt()
    version = check_supported(trt_version(trt))
    if api_era(version) == 11:
        raise TensorRTFeatureError("implicit INT8 calibration (IInt8EntropyCalibrator2/IInt8MinMaxCalibrator)",
                                   version, "quantize the ONNX to Q/DQ (explicit quantization) instead")
    if device is None:
        from aknet_edge.runtime.device_memory import default_device_memory  # noqa: WPS433 - lazy pycuda

        device = default_device_memory()
    cls = _calibrator_class_trt8_trt10(trt, method)
    return cls(batches, Path(cache_path), device, format_version(version))


def _calibrator_class_trt8_trt10(trt: Any, method: str) -> type:
    """8.x to 10.x: subclass TensorRT's calibrator base (removed in 11.0)."""
    base = trt.IInt8EntropyCalibrator2 if method == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):  # type: ignore[misc, valid-type]
        """Feeds calibration batches through one device buffer; never raises into TensorRT."""

        def __init__(self, batches: Iterable[np.ndarray], cache_path: Path, device: Any, version: str) -> None:
            base.__init__(self)
            self.cache_path = cache_path
            self.version_path = cache_path.with_name(cache_path.name + ".trt-version")
            self.version = version
            self.failure: Optional[BaseException] = None
            self._device = device
            self._batches: Iterator[np.ndarray] = iter(batches)
            self._first: Optional[np.ndarray] = None
            self._shape: Optional[Tuple[int, ...]] = None
            self._ptr: Optional[int] = None
            self._stream: Optional[int] = None
            self._count = 0

        def _peek(self) -> Optional[np.ndarray]:
            if self._shape is None:
                first = next(self._batches, None)
                if first is not None:
                    self._first = _calibration_array(first, None, 0)
                    self._shape = self._first.shape
            return self._first

        def get_batch_size(self) -> int:
            try:
                first = self._peek()
            except Exception as exc:  # noqa: BLE001 - an exception must not cross into TensorRT
                self.failure = exc
                return 1
            return int(first.shape[0]) if first is not None else 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            try:
                return self._next_batch(names)
            except Exception as exc:  # noqa: BLE001 - reported after the build
                log.error("calibration stopped: %s", exc)
                self.failure = exc
                return None

        def _next_batch(self, names: List[str]) -> Optional[List[int]]:
            if len(names) != 1:
                raise DataError(f"the calibrator feeds one input, but the network has {len(names)}: {names}")
            if self._shape is None and self._peek() is None:
                raise DataError("no calibration batches were given")
            if self._first is not None:
                array, self._first = self._first, None
            else:
                raw = next(self._batches, None)
                if raw is None:
                    log.info("calibration used %d batch(es)", self._count)
                    self._free_buffer()
                    return None
                array = _calibration_array(raw, self._shape, self._count)
            if self._ptr is None:
                self._ptr = self._device.alloc(array.nbytes)
                self._stream = self._device.stream()
            self._device.htod_async(self._ptr, array, self._stream)
            self._device.synchronize(self._stream)
            self._count += 1
            return [int(self._ptr)]

        def read_calibration_cache(self) -> Optional[bytes]:
            try:
                return _read_calibration_cache(self.cache_path, self.version_path, self.version)
            except Exception as exc:  # noqa: BLE001
                log.warning("ignoring calibration cache %s: %s", self.cache_path, exc)
                return None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                atomic_write_bytes(self.cache_path, bytes(cache))
                atomic_write_text(self.version_path, self.version + "\n")
                log.info("wrote calibration cache %s", self.cache_path)
            except Exception as exc:  # noqa: BLE001
                self.failure = exc

        def _free_buffer(self) -> None:
            if self._ptr is not None:
                self._device.free(self._ptr)
                self._ptr = None

    return Calibrator


def _calibration_array(raw: Any, shape: Optional[Tuple[int, ...]], index: int) -> np.ndarray:
    array = np.asarray(raw)
    if array.dtype != np.float32:
        raise DataError(f"calibration batch {index} has dtype {array.dtype}; expected float32")
    if array.ndim < 1 or array.shape[0] < 1:
        raise DataError(f"calibration batch {index} has shape {array.shape}; expected a leading batch axis")
    if shape is not None and array.shape != shape:
        raise DataError(f"calibration batch {index} has shape {array.shape}, the first had {shape}; "
                        "all batches must share one shape")
    return np.ascontiguousarray(array)


def _read_calibration_cache(cache_path: Path, version_path: Path, version: str) -> Optional[bytes]:
    """The cache bytes, unless they were written by a different TensorRT version."""
    if not cache_path.is_file():
        return None
    if version_path.is_file():
        written_by = version_path.read_text(encoding="utf-8").strip()
        if written_by != version:
            log.warning("calibration cache %s was written by TensorRT %s, this is %s; recalibrating",
                        cache_path, written_by, version)
            return None
    log.info("using calibration cache %s", cache_path)
    return cache_path.read_bytes()


# --------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class TensorSpec:
    """One engine input or output, as the engine declares it (-1 marks a dynamic axis)."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype
    min_shape: Optional[Tuple[int, ...]] = None
    max_shape: Optional[Tuple[int, ...]] = None


class EngineRunner:
    """Runs a serialized engine through the tensor-name API (8.5 to 11.x alike).

    Use as a context manager: entering creates the execution context and the
    device buffers (sized for the profile's largest shapes), leaving frees them::

        with EngineRunner(plan_bytes) as runner:
            scores = runner.infer({"clip": clip})["logits"]

    ``device`` is any :class:`~aknet_edge.runtime.device_memory.DeviceMemory`
    (default: pycuda). ``host_code_allowed`` must be True to load
    version-compatible engines (8.6+); only do that for plans you trust.
    """

    def __init__(self, engine: Union[bytes, bytearray, memoryview, PathLike], device: Any = None, *,
                 host_code_allowed: bool = False, logger_name: str = __name__) -> None:
        trt = load_tensorrt()
        self.version = check_supported(trt_version(trt))
        data = bytes(engine) if isinstance(engine, (bytes, bytearray, memoryview)) else Path(engine).read_bytes()
        if device is None:
            from aknet_edge.runtime.device_memory import default_device_memory  # noqa: WPS433 - lazy pycuda

            device = default_device_memory()
        self._device = device
        runtime = trt.Runtime(get_trt_logger(logger_name))
        if host_code_allowed:
            if self.version < (8, 6, 0):
                raise TensorRTFeatureError("version-compatible engines", self.version, "they exist from TensorRT 8.6")
            _allow_host_code_trt86_trt10_trt11(runtime)
        engine_obj = runtime.deserialize_cuda_engine(data)
        if engine_obj is None:
            raise EngineRuntimeError(
                f"TensorRT {format_version(self.version)} could not load this engine; engines only load with the "
                "TensorRT version and GPU they were built with (rebuild it here), see the log for details")
        self._runtime = runtime
        self._engine = engine_obj
        self._context: Any = None
        self._stream: Optional[int] = None
        self._device_ptrs: Dict[str, int] = {}
        self._host: Dict[str, np.ndarray] = {}
        self.specs = self._read_specs(trt)

    @property
    def inputs(self) -> List[TensorSpec]:
        return [s for s in self.specs.values() if s.is_input]

    @property
    def outputs(self) -> List[TensorSpec]:
        return [s for s in self.specs.values() if not s.is_input]

    def _read_specs(self, trt: Any) -> Dict[str, TensorSpec]:
        engine = self._engine
        specs: Dict[str, TensorSpec] = {}
        for i in range(int(engine.num_io_tensors)):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            min_shape = max_shape = None
            if is_input:
                lo, _opt, hi = engine.get_tensor_profile_shape(name, 0)
                min_shape, max_shape = tuple(int(d) for d in lo), tuple(int(d) for d in hi)
            specs[name] = TensorSpec(name, is_input, shape, dtype, min_shape, max_shape)
        return specs

    def __enter__(self) -> "EngineRunner":
        if self._context is not None:
            raise EngineRuntimeError("this EngineRunner is already active; enter it once")
        context = self._engine.create_execution_context()
        if context is None:
            raise EngineRuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self._context = context
        try:
            self._stream = self._device.stream()
            self._allocate(context)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._release()

    def _allocate(self, context: Any) -> None:
        """Buffers for the largest shapes: set every input to its profile maximum, read the outputs."""
        for spec in self.inputs:
            largest = spec.max_shape or spec.shape
            if not context.set_input_shape(spec.name, largest):
                raise EngineRuntimeError(f"TensorRT rejected the profile maximum {largest} for {spec.name!r}")
        for spec in self.specs.values():
            shape = (spec.max_shape or spec.shape) if spec.is_input else tuple(int(d) for d in context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise EngineRuntimeError(f"output {spec.name!r} has a data-dependent shape {shape}; not supported")
            count = int(np.prod(shape, dtype=np.int64))
            self._host[spec.name] = self._device.pinned_empty((max(count, 1),), spec.dtype)
            self._device_ptrs[spec.name] = self._device.alloc(max(count, 1) * spec.dtype.itemsize)
            context.set_tensor_address(spec.name, self._device_ptrs[spec.name])

    def _release(self) -> None:
        if self._stream is not None:
            try:
                self._device.synchronize(self._stream)
            except Exception as exc:  # noqa: BLE001 - still free what we can
                log.warning("synchronizing before release failed: %s", exc)
        for ptr in self._device_ptrs.values():
            self._device.free(ptr)
        self._device_ptrs.clear()
        self._host.clear()
        self._context = None
        self._stream = None

    def check_feed(self, feed: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Validate names, dtypes and shapes against the engine; clear errors instead of CUDA faults."""
        expected = {s.name for s in self.inputs}
        missing, unexpected = expected - set(feed), set(feed) - expected
        if missing or unexpected:
            raise InputShapeError(f"engine inputs are {sorted(expected)}; missing {sorted(missing)}, "
                                  f"unexpected {sorted(unexpected)}")
        arrays: Dict[str, np.ndarray] = {}
        for spec in self.inputs:
            array = np.asarray(feed[spec.name])
            if array.dtype != spec.dtype:
                raise InputShapeError(f"input {spec.name!r} must be {spec.dtype.name}, got {array.dtype.name}")
            lo, hi = spec.min_shape or spec.shape, spec.max_shape or spec.shape
            ok = array.ndim == len(spec.shape) and all(
                (d == s if s >= 0 else a <= d <= b) for d, s, a, b in zip(array.shape, spec.shape, lo, hi))
            if not ok:
                raise InputShapeError(f"input {spec.name!r} has shape {array.shape}; the engine takes {spec.shape} "
                                      f"(-1 free) between {lo} and {hi}")
            arrays[spec.name] = np.ascontiguousarray(array)
        return arrays

    def infer(self, feed: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Run once on a non-default stream; returns new arrays keyed by output name."""
        if self._context is None:
            raise EngineRuntimeError("use the runner as a context manager: with EngineRunner(...) as runner: ...")
        arrays = self.check_feed(feed)
        context, stream = self._context, self._stream
        for name, array in arrays.items():
            if not context.set_input_shape(name, array.shape):
                raise InputShapeError(f"TensorRT rejected shape {array.shape} for input {name!r}")
            staging = self._host[name][:array.size].reshape(array.shape)
            np.copyto(staging, array)
            self._device.htod_async(self._device_ptrs[name], staging, stream)
        results: Dict[str, np.ndarray] = {}
        for spec in self.outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(spec.name))
            count = int(np.prod(shape, dtype=np.int64))
            if any(d < 0 for d in shape) or count > self._host[spec.name].size:
                raise EngineRuntimeError(f"output {spec.name!r} has shape {shape}, beyond the buffers made on entry")
            results[spec.name] = self._host[spec.name][:count].reshape(shape)
        if not context.execute_async_v3(stream):
            raise EngineRuntimeError("TensorRT failed to enqueue the inference; see the log")
        for name, host in results.items():
            self._device.dtoh_async(host, self._device_ptrs[name], stream)
        self._device.synchronize(stream)
        return {name: host.copy() for name, host in results.items()}


def _allow_host_code_trt86_trt10_trt11(runtime: Any) -> None:
    """8.6+: version-compatible plans carry the lean runtime's host code; trust it explicitly."""
    runtime.engine_host_code_allowed = True
