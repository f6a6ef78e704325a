"""``synthetic://``: the synthetic long-video generator as a live camera, with its ground truth."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Source
from .options import SourceOptions, SyntheticOptions


class SyntheticSource(Source):
    """The synthetic long-video generator as a live camera paced at its frame rate.

    ``speed`` scales the pace (2 = twice real time, 0 = as fast as rendered).
    Frames carry media timestamps; :attr:`segments` is the ground truth.
    The stream ends after its segments unless ``loop=1``. Options: :class:`SyntheticOptions`.
    """

    color = "RGB"
    options_class = SyntheticOptions

    def __init__(self, uri: str, *, options: SourceOptions | None = None, **kwargs: Any) -> None:
        self.live = True
        super().__init__(uri, options=options, **kwargs)
        from aknet_edge.synthetic import iter_long_video

        o: SyntheticOptions = self.options  # type: ignore[assignment]
        self._make = lambda s: iter_long_video(s, o.segments, o.fps, o.size, (o.seg_min, o.seg_max))
        self.seed, self.fps, self.speed, self.loop = o.seed, o.fps, o.speed, o.loop
        self.segments, self._frames = self._make(self.seed)
        self._offset = 0.0
        self._t0: float | None = None

    def paced_live(self, options: SourceOptions) -> bool:
        # speed=0 is unpaced: frames come as fast as they are drawn, far faster than recognition, and a live
        # camera's newest-wins buffer would silently drop most windows; it is read like a file (every frame)
        return float(options.speed) > 0  # type: ignore[attr-defined]

    def _open(self) -> None:
        pass

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        try:
            t, rgb = next(self._frames)
        except StopIteration:
            if not self.loop:
                self._finished = True
                return None
            self._offset += self.segments[-1].end
            _, self._frames = self._make(self.seed)
            t, rgb = next(self._frames)
        t += self._offset
        if self.speed > 0:
            self._pace(t, self.speed)
        return rgb, t


def synthetic_source(uri: str, options: Mapping[str, Any], query: str = "") -> SyntheticSource:
    return SyntheticSource(uri, options=SyntheticOptions.parse(options, query, source=uri))


__all__ = ["SyntheticSource", "synthetic_source"]
