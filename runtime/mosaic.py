"""Several cameras' annotated frames tiled into one image, each tile labelled with its stream's name.

Why: the MJPEG preview and the display window show one image; with several cameras
(:class:`~aknet_edge.runtime.multistream.MultiRecognizer`) they show this mosaic of each
stream's latest annotated frame until the preview serves every stream on its own.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .sinks import Sink

TILE = (480, 360)  # (w, h) of one stream's tile


def mosaic(tiles: Dict[str, Optional[np.ndarray]], order: Sequence[str],
           tile: Tuple[int, int] = TILE) -> np.ndarray:
    """BGR mosaic of ``tiles`` (stream name -> latest annotated BGR frame, None before the first) in ``order``,
    ``ceil(sqrt(N))`` tiles a row; a stream without a frame yet shows its name on grey."""
    import cv2

    n = max(1, len(order))
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    w, h = tile
    out = np.full((rows * h, cols * w, 3), 40, np.uint8)
    for i, name in enumerate(order):
        r, c = divmod(i, cols)
        image = tiles.get(name)
        cell = out[r * h:(r + 1) * h, c * w:(c + 1) * w]
        if image is not None:
            ih, iw = image.shape[:2]
            scale = min(w / iw, h / ih)
            nw, nh = max(1, int(iw * scale)), max(1, int(ih * scale))
            y0, x0 = (h - nh) // 2, (w - nw) // 2
            cell[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        cv2.rectangle(cell, (0, 0), (w - 1, 26), (0, 0, 0), -1)
        cv2.putText(cell, name, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


__all__ = ["TILE", "mosaic"]


class DisplaySink(Sink):
    """The display window (cv2.imshow): one stream's annotated frames, or the mosaic of every stream's latest."""

    name = "display_window"
    wants_frames = True

    def __init__(self, window: Any, streams: Sequence[Optional[str]]) -> None:
        self.window = window
        self.order = [str(s) for s in streams]
        self.tiles: Dict[str, Optional[np.ndarray]] = {s: None for s in self.order}

    def frame(self, stream: Optional[str], image_bgr: np.ndarray) -> None:
        if len(self.order) == 1:
            self.window.show(image_bgr)
            return
        self.tiles[str(stream)] = image_bgr
        self.window.show(mosaic(self.tiles, self.order))

    def close(self) -> None:
        self.window.close()
