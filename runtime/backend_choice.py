"""Which backend runs a package: the one place that opens a backend by name and checks its options.

Why apart from :mod:`.backends`: it knows every backend, the Triton client's included, and the
Triton client builds on :mod:`.backends`; keeping the choice here lets both import at module level.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Dict, List, Tuple

from aknet_edge import settings
from aknet_edge.errors import AknetError, ConfigError
from aknet_edge.package import Package

from .backends import Backend, OnnxRuntimeBackend, TensorRTBackend
from .triton_client import TritonBackend

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "triton")  # triton: a Triton server (runtime.triton_client)


def _trt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


def ort_providers(prefer_gpu: bool = True) -> List[str]:
    """The best execution providers this onnxruntime has: TensorRT, CUDA, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if prefer_gpu else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def backend_options(backend: str) -> Tuple[str, ...]:
    """The keyword options ``open_backend`` takes for ``backend`` ("auto": ONNX Runtime's, used when it falls
    back to ONNX Runtime; TensorRT engines chosen by auto take none)."""
    if backend == "triton":
        return TritonBackend.options
    if backend == "tensorrt":
        return TensorRTBackend.options
    return OnnxRuntimeBackend.options


def check_options(backend: str, options: Dict[str, Any]) -> None:
    """An option the backend does not take is an error naming it and what it takes (never dropped)."""
    known = backend_options(backend)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"backend {backend} does not take {', '.join(unknown)}; it takes "
                          f"{', '.join(known) if known else 'no options'}")


def open_backend(package: Package, backend: str = "auto", precision: str = "auto", **options: Any) -> Backend:
    """Open ``backend`` for ``package``; ``auto`` prefers TensorRT engines when they and TensorRT exist.

    ``auto`` falls back to ONNX Runtime with the best providers installed
    (``AKNET_ORT_CPU=1`` forces CPU). The choice is logged.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    check_options(backend, options)
    if backend == "triton":  # the model runs on a Triton server
        return TritonBackend(package, **options)
    has_engine = package.has_kind("tensorrt")
    if backend == "tensorrt":
        return TensorRTBackend(package, precision)
    if backend == "auto" and has_engine and _trt_installed():
        try:
            chosen: Backend = TensorRTBackend(package, precision)
            log.info("backend auto: TensorRT %s engines from %s", chosen.precision, package.root)
            return chosen
        except AknetError as exc:
            log.warning("backend auto: TensorRT engines unusable here (%s); using onnxruntime", exc)
    if backend == "auto" and "providers" not in options:
        options["providers"] = ort_providers(prefer_gpu=not settings.flag("AKNET_ORT_CPU"))
    chosen = OnnxRuntimeBackend(package, precision, **options)
    if backend == "auto":
        log.info("backend auto: onnxruntime %s with %s (split graphs: %s)", chosen.precision,
                 ", ".join(chosen.providers), chosen.has_split)
    return chosen


__all__ = ["BACKENDS", "backend_options", "check_options", "open_backend", "ort_providers"]
