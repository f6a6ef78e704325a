"""What part of a camera's frame a lane looks at: the whole frame, a fixed region, or a tracked actor.

Why: a camera over a workbench or a loading bay sees several people, and a
whole-frame label names one action for all of them. A *view* turns a camera
frame into the lane's frame: a fixed region of interest (``--roi``) crops the
same pixels every time, so a region is recognised exactly as a video of just
that region would be; a track crops around one actor. Crops are resized to
the model's input like whole frames, so every view of every camera batches
into the same backend calls.

Boxes are ``(x, y, w, h)`` in pixels of the camera frame; a region may be given
in fractions of the frame (every value in [0, 1]) and is resolved against the
first frame's size.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from aknet_edge.errors import ConfigError

from .sources import Frame

Box = Tuple[int, int, int, int]  # x, y, w, h in whole pixels, inside the frame
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def clip_box(box: Sequence[float], h: int, w: int) -> Optional[Box]:
    """``box`` rounded outward to whole pixels and clipped to an (h, w) frame; None when nothing is left."""
    x, y, bw, bh = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, bw, bh)) or bw <= 0 or bh <= 0:
        return None
    x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
    x1, y1 = min(w, int(math.ceil(x + bw))), min(h, int(math.ceil(y + bh)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


def union(boxes: Iterable[Sequence[float]]) -> Optional[Tuple[float, float, float, float]]:
    """The smallest box covering every box (None for none)."""
    bs = [tuple(float(v) for v in b) for b in boxes]
    if not bs:
        return None
    x0, y0 = min(b[0] for b in bs), min(b[1] for b in bs)
    x1, y1 = max(b[0] + b[2] for b in bs), max(b[1] + b[3] for b in bs)
    return x0, y0, x1 - x0, y1 - y0


def square(box: Sequence[float], margin: float, h: int, w: int) -> Optional[Box]:
    """``box`` widened by ``margin`` (a fraction of its larger side, each way) and made square around its centre,
    shifted to stay inside an (h, w) frame where it fits, then clipped (the model's input is square: a square
    crop keeps an actor's proportions)."""
    x, y, bw, bh = (float(v) for v in box)
    if bw <= 0 or bh <= 0:
        return None
    side = int(round(min(max(bw, bh) * (1.0 + 2.0 * margin), float(min(h, w)))))
    cx, cy = x + bw / 2.0, y + bh / 2.0
    x0 = int(round(min(max(0.0, cx - side / 2.0), w - side)))
    y0 = int(round(min(max(0.0, cy - side / 2.0), h - side)))
    return clip_box((x0, y0, side, side), h, w)


def crop(frame: Frame, box: Box) -> Frame:
    """The frame's pixels inside ``box`` as a new frame with the same clocks and index (a view, not a copy)."""
    x, y, w, h = box
    return dataclasses.replace(frame, image=frame.image[y:y + h, x:x + w], tensor=None)


@dataclass(frozen=True)
class Region:
    """A named fixed region of one camera (``stream`` None: the only camera, or every camera)."""

    name: str
    box: Tuple[float, float, float, float]
    stream: Optional[str] = None

    @property
    def fractional(self) -> bool:
        return all(0.0 <= v <= 1.0 for v in self.box)

    def pixels(self, h: int, w: int) -> Optional[Box]:
        x, y, bw, bh = self.box
        if self.fractional:
            x, bw, y, bh = x * w, bw * w, y * h, bh * h
        return clip_box((x, y, bw, bh), h, w)


def parse_region(text: str) -> Region:
    """``[STREAM:]NAME=x,y,w,h`` (pixels, or fractions of the frame when every value is in [0, 1])."""
    head, sep, nums = text.partition("=")
    stream, _, name = head.rpartition(":") if ":" in head else ("", "", head)
    try:
        values = tuple(float(v) for v in nums.split(","))
    except ValueError:
        values = ()
    if not sep or len(values) != 4 or not _NAME.match(name) or (stream and not _NAME.match(stream)) \
            or not all(math.isfinite(v) and v >= 0 for v in values) or values[2] <= 0 or values[3] <= 0:
        raise ConfigError(f"--roi {text!r}: expected [STREAM:]NAME=x,y,w,h with a name of letters, digits, '_', '.' "
                          "or '-' and four numbers >= 0 (pixels, or fractions of the frame when all are <= 1), "
                          "e.g. --roi bench=0,0,0.5,1")
    return Region(name, values, stream or None)  # type: ignore[arg-type]


def check_regions(regions: Sequence[Region], streams: Sequence[Optional[str]]) -> None:
    """Region names unique per camera, and every ``STREAM:`` prefix names a camera."""
    seen: set = set()
    names = [s for s in streams if s is not None]
    for r in regions:
        if r.stream is not None and r.stream not in names:
            raise ConfigError(f"--roi {r.stream}:{r.name}: no camera is named {r.stream!r}; cameras: "
                              f"{', '.join(names) or '(one, unnamed: leave out the STREAM: prefix)'}")
        for s in ([r.stream] if r.stream is not None else list(streams)):
            if (s, r.name) in seen:
                raise ConfigError(f"--roi {r.name}: given twice for camera {s or '0'}; give each region its own name")
            seen.add((s, r.name))


class View:
    """How a lane crops its camera's frames: a fixed region, a track's box (moved by the tracker), or nothing.

    ``kind`` is "roi" or "track"; ``name`` the region's name or the track's id. Results and events of the
    lane carry them and the box (in the camera frame's pixels).
    """

    def __init__(self, kind: str, name: str, region: Optional[Region] = None) -> None:
        self.kind = kind
        self.name = name
        self.region = region
        self.box: Optional[Box] = None  # the crop in camera pixels (regions: fixed by the first frame's size)
        self.size: Optional[Tuple[int, int]] = None  # (h, w) the box was resolved for

    def apply(self, frame: Frame) -> Optional[Frame]:
        """The lane's frame, or None when the view has nothing there (a region outside the frame, no box yet)."""
        h, w = frame.image.shape[:2]
        if self.region is not None and self.size != (h, w):
            self.box, self.size = self.region.pixels(h, w), (h, w)
        if self.box is None:
            return None
        return crop(frame, self.box)


__all__ = ["Box", "Region", "View", "check_regions", "clip_box", "crop", "parse_region", "square", "union"]
