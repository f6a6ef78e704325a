"""Tracks from the user's detector: per-frame boxes with ids -> one lane per tracked actor.

Why: the runtime recognises what each person does, but finding and following
people is the user's detector and tracker (YOLO, ByteTrack, DeepStream's
nvtracker, a ROS topic). They hand us boxes with track ids, per frame, and we
recognise each track: through the Python API (:meth:`TrackFeed.push`, or a
callback that returns a frame's boxes) or a JSON Lines file or pipe of
detections aligned by timestamp (``--tracks FILE|-``)::

    {"t": 12.4, "stream": "front", "tracks": [{"id": 7, "box": [x, y, w, h]}, ...]}

(``stream`` optional with one camera; ``t`` on the frames' clock: media time for
files and synthetic sources, ``time.monotonic()`` capture time for cameras.)

The crop: a lane's model input must be cut when the frame arrives (incremental
mode encodes each frame at once), so a track's crop is *causal*: the union of
the track's boxes over the last window span up to this frame, widened by a
margin and made square, so motion inside the window stays inside the crop.
(:mod:`bench/actors.py` measures it against the window-wide union, which needs
the whole window first.)

Tracks appear and end: a track whose id has no box for ``track_timeout_s`` ends
its lane (an open event ends with reason ``track lost``); at most
``max_tracks`` lanes per camera: a new track beyond that waits, counted, until
a lane frees (the oldest tracks keep theirs: dropping an actor mid-action would
lose its event), with one warning.
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import math
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from aknet_edge.errors import ConfigError

from .views import Box, square

log = logging.getLogger(__name__)

TRACK_LOST = "track lost"
Detection = Tuple[str, Tuple[float, float, float, float]]  # (track id, (x, y, w, h) in camera pixels)
BoxesFn = Callable[[Optional[str], float], Optional[Sequence[Tuple[Any, Sequence[float]]]]]


@dataclass
class TrackOptions:
    """How tracks become lanes (the recogniser's ``max_tracks``, ``track_timeout_s``, ``track_margin``)."""

    max_tracks: int = 8  # lanes per camera
    timeout_s: float = 1.0  # a track with no box for this long ends ("track lost")
    margin: float = 0.0  # the crop's widening, a fraction of the box's larger side each way (the union already
    # covers the motion inside the window; widen for detectors whose boxes are tight around a moving body)
    match_s: float = 0.05  # a detection record belongs to a frame within this many seconds


class TrackFeed:
    """Per-camera detections by time, fed by the API, a callback or a JSON Lines reader; read by the pipeline.

    Thread-safe: :meth:`push` may run on any thread (a detector's), the pipeline reads on its own.
    Out-of-order records are put in order; a record far older than what the pipeline has read is too late
    to matter and counted (``late``).
    """

    def __init__(self, callback: Optional[BoxesFn] = None, keep_s: float = 30.0) -> None:
        self.callback = callback
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._times: Dict[Optional[str], List[float]] = {}
        self._boxes: Dict[Optional[str], List[List[Detection]]] = {}
        self.records = 0
        self.late = 0
        self.bad = 0  # boxes refused (not four finite numbers, zero or negative size)
        self._warned_bad = False
        self._reader: Optional[threading.Thread] = None
        self._read_until: Dict[Optional[str], float] = {}

    # -- in
    def push(self, timestamp: float, tracks: Sequence[Tuple[Any, Sequence[float]]], stream: Optional[str] = None) -> None:
        """The boxes of the frame at ``timestamp`` (on the frames' clock): ``[(track_id, (x, y, w, h)), ...]``."""
        t = float(timestamp)
        if not math.isfinite(t):
            self._refuse(f"timestamp {timestamp!r}")
            return
        dets: List[Detection] = []
        for item in tracks:
            try:
                tid, box = item
                b = tuple(float(v) for v in box)
                if len(b) != 4 or not all(math.isfinite(v) for v in b) or b[2] <= 0 or b[3] <= 0:
                    raise ValueError
            except (TypeError, ValueError):
                self._refuse(f"track {item!r}")
                continue
            dets.append((str(tid), b))  # type: ignore[arg-type]
        with self._lock:
            self.records += 1
            if t < self._read_until.get(stream, -math.inf) - self.keep_s:
                self.late += 1
                return
            times = self._times.setdefault(stream, [])
            boxes = self._boxes.setdefault(stream, [])
            i = bisect.bisect_right(times, t)
            times.insert(i, t)
            boxes.insert(i, dets)

    def _refuse(self, what: str) -> None:
        self.bad += 1
        if not self._warned_bad:
            self._warned_bad = True
            log.warning("tracks: %s skipped (expected an id and a box [x, y, w, h] of finite numbers with w, h > 0); "
                        "further bad boxes are counted, not logged", what)

    def read_jsonl(self, target: Union[str, Path, IO[str]]) -> "TrackFeed":
        """Feed from a JSON Lines file or pipe (``-``: stdin) on a thread of its own; a bad line is counted."""
        if isinstance(target, (str, Path)) and str(target) != "-":
            path = Path(target)
            if not path.is_file():
                raise ConfigError(f"--tracks {target}: no such file; give a JSON Lines file of detections "
                                  '({"t": ..., "tracks": [{"id": ..., "box": [x, y, w, h]}]}) or - for stdin')
            fh: IO[str] = open(path, encoding="utf-8")
        elif isinstance(target, (str, Path)):
            fh = sys.stdin
        else:
            fh = target

        def run() -> None:
            try:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        tracks = [(d["id"], d["box"]) for d in rec["tracks"]]
                        self.push(rec["t"], tracks, rec.get("stream"))
                    except (ValueError, KeyError, TypeError) as exc:
                        self._refuse(f"line {n} ({type(exc).__name__}: {exc})")
            finally:
                if fh is not sys.stdin and not isinstance(target, io.TextIOBase):
                    fh.close()

        if isinstance(target, (str, Path)) and str(target) != "-":  # a file: read it now, in order, before frames
            run()
        else:
            self._reader = threading.Thread(target=run, name="aknet-tracks", daemon=True)
            self._reader.start()
        return self

    # -- out (the pipeline)
    def boxes_at(self, stream: Optional[str], t: float, match_s: float) -> Optional[List[Detection]]:
        """The record nearest ``t`` within ``match_s`` (None: no record for this frame; [] an empty one)."""
        if self.callback is not None:
            got = self.callback(stream, t)
            if got is not None:
                self.push(t, got, stream)
        with self._lock:
            self._read_until[stream] = max(self._read_until.get(stream, -math.inf), t)
            key = stream if stream in self._times else (None if None in self._times else stream)
            times, boxes = self._times.get(key, []), self._boxes.get(key, [])
            i = bisect.bisect_left(times, t - match_s)
            best, best_dt = None, math.inf
            while i < len(times) and times[i] <= t + match_s:
                if abs(times[i] - t) < best_dt:
                    best, best_dt = boxes[i], abs(times[i] - t)
                i += 1
            old = bisect.bisect_left(times, t - self.keep_s)  # forget what is long past
            if old:
                del times[:old], boxes[:old]
            return None if best is None else list(best)


@dataclass
class _Track:
    id: str
    history: Deque[Tuple[float, Tuple[float, float, float, float]]] = field(default_factory=deque)
    last_seen: float = 0.0


class TrackRouter:
    """One camera's tracks -> lane boxes, lanes to open and lanes to end (the pipeline does the opening)."""

    def __init__(self, feed: TrackFeed, stream: Optional[str], options: TrackOptions, span_s: float) -> None:
        self.feed = feed
        self.stream = stream
        self.options = options
        self.span_s = span_s
        self.tracks: Dict[str, _Track] = {}
        self.waiting = 0  # track-frames that found every lane taken (max_tracks)
        self._warned_full = False

    def update(self, t: float, h: int, w: int) -> Tuple[Dict[str, Optional[Box]], List[str], List[str]]:
        """A frame at ``t`` of size (h, w) -> (crop box of every live track, tracks that start, tracks lost)."""
        opts = self.options
        dets = self.feed.boxes_at(self.stream, t, opts.match_s)
        started: List[str] = []
        for tid, box in dets or []:
            tr = self.tracks.get(tid)
            if tr is None:
                if len(self.tracks) >= opts.max_tracks:
                    self.waiting += 1
                    if not self._warned_full:
                        self._warned_full = True
                        log.warning("camera %s: more than max_tracks=%d tracks; new ones wait for a free lane "
                                    "(the oldest keep theirs; counted in tracks_waiting)", self.stream or "0",
                                    opts.max_tracks)
                    continue
                tr = self.tracks[tid] = _Track(tid)
                started.append(tid)
            tr.history.append((t, box))
            tr.last_seen = t
        lost = [tid for tid, tr in self.tracks.items() if t - tr.last_seen > opts.timeout_s or t < tr.last_seen - 1.0]
        for tid in lost:
            del self.tracks[tid]
        boxes: Dict[str, Optional[Box]] = {}
        for tid, tr in self.tracks.items():
            while tr.history and tr.history[0][0] < t - self.span_s:
                tr.history.popleft()
            if not tr.history:
                boxes[tid] = None
                continue
            a = np.array([b for _, b in tr.history])  # (n, 4) x, y, w, h: one vectorised union per frame
            x0, y0 = a[:, 0].min(), a[:, 1].min()
            span = (x0, y0, (a[:, 0] + a[:, 2]).max() - x0, (a[:, 1] + a[:, 3]).max() - y0)
            boxes[tid] = square(span, opts.margin, h, w)
        return boxes, started, lost


__all__ = ["TRACK_LOST", "TrackFeed", "TrackOptions", "TrackRouter"]
