"""The on-device step of the build: compile (or reuse) a TensorRT engine for a package's graph.

Why a module of its own: it runs in two places -- at the end of a full build
on a machine with TensorRT, and alone on the robot (``build --from PACKAGE``),
where torch is absent. So it imports neither torch nor the export code; every
TensorRT call goes through :mod:`aknet_edge.runtime.trt`.

Engines depend on the TensorRT version and the GPU, so they are cached under
``AKNET_EDGE_CACHE/engines`` keyed by everything that changes the engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import settings
from .calib_options import implicit_method
from .io_utils import atomic_write_bytes
from .package import ENGINE_PRECISION_FOR, EngineInfo, GraphIO, Variant, sha256_file

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Engines and timing caches live here (created on first use)."""
    root = settings.cache_dir() / "engines"
    root.mkdir(parents=True, exist_ok=True)
    return root


def engine_cache_key(onnx_sha256: str, precision: str, shapes: dict, tensorrt_version: str, gpu: str,
                     compute_capability: str) -> str:
    """Engines are tied to TensorRT version and GPU: cache them by everything that changes the engine."""
    blob = json.dumps([onnx_sha256, precision, shapes, tensorrt_version, gpu, compute_capability], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def engine_precision(requested: str, available: Iterable[str], calib_mode: str = "explicit") -> str:
    """The engine precision for a ``--precision`` request, given the graph precisions the package has.

    Implicit INT8 calibrates the FP32 graph itself, so it needs no INT8 graph. Falling back to FP32
    is logged: the user asked for something else.
    """
    want = ENGINE_PRECISION_FOR.get(requested, requested)
    have = set(available)
    if want in have or (want == "int8" and calib_mode == "implicit" and "fp32" in have):
        return want
    log.warning("the package has no %s graph: building an fp32 engine (rebuild the package with --precision %s, "
                "or use --calib-mode implicit for INT8 on TensorRT 8.5-10.x)", want, requested)
    return "fp32"


def fp32_islands(onnx_path: Path, precision: str, float_modules: Mapping[str, Sequence[str]]) -> List[str]:
    """The ONNX nodes a weakly typed ``precision`` engine keeps FP32: the modules the package records for that
    precision (``manifest.float_modules``) plus selection and ranking (:mod:`aknet_edge.calibration.islands`).

    None for FP32 engines (nothing to pin). Torch-free: the device computes this from the package alone.
    """
    if precision == "fp32":
        return []
    import onnx

    from .calibration.islands import fp32_island_nodes

    model = onnx.load(str(onnx_path), load_external_data=False)
    modules = tuple(float_modules.get(precision, ()))
    if precision not in float_modules:  # a model that declares none (the TSM baseline) records an empty list
        log.warning("the package records no FP32 modules for %s (built before 0.3.0?): a weakly typed TensorRT build "
                    "pins only selection and ranking to FP32, not scoring and coordinates; rebuild the package to "
                    "pin them too", precision)
    return fp32_island_nodes(model, modules)


def compile_engine(pkg_dir: Path, files: Mapping[str, Path], precision: str, batch: Tuple[int, int, int],
                   workspace_mb: int, dla: Optional[int], calib_mode: str = "explicit",
                   calibration_clips: Optional[Iterable[Any]] = None, calib_method: str = "entropy",
                   float_modules: Optional[Mapping[str, Sequence[str]]] = None,
                   plugin_libs: Sequence[Path] = ()) -> Variant:
    """Build (or reuse from the engine cache) a TensorRT engine into ``pkg_dir``; returns its variant record.

    ``files`` maps precisions to the package's whole-clip graphs (for INT8, the graph that serves the installed
    TensorRT: :meth:`aknet_edge.package.Manifest.int8_graph_for`). With ``calib_mode="implicit"`` and INT8
    (TensorRT 8.5-10.x), TensorRT calibrates the FP32 graph itself from ``calibration_clips`` (each one
    (T, 3, S, S)), and the calibration cache is kept in the package. ``float_modules``: the package's record of
    what each precision keeps FP32 (a weakly typed build pins those layers). ``plugin_libs``: TensorRT plugin
    libraries, loaded before parsing and recorded in the engine's manifest entry.
    """
    from .runtime import trt as trt_mod
    from .runtime.device_memory import gpu_identity

    calibrator, cache_file = None, None
    if calib_mode == "implicit" and precision == "int8":
        if calibration_clips is None:
            raise ValueError("implicit INT8 calibration needs calibration_clips")
        cache_file = "calibration.cache"
        method = implicit_method(calib_method)
        if method != calib_method:
            log.warning("TensorRT's implicit calibration has no %s method: using %s", calib_method, method)
        calibrator = trt_mod.make_calibrator(method, (c[None] for c in calibration_clips), pkg_dir / cache_file)
        files = {**files, "int8": files["fp32"]}
    onnx_path = files[precision]
    loaded = trt_mod.load_plugin_libraries(plugin_libs)
    version = trt_mod.format_version(trt_mod.trt_version())
    gpu, cc = gpu_identity()
    io = GraphIO.from_onnx(onnx_path).inputs[0]
    islands = fp32_islands(onnx_path, precision, float_modules or {})
    settings_ = trt_mod.BuildSettings(precision=precision, input_name=io.name, input_shape=tuple(io.shape[1:]),
                                      batch=batch, workspace_bytes=workspace_mb << 20, dla_core=dla,
                                      timing_cache=cache_dir() / f"timing-{version}-{cc}.cache",
                                      fp32_nodes=tuple(islands), plugin_libs=tuple(p.path for p in loaded))
    key = engine_cache_key(sha256_file(onnx_path), precision, {"input": list(io.shape), "batch": list(batch),
                           "dla": dla, "calib": calib_mode, "fp32_nodes": len(islands),
                           "fp32_nodes_sha": hashlib.sha256("\n".join(islands).encode()).hexdigest()[:16],
                           "plugins": [p.sha256 for p in loaded]}, version, gpu, cc)
    cached = cache_dir() / f"{key}.engine"
    if cached.exists() and calibrator is None:
        log.info("reusing cached engine %s (same ONNX, precision, shapes, TensorRT %s, %s)", cached.name, version, gpu)
        data = cached.read_bytes()
    else:
        log.info("building a %s TensorRT %s engine on %s (sm %s); this takes minutes", precision, version, gpu, cc)
        data = trt_mod.build_serialized_engine(onnx_path, settings_, calibrator=calibrator)
        atomic_write_bytes(cached, data)
    name = f"model.{precision}.engine"
    atomic_write_bytes(pkg_dir / name, data)
    flags: Dict[str, Any] = {"batch": list(batch), "workspace_mb": workspace_mb, "dla": dla}
    info = EngineInfo(version, gpu, cc, key, calib_mode, cache_file, flags, trt_mod.plugin_records(loaded))
    return Variant.of_file(pkg_dir, name, precision, "tensorrt", engine=info)
