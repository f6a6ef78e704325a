"""Temporal sampling: which frames of a video make a clip. One definition for training, calibration,
evaluation and the live runtime.

A clip is the model's T samples taken ``span_s / (T - 1)`` seconds apart
(:func:`sample_period`) on a grid anchored at the first frame's timestamp:
sample k is at ``t0 + k * period`` and resolves to the captured frame nearest
that time (a tie goes to the later frame). :class:`TimeGrid` is that rule;
the runtime's :class:`~aknet_edge.runtime.window.GridSampler` wraps it for live
streams (adding restarts after gaps), and :func:`read_clip` applies it to a
labelled video or frame folder, so a model is trained on exactly the frame
spacing it later sees on the robot.

Timestamps of recorded media follow :func:`media_time`: frame index over the
container's frame rate where it declares one, else the decoder's position;
frame folders play at :data:`FOLDER_FPS` unless told otherwise.

Clips shorter than the span: the samples past the last frame repeat the last
frame (a live stream would not yet have a full window; for training that is
the best available view of a short action). Clips longer than the span: only
their first ``span_s`` seconds are used, as the runtime's first window would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, List, Optional, Tuple, TypeVar

from .errors import ConfigError, DataError
from .media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, listing

if TYPE_CHECKING:  # annotations only: config imports the synthetic generator, which samples by this module
    from .config import ClipSpec

log = logging.getLogger(__name__)

FOLDER_FPS = 15.0  # the frame rate a folder of images plays at (training and the runtime's folder source)
SAMPLING_RULE = "time-grid-1"  # names this module's rule in cache keys; change it when the rule changes
T = TypeVar("T")


def sample_period(frames: int, span_s: float) -> float:
    """Seconds between consecutive samples of a clip."""
    if frames < 1 or not span_s > 0:
        raise ConfigError(f"clip of {frames} frames over {span_s} s: expected frames >= 1, span > 0")
    return span_s / (frames - 1) if frames > 1 else span_s


def media_time(index: int, fps: float, position_s: Optional[float] = None) -> float:
    """Timestamp of frame ``index`` of recorded media: ``index / fps``, or the decoder's position without a rate."""
    if fps > 0:
        return index / fps
    return float(position_s or 0.0)


@dataclass
class Resolved(Generic[T]):
    """Grid sample ``k`` at time ``time``, resolved to ``item`` (the nearest frame)."""

    k: int
    time: float
    item: T


class TimeGrid(Generic[T]):
    """Resolves grid times ``t0 + k * period`` to the nearest pushed item, each exactly once.

    A grid time is resolved as soon as an item at or after it arrives (then the nearest of
    that item and the previous one is known). ``t0`` is the first item's timestamp.
    """

    def __init__(self, period: float) -> None:
        if not period > 0:
            raise ConfigError(f"sample period {period}: expected > 0 seconds")
        self.period = period
        self.reset()

    def reset(self) -> None:
        self.t0: Optional[float] = None
        self.next_k = 0
        self.prev: Optional[Tuple[float, Any]] = None

    @property
    def last_time(self) -> Optional[float]:
        return None if self.prev is None else self.prev[0]

    def push(self, t: float, item: T) -> List[Resolved[T]]:
        """A new item at time ``t`` (non-decreasing) -> the grid samples it resolves, in order."""
        if self.t0 is None:
            self.t0, self.next_k, self.prev = t, 1, (t, item)
            return [Resolved(0, t, item)]
        out: List[Resolved[T]] = []
        # float rounding of t0 + k * period against t: a few ulps of the magnitude (epoch stamps, ~1.8e9 s, as ROS
        # header stamps are, have ulps of 0.24 us), never a share of a frame interval
        eps = 1e-9 + 1e-14 * abs(t)
        prev_t, prev_item = self.prev  # type: ignore[misc]
        while True:
            g = self.t0 + self.next_k * self.period
            if g > t + eps:
                break
            out.append(Resolved(self.next_k, g, prev_item if (g - prev_t) < (t - g) else item))
            self.next_k += 1
        self.prev = (t, item)
        return out


def clip_indices(timestamps: List[float], spec: ClipSpec) -> List[int]:
    """Indices of the frames (at ``timestamps``, non-decreasing) that make the clip: T of them, short clips padded
    with the last frame."""
    grid: TimeGrid[int] = TimeGrid(sample_period(spec.frames, spec.span_s))
    picks: List[int] = []
    for i, t in enumerate(timestamps):
        picks += [r.item for r in grid.push(t, i)]
        if len(picks) >= spec.frames:
            return picks[: spec.frames]
    if not picks:
        return []
    return picks + [len(timestamps) - 1] * (spec.frames - len(picks))


def read_clip(path: str | Path, spec: ClipSpec, fps: float = FOLDER_FPS) -> Any:
    """The clip of a video file or frame folder as T RGB uint8 frames (T, H, W, 3), sampled by time.

    Decodes only up to the clip's last sample and keeps at most T + 1 frames in memory, so a long
    video costs its first ``span_s`` seconds. ``fps`` is the rate of a frame folder.
    """
    import cv2

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"frame folder {path} holds no images ({listing(IMAGE_SUFFIXES)})")
        picks = clip_indices([media_time(i, fps) for i in range(len(files))], spec)
        out = []
        for i in picks:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"cannot decode image {files[i]}")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return _same_size(out, path)
    if path.suffix.lower() not in VIDEO_SUFFIXES and not path.is_file():
        raise DataError(f"{path} is neither a frame folder nor a video file ({listing(VIDEO_SUFFIXES)})")
    grid: TimeGrid[Any] = TimeGrid(sample_period(spec.frames, spec.span_s))
    picks: List[Any] = []
    cap = cv2.VideoCapture(str(path))
    try:
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n, last = 0, None
        while len(picks) < spec.frames:
            ok, img = cap.read()
            if not ok or img is None:
                break
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            last = img
            position = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3 if rate <= 0 else None  # only without a frame rate
            picks += [r.item for r in grid.push(media_time(n, rate, position), img)]
            n += 1
    finally:
        cap.release()
    if last is None:
        raise DataError(f"cannot read any frame from video {path}")
    if len(picks) < spec.frames:
        log.debug("%s is shorter than the clip span (%.2f s): its last frame fills %d samples", path, spec.span_s,
                  spec.frames - len(picks))
        picks += [last] * (spec.frames - len(picks))
    return _same_size([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in picks[: spec.frames]], path)


def _same_size(frames: list, source: Path) -> Any:
    import numpy as np

    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataError(f"{source}: frames differ in size {sorted(shapes)}")
    return np.stack(frames)
