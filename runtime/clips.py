"""Event clips: one short video per action event, from a pre-roll before it to a post-roll after it.

Why: an operator told "fall, front door, 14:02" wants to see it, not scroll a day of video. So every
event gets its own file, cut around it, while recognition goes on.

How (:class:`EventClipSink`, a pipeline sink; ``--event-clips DIR --pre-roll S --post-roll S``):

* per lane (a camera, or one of its regions or tracked actors) the sink keeps a bounded ring of the recent
  window frames: each result's frame (``result.image``, the window's newest frame, at the window rate),
  held by reference, no copy;
* when an event starts, a recording begins at ``start - pre_roll`` with the ring's frames; frames follow
  until ``end + post_roll``. Events are decided a little after they happen (half a window, plus
  ``min_duration``), so frames reach a recording that much late: by then its end is known, and no clip
  runs past its post-roll;
* the frames go to one writer thread per sink (encoding never runs on the recognition thread), which puts
  them on the clip's fixed frame rate (each clip frame is the window frame nearest its time), draws the
  overlay unless ``raw``, and writes the file under a temporary name beside the target, renamed into place
  once whole (:class:`~aknet_edge.runtime.video_out.VideoOutput`);
* a clip in place is announced to the pipeline's other sinks as an :class:`EventClip`
  (:meth:`~aknet_edge.runtime.sinks.Sink.clip`: the JSON Lines "clip" line, MQTT, webhooks), on the
  pipeline's head stage, after the event's ended line;
* retention: with ``max_mb``, clip files in the folder (``clip-*``, this sink's names) beyond that total are
  deleted oldest first (never the newest);
* a full disk (less free space than the video output keeps free) skips the clip with a warning; the next
  event tries again, and recognition goes on.

Frame rate: the window rate, ``1 / (stride x sample period)``: the demo package's 8 samples over 2 s make
3.5 frames per second by default (``--stride`` in whole sample periods; a clip cannot be denser than the
windows). Duration: ``end + post_roll - (start - pre_roll)`` within half a frame interval (a clip starts at
the oldest frame kept when the ring does not reach back that far, e.g. just after a camera came up, and stops
at the last frame that came when frames stop, e.g. the camera was lost).

Memory: the ring holds ``pre_roll + span + 2 x min_duration + 3 frame intervals`` seconds of window frames per
lane (references to the frames the source decoded, no copies): with the defaults and the demo package 5.4 s at
3.5 fps, about 19 frames, that is 19 x W x H x 3 bytes per camera (118 MB at 1920x1080, 53 MB at 1280x720,
17.5 MB at 640x480). A recording holds no frames of its own: they go to the writer as they come, and its queue
holds at most :data:`QUEUE_FRAMES` (all clips together; the ring's frames, unless the writer falls behind).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import logging
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from aknet_edge.checks import check_number
from aknet_edge.errors import ConfigError
from aknet_edge.media import FOURCC

from . import records
from .lane import lane_name
from .overlay import draw_overlay
from .records import TRACK_LOST
from .sinks import Sink
from .video_out import MIN_FREE_BYTES, VideoOutput, free_bytes
from .window import stride_steps

log = logging.getLogger(__name__)

FORMATS: Tuple[str, ...] = tuple(s.lstrip(".") for s in FOURCC)  # container suffixes: mp4, avi, mkv
PREFIX = "clip-"  # the sink's file names; retention touches only these
QUEUE_FRAMES = 64  # frames waiting for the writer, all clips together; more are dropped (the clip holds a frame)
DRAIN_S = 60.0  # how long closing waits for the writer to finish the clips in progress
STALE_S = 10.0  # an ended event whose post-roll frames stop coming is written after post_roll + this (wall time)
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_CLIP_FILE = re.compile(r"^clip-.+\.(?:" + "|".join(FORMATS) + r")$")


@dataclass
class EventClipOptions:
    """What ``--event-clips DIR`` and its flags ask for (``event_clips=`` of the recognisers takes this or a folder).

    ``pre_roll_s``/``post_roll_s``: seconds before the event's start and after its end; ``raw``: the camera's frames
    as captured (else with the overlay); ``max_mb``: the clips' total size kept in the folder (None: no limit);
    ``format``: the container (:data:`FORMATS`: mp4 is mp4v, avi and mkv are MJPG); ``max_s``: the longest part
    of an event one clip covers (a longer event's clip is cut there: memory and disk stay bounded).
    """

    folder: str
    pre_roll_s: float = 2.0
    post_roll_s: float = 2.0
    raw: bool = False
    max_mb: Optional[float] = None
    format: str = "mp4"
    max_s: float = 120.0

    def check(self) -> "EventClipOptions":
        """Ranges and the folder (created when its parent exists), before anything opens; returns itself."""
        check_number("--pre-roll", self.pre_roll_s, minimum=0, optional=False, unit="seconds")
        check_number("--post-roll", self.post_roll_s, minimum=0, optional=False, unit="seconds")
        check_number("--event-clips-max-mb", self.max_mb, above=0, unit="MB")
        check_number("--event-clips-max-s", self.max_s, above=0, optional=False, unit="seconds")
        if self.format not in FORMATS:
            raise ConfigError(f"--event-clips-format {self.format}: expected one of {', '.join(FORMATS)}")
        folder = Path(self.folder)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--event-clips {folder}: not a folder; give a folder for the clips")
        if not folder.exists():
            if not folder.parent.is_dir():
                raise ConfigError(f"--event-clips {folder}: its parent folder {folder.parent} does not exist; "
                                  "create it first")
            try:
                folder.mkdir()
            except OSError as exc:
                raise ConfigError(f"--event-clips {folder}: cannot create the folder ({exc.strerror or exc})") \
                    from None
        if not os.access(str(folder), os.W_OK | os.X_OK):
            raise ConfigError(f"--event-clips {folder}: not writable by this user; choose another folder")
        return self


@dataclass
class EventClip:
    """A clip written and in place: what its follow-up record says (:func:`~aknet_edge.runtime.records.clip_record`).

    ``start``/``end``: the clip's first and last moments on the frames' clock; ``event_start``/``event_end``: the
    event's (``event_end`` None when the clip was cut at ``max_s`` while the event went on).
    """

    path: Path
    label: str
    event_start: float
    event_end: Optional[float]
    start: float
    end: float
    frames: int
    fps: float
    bytes: int
    raw: bool
    stream: Optional[str] = None
    roi: Optional[str] = None
    track: Optional[str] = None
    event_id: Optional[Any] = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> Dict[str, Any]:
        return records.clip_record(self)


# --------------------------------------------------------------------------- the head stage's bookkeeping


class _Recording:
    """One event's clip as the head stage sees it: which frames it has been given and where it ends."""

    def __init__(self, rid: int, key: str, event: Any, t0: float) -> None:
        self.id = rid
        self.key = key
        self.label = event.label
        self.start = float(event.start)
        self.t0 = t0
        self.t1: Optional[float] = None  # end + post-roll, once the event ended (or the cut)
        self.last_t = -math.inf  # newest frame time handed to the writer
        self.ended_wall: Optional[float] = None


class _Lane:
    def __init__(self, maxlen: int) -> None:
        self.ring: Deque[Tuple[float, np.ndarray, Any]] = collections.deque(maxlen=maxlen)
        self.recordings: List[_Recording] = []
        self.touched = time.monotonic()


# --------------------------------------------------------------------------- the writer thread's clips


class _Job:
    """One clip on the writer thread: window frames in time order onto the clip's fixed frame rate, into a VideoOutput.

    Clip frame ``i`` is shown from ``t0 + i / fps`` and is the window frame nearest that time (the earlier one on a
    tie: a missing window holds the previous frame). ``t0`` is the requested start (``start - pre_roll``) moved to
    the nearest window frame, so with no window missing every clip frame is one window frame, once.
    """

    _EPS = 1e-6

    def __init__(self, path: Path, t0: float, fps: float, raw: bool, meta: Dict[str, Any]) -> None:
        self.path = path
        self.t0 = t0
        self.fps = fps
        self.raw = raw
        self.meta = meta
        self.cap: Optional[float] = None  # the clip ends here (end + post-roll, once known): no frame shown past it
        self.out: Optional[VideoOutput] = None
        self.slots = 0  # clip frames written
        self.prev: Optional[Tuple[float, np.ndarray, Any]] = None
        self.drawn: Optional[Tuple[int, np.ndarray]] = None  # (id of the source frame, its annotated image)
        self.skipped: Optional[str] = None

    def at(self, i: int) -> float:
        return self.t0 + i / self.fps

    def _wanted(self, i: int, end: Optional[float]) -> bool:
        """Whether clip frame ``i`` is inside a clip ending at ``end`` (its middle before it)."""
        return end is None or self.at(i) + 0.5 / self.fps < end - self._EPS

    def add(self, t: float, image: np.ndarray, result: Any) -> None:
        if self.skipped is not None:
            return
        frame = (t, image, result)
        if self.prev is None:
            # the first frame: the start moves to the window frame nearest it (the ring may not reach back that far)
            self.t0 = t + max(0, math.floor((self.t0 - t) * self.fps + 0.5)) / self.fps
            self.prev = frame
            return
        pt = self.prev[0]
        while self.skipped is None and self.at(self.slots) < t - self._EPS and self._wanted(self.slots, self.cap):
            tau = self.at(self.slots)
            self._write(self.prev if tau - pt <= t - tau + self._EPS else frame)
        self.prev = frame

    def _write(self, frame: Tuple[float, np.ndarray, Any]) -> None:
        _, image, result = frame
        if not self.raw:
            if self.drawn is None or self.drawn[0] != id(image):
                self.drawn = (id(image), draw_overlay(image, result))
            image = self.drawn[1]
        if self.out is None:
            self.out = VideoOutput(self.path, fps=self.fps)
        self.out.write(image)
        self.slots += 1
        if self.out.failed is not None:
            self.skipped = self.out.failed

    def finish(self, t_end: float) -> Optional[int]:
        """Write the last clip frames before ``t_end`` and put the file in place; its frame count, or None."""
        if self.skipped is None and self.prev is not None:
            t_end = min(t_end, self.prev[0] + 0.5 / self.fps)  # frames stopped early: end with the last one
            while self.skipped is None and (self.slots == 0 or self._wanted(self.slots, t_end)):
                self._write(self.prev)
        if self.out is None:
            return None
        if self.skipped is not None:
            self.out.discard()
            return None
        self.out.close()
        if self.out.failed is not None:
            self.skipped = self.out.failed
            return None
        return self.slots

    def discard(self) -> None:
        if self.out is not None:
            self.out.discard()


class EventClipSink(Sink):
    """An MP4 (or MKV, AVI) per action event, written off the recognition thread (see the module docstring).

    ``fps``: the pipeline's window rate (the clip's frame rate); ``lead_s``: the most an event's start or end
    lies behind the result that reports it (half a window span, plus ``min_duration``, plus one window
    interval); ``emit``: where a written clip is announced (the pipeline's ``SinkSet.clip``), always called on
    the head stage or while draining.
    """

    name = "event-clips"
    wants_images = True  # result.image: the window's newest frame, raw; the overlay is drawn here, only for clips
    wants_stats = True  # a head-stage turn about once a second: clips are announced even while no results come

    def __init__(self, options: EventClipOptions, fps: float, lead_s: float,
                 emit: Optional[Callable[[EventClip], None]] = None) -> None:
        check_number("clip fps", fps, above=0, optional=False)
        self.options = options
        self.folder = Path(options.folder).resolve()
        self.fps = float(fps)
        self.lead_s = float(lead_s)
        self.emit = emit
        # frames a new recording may need (back to start - pre_roll, reported up to lead_s late), plus those not yet
        # handed to a recording (lead_s)
        self.keep_s = options.pre_roll_s + 2.0 * self.lead_s + 1.0 / self.fps
        self._maxlen = int(math.ceil(self.keep_s * self.fps)) + 4
        self._lanes: Dict[str, _Lane] = {}
        self._ids = itertools.count(1)
        self._q: "queue.Queue[Tuple[Any, ...]]" = queue.Queue()
        self._done: "queue.Queue[EventClip]" = queue.Queue()
        self._pending = 0  # frames in the writer's queue
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self.written = 0  # clips in place
        self.skipped = 0  # clips not written (full disk, a writer failure, no frames)
        self.dropped_frames = 0  # frames the writer's queue had no room for
        self.deleted = 0  # clips removed by retention
        self.bytes_written = 0
        self._order: Dict[str, int] = {}  # clips written by this sink, in order (file times are coarse: ties)
        # names given out lately: a name retention freed is not given to another clip (a record names one clip)
        self._recent: Deque[str] = collections.deque(maxlen=1024)

    # -- observability (the metrics sink reads these)
    @property
    def queue_depth(self) -> int:
        """Frames waiting for the clip writer."""
        return self._pending

    # -- the sink protocol (head stage)
    def open(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="aknet-clips", daemon=True)
        self._thread.start()

    def result(self, result: Any) -> None:
        image = getattr(result, "image", None)
        if image is not None:
            self._frame(_lane_key(result), float(result.timestamp), image, result)
        self._announce()

    def event(self, event: Any) -> None:
        key = _lane_key(event)
        lane = self._lane(key)
        if event.state == "started":
            rec = _Recording(next(self._ids), key, event, float(event.start) - self.options.pre_roll_s)
            lane.recordings.append(rec)
            self._put(("open", rec.id, self._path(key, event), rec.t0, {
                "stream": event.stream, "roi": event.roi, "track": event.track, "label": event.label,
                "event_start": float(event.start), "event_id": getattr(event, "id", None)}))
            self._feed(lane, rec, limit=lane.ring[-1][0] - self.lead_s if lane.ring else -math.inf)
        else:
            rec = next((r for r in lane.recordings if r.t1 is None and r.label == event.label
                        and abs(r.start - float(event.start)) < 1e-6), None)
            if rec is None:  # its clip was cut at max_s already, or it started before this sink
                return
            rec.t1 = float(event.end) + self.options.post_roll_s
            rec.ended_wall = time.monotonic()
            self._put(("end", rec.id, rec.t1, float(event.end), getattr(event, "id", None)))
            self._feed(lane, rec, limit=math.inf)
            if rec in lane.recordings and getattr(event, "reason", None) is not None:
                self._finish(lane, rec)  # closed by the runtime (source lost, end of stream...): no more frames soon
            if getattr(event, "reason", None) == TRACK_LOST and not lane.recordings:
                self._lanes.pop(key, None)
        self._announce()

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        if state == "lost":  # ended events waiting for post-roll frames get none: write them now
            lane = self._lanes.get(lane_name(stream, info.get("roi"), info.get("track")) or "")
            for rec in list(lane.recordings) if lane is not None else []:
                if rec.t1 is not None:
                    self._finish(lane, rec)
        self._announce()

    def stats(self, stats: Any) -> None:
        now = time.monotonic()
        for key, lane in list(self._lanes.items()):
            for rec in list(lane.recordings):
                if rec.ended_wall is not None and now - rec.ended_wall > self.options.post_roll_s + STALE_S:
                    self._finish(lane, rec)
            if not lane.recordings and now - lane.touched > max(60.0, 4 * self.keep_s):
                del self._lanes[key]  # a lane that went away (a track): its frames go with it
        self._announce()

    def drain(self) -> None:
        """Closing: every recording is written with the frames it has, then announced."""
        for lane in list(self._lanes.values()):
            for rec in list(lane.recordings):
                self._feed(lane, rec, limit=math.inf)
                self._finish(lane, rec)
        self._lanes.clear()
        if self._thread is not None and self._thread.is_alive():
            flushed = threading.Event()
            self._q.put(("flush", flushed))
            if not flushed.wait(DRAIN_S):
                log.warning("event clips: the writer did not finish within %.0f s; clips in progress are dropped",
                            DRAIN_S)
        self._announce()

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(("stop",))
            self._thread.join(DRAIN_S)
            self._thread = None
        self._lanes.clear()

    # -- head-stage helpers
    def _lane(self, key: str) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(self._maxlen)
        lane.touched = time.monotonic()
        return lane

    def _frame(self, key: str, t: float, image: np.ndarray, result: Any) -> None:
        lane = self._lane(key)
        if lane.ring and t < lane.ring[-1][0]:  # the clock went back (a new stream): the recordings end here
            for rec in list(lane.recordings):
                self._finish(lane, rec)
            lane.ring.clear()
        lane.ring.append((t, image, result))
        while lane.ring and lane.ring[0][0] < t - self.keep_s:
            lane.ring.popleft()
        for rec in list(lane.recordings):
            # until the event's end is known, frames reach it lead_s late: by then an end that falls before them
            # is known, so no clip runs past its post-roll
            self._feed(lane, rec, limit=t if rec.t1 is not None else t - self.lead_s)

    def _feed(self, lane: _Lane, rec: _Recording, limit: float) -> None:
        """Hand ``rec`` the ring's frames newer than it has, up to ``limit``; past its end, write it."""
        lo = rec.t0 - 1.0 / self.fps  # one frame before the first slot may be the nearest to it
        for t, image, result in list(lane.ring):
            if t <= rec.last_t or t < lo:
                continue
            if t > limit:
                break
            rec.last_t = t
            if rec.t1 is None and t - rec.start > self.options.max_s:  # too long: the clip is cut here
                log.info("event clip of %s %s: cut at %.0f s (--event-clips-max-s)", rec.key or "the camera",
                         rec.label, self.options.max_s)
                rec.t1 = t
                self._put(("end", rec.id, t, None, None))
            self._put_frame(rec.id, t, image, result)
            if rec.t1 is not None and t >= rec.t1:
                self._finish(lane, rec)
                return

    def _finish(self, lane: _Lane, rec: _Recording) -> None:
        if rec in lane.recordings:
            lane.recordings.remove(rec)
            self._put(("close", rec.id, rec.t1 if rec.t1 is not None else math.inf))

    def _put(self, item: Tuple[Any, ...]) -> None:
        self._q.put(item)

    def _put_frame(self, rid: int, t: float, image: np.ndarray, result: Any) -> None:
        with self._lock:
            if self._pending >= QUEUE_FRAMES:
                self.dropped_frames += 1
                if self.dropped_frames == 1:
                    log.warning("event clips: the writer is behind (%d frames queued); frames are dropped and the "
                                "clip holds the previous one", QUEUE_FRAMES)
                return
            self._pending += 1
        self._q.put(("frame", rid, t, image, result))

    def _announce(self) -> None:
        """Clips the writer put in place, to the other sinks (head stage, in the order they were written)."""
        while True:
            try:
                clip = self._done.get_nowait()
            except queue.Empty:
                return
            if self.emit is not None:
                self.emit(clip)

    def _path(self, key: str, event: Any) -> Path:
        """``clip-<lane>-<local time>-<label>.<format>``, unique in the folder (``-2``, ``-3``... when taken)."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
        base = f"{PREFIX}{_clean(key or 'camera')}-{stamp}-{_clean(event.label)}"
        return self.folder / f"{base}.{self.options.format}"

    # -- the writer thread
    def _writer(self) -> None:
        jobs: Dict[int, _Job] = {}
        while True:
            item = self._q.get()
            kind = item[0]
            if kind == "frame":
                with self._lock:
                    self._pending -= 1
            try:
                if kind == "stop":
                    for job in jobs.values():
                        job.discard()
                    return
                if kind == "flush":
                    item[1].set()
                elif kind == "open":
                    _, rid, path, t0, meta = item
                    jobs[rid] = self._start(path, t0, meta, {job.path for job in jobs.values()})
                elif kind == "frame":
                    job = jobs.get(item[1])
                    if job is not None:
                        job.add(item[2], item[3], item[4])
                elif kind == "end":
                    job = jobs.get(item[1])
                    if job is not None:
                        job.cap = item[2]
                        job.meta["event_end"] = item[3]
                        if item[4] is not None:
                            job.meta["event_id"] = item[4]
                elif kind == "close":
                    job = jobs.pop(item[1], None)
                    if job is not None:
                        self._close(job, item[2])
            except Exception as exc:  # one clip fails; the writer and recognition go on
                rid = item[1] if len(item) > 1 and isinstance(item[1], int) else None
                job = jobs.pop(rid, None) if rid is not None else None
                if job is not None:
                    job.discard()
                self.skipped += 1
                log.warning("event clip: writing failed (%s: %s); the clip is skipped, recognition goes on",
                            type(exc).__name__, exc)

    def _start(self, path: Path, t0: float, meta: Dict[str, Any], taken: Any) -> _Job:
        n = 2
        stem = path.stem
        while path in taken or path.name in self._recent or path.exists():  # two of a lane's events in a second
            path = path.with_name(f"{stem}-{n}{path.suffix}")
            n += 1
        self._recent.append(path.name)
        job = _Job(path, t0, self.fps, self.options.raw, dict(meta))
        try:
            free = free_bytes(self.folder)
        except OSError as exc:
            job.skipped = f"cannot read the free space ({exc})"
        else:
            if free < 2 * MIN_FREE_BYTES:
                job.skipped = f"{os.strerror(28)} ({free} bytes free in {self.folder})"
        return job

    def _close(self, job: _Job, t1: float) -> None:
        frames = job.finish(t1)
        meta = job.meta
        if frames is None:
            self.skipped += 1
            log.warning("event clip of %s %s at %.2f s skipped: %s; recognition goes on",
                        lane_name(meta["stream"], meta["roi"], meta["track"]) or "the camera", meta["label"],
                        meta["event_start"], job.skipped or "no frames came")
            return
        size = job.path.stat().st_size
        self.written += 1
        self.bytes_written += size
        log.info("event clip %s (%d frames, %.1f s)", job.path, frames, frames / job.fps)
        self._retain(job.path)
        self._done.put(EventClip(job.path, meta["label"], meta["event_start"], meta.get("event_end"), job.t0,
                                 job.t0 + frames / job.fps, frames, job.fps, size, job.raw, meta["stream"],
                                 meta["roi"], meta["track"], meta.get("event_id")))

    def _retain(self, newest: Path) -> None:
        """Delete the oldest clip files until the folder's clips fit ``max_mb`` (the newest is kept)."""
        if self.options.max_mb is None:
            return
        self._order[newest.name] = len(self._order)
        limit = int(self.options.max_mb * 1024 * 1024)
        files = []
        for entry in os.scandir(str(self.folder)):
            if _CLIP_FILE.match(entry.name) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                files.append((st.st_mtime_ns, self._order.get(entry.name, -1), entry.name, st.st_size))
        total = sum(f[3] for f in files)
        for _, _, name, size in sorted(files):
            if total <= limit:
                break
            if name == newest.name:
                continue
            try:
                os.unlink(str(self.folder / name))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("event clips: cannot delete %s for --event-clips-max-mb: %s", name, exc)
                continue
            total -= size
            self.deleted += 1
            self._order.pop(name, None)
        if total > limit:
            log.warning("event clips: the newest clip alone (%s) is larger than --event-clips-max-mb %g",
                        newest.name, self.options.max_mb)


def _lane_key(item: Any) -> str:
    return lane_name(getattr(item, "stream", None), getattr(item, "roi", None), getattr(item, "track", None)) or ""


def _clean(text: str) -> str:
    return _NAME_BAD.sub("_", str(text)).strip("_") or "x"


def clip_fps(span_s: float, frames: int, stride_s: Optional[float]) -> float:
    """The window rate: one result per ``stride`` grid periods (see :func:`~aknet_edge.runtime.window.stride_steps`)."""
    period = span_s / max(1, frames - 1)
    return 1.0 / (stride_steps(stride_s, period) * period)


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--event-clips DIR``, ``--pre-roll``, ``--post-roll``, ``--event-clips-raw``, ``--event-clips-max-mb``,
    ``--event-clips-format``, ``--event-clips-max-s`` (checked by :func:`validate`)."""
    d = EventClipOptions("")
    g = parser.add_argument_group("event clips")
    g.add_argument("--event-clips", metavar="DIR", help="write a video clip of every action event into DIR (created "
                   "if its parent exists), from --pre-roll before its start to --post-roll after its end, at the "
                   "window rate; JSON Lines get a 'clip' line naming the file once it is in place")
    g.add_argument("--pre-roll", type=float, metavar="S", help=f"seconds of video before an event (default "
                   f"{d.pre_roll_s:g}); memory: this much of every camera's window frames is kept")
    g.add_argument("--post-roll", type=float, metavar="S", help=f"seconds of video after an event (default "
                   f"{d.post_roll_s:g})")
    g.add_argument("--event-clips-raw", action="store_true", default=None,
                   help="clips of the camera's frames as captured (default: with the overlay)")
    g.add_argument("--event-clips-max-mb", type=float, metavar="MB", help="keep at most MB of clips in DIR: the "
                   "oldest are deleted (default: no limit)")
    g.add_argument("--event-clips-format", choices=FORMATS, help=f"container (default {d.format}; mp4: mp4v, "
                   "avi and mkv: MJPG)")
    g.add_argument("--event-clips-max-s", type=float, metavar="S", help=f"longest part of one event a clip covers "
                   f"(default {d.max_s:g}); a longer event's clip is cut there")


_FLAGS = {"pre_roll": "--pre-roll", "post_roll": "--post-roll", "event_clips_raw": "--event-clips-raw",
          "event_clips_max_mb": "--event-clips-max-mb", "event_clips_format": "--event-clips-format",
          "event_clips_max_s": "--event-clips-max-s"}


def options_from_args(args: argparse.Namespace) -> Optional[EventClipOptions]:
    """The clip options the flags give (None without ``--event-clips``; its other flags alone are an error)."""
    if getattr(args, "event_clips", None) is None:
        given = [flag for dest, flag in _FLAGS.items() if getattr(args, dest, None) is not None]
        if given:
            raise ConfigError(f"{given[0]}: given without --event-clips DIR; add --event-clips DIR or drop it")
        return None
    d = EventClipOptions(args.event_clips)
    pick = (lambda dest, default: default if getattr(args, dest, None) is None else getattr(args, dest))
    return EventClipOptions(args.event_clips, pick("pre_roll", d.pre_roll_s), pick("post_roll", d.post_roll_s),
                            bool(pick("event_clips_raw", d.raw)), pick("event_clips_max_mb", d.max_mb),
                            pick("event_clips_format", d.format), pick("event_clips_max_s", d.max_s))


def validate(args: argparse.Namespace) -> None:
    """The clip flags, before a package, backend or source opens (the folder is created here)."""
    opts = options_from_args(args)
    if opts is not None:
        opts.check()


__all__ = ["DRAIN_S", "EventClip", "EventClipOptions", "EventClipSink", "FORMATS", "PREFIX", "QUEUE_FRAMES",
           "add_arguments", "clip_fps", "options_from_args", "validate"]
