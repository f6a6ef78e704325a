"""INT8 calibrators for implicit quantization (TensorRT 8.5 to 10.x), made on demand.

Why a factory: the calibrator classes must subclass TensorRT's
``IInt8EntropyCalibrator2``/``IInt8MinMaxCalibrator``, which exist only once
tensorrt is imported and not at all from 11.0; making the class inside
make_calibrator keeps this module importable without TensorRT. Errors inside
the callbacks are kept on the calibrator and reported after the build,
because an exception must not cross into TensorRT's C++.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from aknet_edge.calib_options import IMPLICIT_METHODS
from aknet_edge.errors import ConfigError, DataError
from aknet_edge.io_utils import atomic_write_bytes, atomic_write_text

from .settings import PathLike
from .version import check_supported, format_version, load_tensorrt, require, trt_version

log = logging.getLogger(__name__)

CALIBRATION_METHODS = IMPLICIT_METHODS  # TensorRT's implicit calibrators (aknet_edge.calibration.options)


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
    require("implicit_calibration", version,
            "implicit INT8 calibration (IInt8EntropyCalibrator2/IInt8MinMaxCalibrator)")
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
