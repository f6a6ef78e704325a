"""Frames already in memory, replayed as a finite stream (benchmarks and tests that must not decode or render)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Source
from .options import ArrayOptions, SourceOptions


class ArraySource(Source):
    """Frames already in memory replayed as a finite stream at ``fps`` media time (unpaced unless ``speed``).

    For benchmarks and tests that must not pay for decoding or rendering. Options: :class:`ArrayOptions`.
    """

    live = False
    options_class = ArrayOptions

    def __init__(self, frames: Any, fps: Any = 15.0, color: Any = "RGB", repeat: Any = 1, speed: Any = 0.0, *,
                 options: SourceOptions | None = None, **kwargs: Any) -> None:
        if options is None:
            options = ArrayOptions.parse({"fps": fps, "color": color, "repeat": repeat, "speed": speed, **kwargs},
                                         source="array://")
            kwargs = {}
        super().__init__("array://", options=options, **kwargs)
        o: ArrayOptions = self.options  # type: ignore[assignment]
        self._frames, self._fps, self.color = list(frames), o.fps, o.color
        self._total = len(self._frames) * o.repeat
        self._i = 0
        self._speed = o.speed
        self._t0: float | None = None

    def _open(self) -> None:
        pass

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        if self._i >= self._total:
            return None
        t = self._i / self._fps
        image = self._frames[self._i % len(self._frames)]
        self._i += 1
        if self._speed > 0:
            self._pace(t, self._speed)
        return image, t


__all__ = ["ArraySource"]
