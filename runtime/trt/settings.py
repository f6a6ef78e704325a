"""What an engine build is asked for, checked before any TensorRT work starts.

Why separate: a build takes minutes, so every setting is validated when the
:class:`BuildSettings` is made, and the check needs neither TensorRT nor ONNX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np

from aknet_edge import package as pk
from aknet_edge.errors import ConfigError

from .onnx_info import PathLike
from .plugins import check_library_file

PRECISIONS = pk.PRECISIONS  # the package contract's precision names


@dataclass(frozen=True)
class BuildSettings:
    """What to build. Validated on construction, so mistakes surface before a long build.

    ``input_shape`` is one sample's shape without the batch axis, e.g.
    ``(8, 3, 112, 112)``; ``batch`` is the optimization profile's
    (min, opt, max) batch size. ``strongly_typed=None`` picks per version and
    graph: on 9.x/10.x strongly typed when the ONNX carries Q/DQ nodes or FP16
    tensors; always on 11.x; never on 8.x (it does not exist there).
    ``fp32_nodes``: the ONNX nodes of the graph's FP32 islands
    (:func:`aknet_edge.calibration.islands.fp32_island_nodes`); a weakly typed
    FP16/INT8 build pins the layers made from them to FP32. ``plugin_libs``:
    TensorRT plugin libraries to load before parsing (checked to exist here).
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
    fp32_nodes: Tuple[str, ...] = ()
    plugin_libs: Tuple[Path, ...] = ()

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
        nodes = tuple(self.fp32_nodes) if not isinstance(self.fp32_nodes, str) else None
        if nodes is None or not all(isinstance(n, str) and n for n in nodes):
            raise ConfigError(f"fp32_nodes must be a sequence of ONNX node names, got {self.fp32_nodes!r}")
        object.__setattr__(self, "fp32_nodes", nodes)
        libs = (self.plugin_libs,) if isinstance(self.plugin_libs, (str, Path)) else tuple(self.plugin_libs)
        object.__setattr__(self, "plugin_libs", tuple(check_library_file(p) for p in libs))
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
