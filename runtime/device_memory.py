"""The one layer between aknet_edge and CUDA device memory.

Why a layer: TensorRT's Python API takes raw device pointers (ints) and a CUDA
stream handle, but leaves allocation and copies to the caller. pycuda does that
job on Jetson (it builds from source there; nvcc is on PATH), NVIDIA's own
samples moved to cuda-python. Everything that touches device memory goes
through :class:`DeviceMemory`, so swapping the backend is one new class, and
the engine runner and calibrator can be handed any object with these methods.

Imports neither pycuda nor TensorRT at module import time.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Dict, Optional, Protocol, Sequence, Tuple, Union

import numpy as np


from aknet_edge.errors import AknetError, DependencyError

log = logging.getLogger(__name__)

PYCUDA_HINT = "pip install pycuda (needs nvcc on PATH; on Jetson it is)"

Shape = Union[int, Sequence[int]]


class CudaError(AknetError, RuntimeError):
    """A CUDA call failed (no device, out of memory, a bad pointer)."""


class DeviceMemory(Protocol):
    """What the TensorRT runner and calibrator need from a CUDA backend.

    Pointers and stream handles are plain ints, which is what TensorRT takes.
    """

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory and return its address."""

    def free(self, ptr: int) -> None:
        """Free an address returned by :meth:`alloc`."""

    def pinned_empty(self, shape: Shape, dtype: Any) -> np.ndarray:
        """A page-locked host array (needed for truly asynchronous copies)."""

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        """Queue a host-to-device copy of ``src`` to ``dst`` on ``stream``."""

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        """Queue a device-to-host copy of ``src`` into ``dst`` on ``stream``."""

    def stream(self) -> int:
        """Create a new, non-default CUDA stream and return its handle."""

    def synchronize(self, stream: Optional[int] = None) -> None:
        """Wait for ``stream`` (or the whole device when None)."""


def load_pycuda() -> Any:
    """Import ``pycuda.driver`` lazily, with an install hint when it is missing."""
    try:
        import pycuda.driver as cuda  # noqa: WPS433 - optional dependency, imported on use
    except ImportError as exc:
        raise DependencyError(f"pycuda is needed for GPU buffers but cannot be imported ({exc}): {PYCUDA_HINT}") from exc
    return cuda


def _release(cuda: Any, ctx: Any, allocations: Dict[int, Any], streams: Dict[int, Any]) -> None:
    """Free what a PycudaDeviceMemory still holds and release its context (runs once)."""
    for allocation in list(allocations.values()):
        try:
            allocation.free()
        except Exception as exc:  # noqa: BLE001 - best effort at teardown
            log.debug("freeing device memory at teardown failed: %s", exc)
    allocations.clear()
    streams.clear()
    try:
        cuda.Context.pop()
    except Exception:  # noqa: BLE001 - already popped by someone else
        pass
    try:
        ctx.detach()
    except Exception:  # noqa: BLE001
        pass


class PycudaDeviceMemory:
    """:class:`DeviceMemory` backed by pycuda, on the device's primary context.

    The primary context is the one the CUDA runtime (and so TensorRT) uses, so
    pointers made here are valid inside TensorRT without context juggling.
    Use it from the thread that created it.
    """

    def __init__(self, device_index: int = 0) -> None:
        cuda = load_pycuda()
        try:
            cuda.init()
            count = cuda.Device.count()
        except Exception as exc:  # pycuda raises its own LogicError/RuntimeError types
            raise CudaError(f"CUDA could not start ({exc}); is an NVIDIA driver installed and a GPU visible?") from exc
        if not 0 <= device_index < count:
            raise CudaError(f"CUDA device {device_index} does not exist; this machine has {count} device(s)")
        self._cuda = cuda
        self._ctx = cuda.Device(device_index).retain_primary_context()
        self._ctx.push()
        self._allocations: Dict[int, Any] = {}
        self._streams: Dict[int, Any] = {}
        self._finalizer = weakref.finalize(self, _release, cuda, self._ctx, self._allocations, self._streams)
        log.debug("pycuda device memory on device %d", device_index)

    def alloc(self, nbytes: int) -> int:
        try:
            allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        except Exception as exc:
            raise CudaError(f"could not allocate {nbytes} bytes of device memory: {exc}") from exc
        ptr = int(allocation)
        self._allocations[ptr] = allocation
        return ptr

    def free(self, ptr: int) -> None:
        allocation = self._allocations.pop(int(ptr), None)
        if allocation is None:
            raise CudaError(f"device pointer {ptr:#x} was not allocated here (or is already freed)")
        allocation.free()

    def pinned_empty(self, shape: Shape, dtype: Any) -> np.ndarray:
        return self._cuda.pagelocked_empty(shape, np.dtype(dtype))

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._cuda.memcpy_htod_async(int(dst), src, self._stream_object(stream))

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._cuda.memcpy_dtoh_async(dst, int(src), self._stream_object(stream))

    def stream(self) -> int:
        stream = self._cuda.Stream()
        handle = int(stream.handle)
        self._streams[handle] = stream
        return handle

    def synchronize(self, stream: Optional[int] = None) -> None:
        if stream is None:
            self._cuda.Context.synchronize()
        else:
            self._stream_object(stream).synchronize()

    def close(self) -> None:
        """Free every allocation and release the context (also done at exit)."""
        self._finalizer()

    def _stream_object(self, handle: int) -> Any:
        try:
            return self._streams[int(handle)]
        except KeyError:
            raise CudaError(f"stream {handle:#x} was not created by this DeviceMemory") from None


def default_device_memory(device_index: int = 0) -> DeviceMemory:
    """The backend used when the caller passes none: pycuda."""
    return PycudaDeviceMemory(device_index)



def gpu_identity(device_index: int = 0) -> Tuple[str, str]:
    """(GPU name, compute capability) of a device: part of every engine's cache key and manifest entry."""
    cuda = load_pycuda()
    dev = cuda.Device(device_index)
    major, minor = dev.compute_capability()
    return str(dev.name()), f"{major}.{minor}"
