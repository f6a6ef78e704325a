"""Running a serialized engine: load it, size device buffers once, infer on a stream.

Why the tensor-name API only: it is the one inference API every supported
version shares (8.5 added it, 10.0 removed the binding API), so the runner
needs no era-specific code except trusting host code in version-compatible
plans (8.6+). Feeds are checked against the engine's declared names, dtypes
and profile shapes so mistakes give clear errors instead of CUDA faults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from aknet_edge.errors import InputShapeError

from .settings import PathLike
from .version import (LOGGER_NAME, EngineRuntimeError, check_supported, format_version, get_trt_logger,
                      load_tensorrt, require, trt_version)

log = logging.getLogger(__name__)


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
    ``plugin_libs``: TensorRT plugin libraries the engine's plugin layers need, loaded before deserialising.
    """

    def __init__(self, engine: Union[bytes, bytearray, memoryview, PathLike], device: Any = None, *,
                 host_code_allowed: bool = False, logger_name: str = LOGGER_NAME,
                 plugin_libs: Sequence[PathLike] = ()) -> None:
        from .plugins import ensure_registry, load_plugin_libraries

        load_plugin_libraries(plugin_libs)  # before deserialising: plugin layers find their creators
        trt = load_tensorrt()
        self.version = check_supported(trt_version(trt))
        data = bytes(engine) if isinstance(engine, (bytes, bytearray, memoryview)) else Path(engine).read_bytes()
        if device is None:
            from aknet_edge.runtime.device_memory import default_device_memory  # noqa: WPS433 - lazy pycuda

            device = default_device_memory()
        self._device = device
        ensure_registry(trt)
        runtime = trt.Runtime(get_trt_logger(logger_name))
        if host_code_allowed:
            require("version_compatible", self.version)
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
