"""The recognition pipeline: N lanes, one backend, one batched call per step, outputs as sinks.

Why one pipeline: a robot with one camera and a site with forty run the same
code. :class:`~aknet_edge.runtime.recognizer.Recognizer` is this pipeline with
one lane; :class:`~aknet_edge.runtime.multistream.MultiRecognizer` with N.
The picture::

    sources --(capture threads)--> lanes --(inference thread)--> backend
        (one per camera)          grid, window, encoder state     one batched encoder call and
                                                                   one batched head/clip call a step
    backend --(head stage)--> lanes decide --> sinks (JSON Lines, video, preview, console, ...)
                                           --> result queue (iteration, next_result) and callbacks

Threading contract:

* each source captures on its own thread into a bounded buffer (newest frames
  win for live sources; files block instead of dropping);
* one inference thread takes at most one new frame from every lane that has
  one, samples the lanes' time grids, preprocesses, and runs one batched
  encoder call a round (incremental mode; exact mode included) -- a lane that
  stalls, reconnects or ends never holds the others back more than one step;
* the head stage runs each step's batched head (or whole-clip) call and
  everything after it: smoothing, events, the sinks and the ``on_result`` /
  ``on_event`` callbacks, one at a time and in the order of the frames. With
  ``overlap`` on a backend whose roles may run concurrently (ONNX Runtime) it
  is a second thread ("aknet-head") overlapping the next frames' encoding;
  otherwise it runs inline on the inference thread ("aknet-inference");
* iteration and :meth:`Pipeline.next_result` read a bounded queue: when the
  consumer falls behind, the oldest results are dropped (``results_dropped``),
  never the inference; every reader sees the end (or the error).

Outages: a lane whose live source stops delivering ends its open event with
``reason="source lost"``, restarts its smoothing and window, reports
"reconnecting" in telemetry and a ``stream``/``lost`` line to the sinks; the
first frame after the reconnect reports "restored". A Triton server that goes
away ends every lane's open event with ``reason="server lost"``.

Sinks (:mod:`.sinks`) fail alone: one that raises is warned about once and
switched off; recognition and the other sinks go on. Callbacks are not sinks: a
failing callback stops recognition with its error.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from aknet_edge import package as packaging
from aknet_edge.errors import ConfigError
from aknet_edge.preprocess import preprocess_frame
from aknet_edge.triton_contract import CLIP_MODEL, STREAM_MODEL, mode_unavailable

from .backend_choice import open_backend
from .backends import Backend, ClipOutput
from .events import ActionEvent, EventConfig
from .lane import END_OF_STREAM, ERROR, SERVER_LOST, STOPPED, Lane, Result
from .outputs import sinks_from_options
from .result_queue import STOP, ResultQueue
from .sinks import Sink, SinkSet
from .sources import EndOfStream, Frame, Source, SourceOpenError, open_source
from .telemetry import ENDED, LIVE, RECONNECTING, PipelineStats, Telemetry
from .tracks import TRACK_LOST, TrackFeed, TrackOptions, TrackRouter
from .views import Region, View, check_regions, parse_region
from .window import Sample, encode_batch

log = logging.getLogger(__name__)

SourceArg = Union[str, int, Source]
_JOIN_S = 30.0  # how long close() waits for the threads (a blocked callback or sink can hold them)
_IDLE_S = 0.1  # longest wait for any lane's next frame (every source wakes the loop when one arrives)
_STATS_S = 1.0  # how often sinks that want telemetry get a snapshot
_EVENT_FIELDS = ("smoothing", "ema_alpha", "mean_windows", "enter", "exit", "min_duration_s")


class PipelineClosedError(RuntimeError):
    """A closed recogniser was asked to start again (it opens nothing once closed)."""


@dataclass
class RecognizerOptions:
    """Every knob of the recognisers (also accepted as keyword arguments)."""

    backend: str = "auto"
    precision: str = "auto"
    providers: Optional[List[str]] = None  # onnxruntime execution providers (default: CPU; auto: best installed)
    # onnxruntime intra-op threads (default: one camera leaves a core to capture; several cameras take every core)
    threads: Optional[int] = None
    incremental: Optional[bool] = None  # None: when the package has split graphs
    exact_incremental: bool = True
    # backend "triton": the model runs on a Triton server (aknet_edge.triton_repo's aknet_stream), one uint8 frame
    # per grid sample; a camera's correlation id there is triton_sequence_base + triton_camera + its index
    triton_url: Optional[str] = None  # HOST:PORT of the server's gRPC endpoint
    triton_camera: int = 0
    triton_sequence_base: Optional[int] = None  # None: random per run (two devices sharing a server never collide)
    stride_s: Optional[float] = None  # None: one sample period (span_s / (frames - 1))
    # event settings: one source of defaults, EventConfig's
    smoothing: str = EventConfig.smoothing
    ema_alpha: float = EventConfig.ema_alpha
    mean_windows: int = EventConfig.mean_windows
    enter: float = EventConfig.enter
    exit: float = EventConfig.exit
    min_duration_s: float = EventConfig.min_duration_s
    top_k: int = 3
    keypoints_top: int = 32
    # outputs by name (each becomes a sink: runtime.outputs); ``sinks`` adds sinks of your own
    jsonl: Any = None  # path, "-" or a text stream
    preview_port: Optional[int] = None
    preview_host: str = "127.0.0.1"  # not a loopback address: a warning (the page shows camera video)
    preview_token: Optional[str] = None  # a secret every preview request must carry (default: AKNET_PREVIEW_TOKEN)
    output_video: Optional[str] = None  # several streams: one file each, out.mp4 -> out-<stream>.mp4
    display: bool = False
    # a clip per action event (runtime/clips.py): a folder, or clips.EventClipOptions (pre-roll, post-roll, raw...)
    event_clips: Any = None
    # Prometheus /metrics, /healthz and /readyz (runtime/prom.py): a port, or prom.MetricsOptions (host, token...)
    metrics: Any = None
    sinks: List[Sink] = field(default_factory=list)
    queue_size: int = 64
    max_seconds: Optional[float] = None
    keep_images: bool = False  # attach the newest frame to each Result
    # run each step's last model call (the head, or the whole clip), events and outputs on a second thread
    # while the next frames are prepared and encoded (backends with ``concurrent_roles``: ONNX Runtime). Same
    # results; more windows per second when frames are backlogged (files, fast cameras); no change to a live
    # camera's latency
    overlap: bool = True
    # preprocess each frame on the capture thread instead of the inference thread (one resize per captured
    # frame, used or not). Off by default: on our 2-core benchmark it lowered throughput (GIL and memory
    # traffic shared with inference); try it where the camera's frames are large and cores are plentiful
    preprocess_on_capture: bool = False
    source_options: Dict[str, Any] = field(default_factory=dict)
    # per camera, by stream name: source options over ``source_options``, and event settings over the ones above
    # (smoothing, ema_alpha, mean_windows, enter, exit, min_duration_s; every lane of that camera uses them)
    stream_source_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    stream_events: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    # several cameras: one that does not open at start is retried in the background with its reconnect policy and
    # reported lost until it comes up, while the others run (start fails only when none opens); True: any camera
    # that does not open fails the start. One camera that does not open is always an error
    require_all_sources: bool = False
    # per-person recognition (runtime/views.py, runtime/tracks.py): fixed regions, each its own lane
    # (views.Region or "[STREAM:]NAME=x,y,w,h"), or tracks from the user's detector (a tracks.TrackFeed, a JSON
    # Lines file of detections, or "-" for stdin), one lane per tracked actor
    regions: List[Any] = field(default_factory=list)
    tracks: Any = None
    max_tracks: int = TrackOptions.max_tracks  # lanes per camera
    track_timeout_s: float = TrackOptions.timeout_s  # a track without a box for this long ends ("track lost")
    track_margin: float = TrackOptions.margin  # the crop's widening around the track's boxes
    # one camera's name: set, every result, event and stream line carries it as "stream" (the run CLI names
    # each source; MultiRecognizer names every stream by its key)
    stream: Optional[str] = None
    on_result: Optional[Callable[[Result], None]] = None
    on_event: Optional[Callable[[ActionEvent], None]] = None


def parse_options(who: str, options: Dict[str, Any]) -> RecognizerOptions:
    """Keyword arguments -> :class:`RecognizerOptions`; an unknown name is an error naming it."""
    names = {f.name for f in fields(RecognizerOptions)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"{who}: unknown options {unknown}; known: {sorted(names)}")
    opts = RecognizerOptions(**options)
    if opts.stride_s is not None and not opts.stride_s > 0:
        raise ConfigError(f"stride_s={opts.stride_s}: expected > 0 seconds (or None: one sample period)")
    opts.regions = [r if isinstance(r, Region) else parse_region(str(r)) for r in opts.regions]
    if opts.regions and opts.tracks is not None:
        raise ConfigError("regions and tracks: give one or the other (a camera's lanes are its regions, or its "
                          "tracks)")
    if isinstance(opts.max_tracks, bool) or not isinstance(opts.max_tracks, int) or opts.max_tracks < 1:
        raise ConfigError(f"max_tracks={opts.max_tracks!r}: expected a whole number >= 1")
    for name in ("track_timeout_s", "track_margin"):
        value = getattr(opts, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name}={value!r}: expected a finite number >= 0")
    return opts


class Camera:
    """One source and the lanes that look at it: the whole frame, its regions, or its tracked actors."""

    def __init__(self, name: Optional[str], source: Source, index: int) -> None:
        self.name = name
        self.source = source
        self.index = index
        self.lanes: List[Lane] = []
        self.router: Optional[TrackRouter] = None
        self.ended = False


def check_stream_count(backend: Backend, n: int, package_dir: Any) -> None:
    """Refuse more streams than the package's engines were built to batch, with the command that fixes it."""
    limit = backend.max_streams
    if limit is not None and n > limit:
        raise ConfigError(f"{n} streams, but the package's {backend.name} engines in {package_dir} were built for at "
                          f"most {limit}; rebuild them for {n}: python -m aknet_edge.build --from {package_dir} "
                          f"--max-streams {n} (or run at most {limit} streams, or --backend onnxruntime)")


@dataclass
class _Job:
    lane: Lane
    x: np.ndarray  # the window's features (T, C, h, w) or clip (T, 3, S, S)
    samples: List[Sample]
    newest: Frame


class Pipeline(ResultQueue):
    """N named sources recognised with one model package and one backend (see the module docstring).

    ``pairs``: (name, source) per lane, a source being a URI for
    :func:`~aknet_edge.runtime.sources.open_source` (``source_options`` apply to all) or an unopened
    :class:`~aknet_edge.runtime.sources.Source`; a name of None (one lane only) leaves lines unnamed.
    """

    _thread_names = ("aknet-inference", "aknet-head")

    def __init__(self, package_dir: Union[str, Path], pairs: Sequence[Tuple[Optional[str], SourceArg]],
                 options: RecognizerOptions) -> None:
        self.options = opts = options
        self._pairs = list(pairs)
        check_regions(opts.regions, [name for name, _ in self._pairs])
        # several lanes (cameras, regions or tracks): lines and stats name them, the backend gets every core
        self.several = len(self._pairs) > 1 or bool(opts.regions) or opts.tracks is not None
        self.cameras: List[Camera] = []
        self.tracks: Optional[TrackFeed] = None
        self.package_dir = package_dir
        self.package = packaging.load(package_dir)
        self.spec = self.package.clip_spec
        self.labels = self.package.labels
        self.event_config = EventConfig(**{f: getattr(opts, f) for f in _EVENT_FIELDS})
        self.stream_event_configs = stream_event_configs(self.event_config, opts.stream_events,
                                                         [name for name, _ in self._pairs])
        unknown = sorted(set(opts.stream_source_options) - {str(name) for name, _ in self._pairs})
        if unknown:
            raise ConfigError(f"stream_source_options: no stream named {unknown[0]!r}; streams: "
                              f"{', '.join(str(name) for name, _ in self._pairs)}")
        self.heartbeat: Optional[float] = None  # monotonic time of the inference loop's last turn (health checks)
        self._next_event_config: Optional[EventConfig] = None  # set_event_config's, applied by the head stage
        self._event_config_lock = threading.Lock()
        self.backend: Optional[Backend] = None
        self.incremental = False
        self.streams_frames = False  # backend "triton": each lane a sequence on the server (aknet_stream)
        self.lanes: Dict[str, Lane] = {}
        self.total_telemetry = Telemetry(rate_horizon_s=max(5.0, 4.0 * (opts.stride_s or 0.0)))  # all lanes
        self.sinks = SinkSet(opts.sinks)  # the caller's own; those the options name are added by start()
        self.results_dropped = 0
        self.steps = 0  # inference steps (each: at most one encoder call and one head call per round)
        self.warned_drops = False
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, opts.queue_size))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._finished = False
        self._closed = False
        self._start_lock = threading.Lock()
        self._wake = threading.Event()  # set by every source when a frame, its end or a failure arrives
        self._head_queue: "Optional[queue.Queue[Any]]" = None
        self._head_thread: Optional[threading.Thread] = None
        self._pending: List[Result] = []
        self._pending_lock = threading.Lock()
        self._next_stats = 0.0
        self._next_camera = 0  # backend "triton": each lane its own sequence
        self.tracks_ended = 0

    # -- lifecycle
    def start(self) -> "Pipeline":
        """Open backend, every source and the sinks, then start the inference thread (idempotent, thread-safe).

        With several cameras, a live one that does not open is retried in the background (its reconnect policy)
        and reported lost until its first frame ("restored"); the start fails (everything opened so far released)
        when no camera opens, when one camera alone does not, with ``require_all_sources``, and for files and
        bad URIs. Once running, a lost source reconnects on its own while the others go on. A closed pipeline
        cannot start again.
        """
        with self._start_lock:
            if self._closed:
                raise PipelineClosedError(f"{type(self).__name__} is closed; make a new one to recognise again")
            if self._thread is None:
                self._start()
        return self

    def _start(self) -> None:
        opts = self.options
        try:
            self.backend = open_backend(self.package, opts.backend, opts.precision, **self._backend_options())
            self.backend.__enter__()
            self._check_backend(self.backend)
            for sink in sinks_from_options(self):
                self.sinks.add(sink)
            self.tracks = self._track_feed()
            for i, (name, arg) in enumerate(self._pairs):
                src = arg if isinstance(arg, Source) else open_source(
                    arg, start=False, **{**opts.source_options, **opts.stream_source_options.get(str(name), {})})
                src.wake = self._wake
                # a frame prepared on capture is the whole frame's: regions and tracks crop it first
                if opts.preprocess_on_capture and not self.streams_frames and not self.several_views:
                    spec = self.spec
                    src.prepare = lambda f: preprocess_frame(f.image, spec, f.color)
                cam = Camera(name, src, i)
                self.cameras.append(cam)
                regions = [r for r in opts.regions if r.stream in (None, name)]
                for r in regions:
                    self._add_lane(cam, View("roi", r.name, r))
                if self.tracks is not None:
                    cam.router = TrackRouter(self.tracks, name, TrackOptions(
                        opts.max_tracks, opts.track_timeout_s, opts.track_margin), self.spec.span_s)
                elif not regions:
                    self._add_lane(cam, None)
            retry = len(self.cameras) > 1 and not opts.require_all_sources  # a camera down at start: see start()
            for cam in self.cameras:
                try:
                    cam.source.start(retry=True) if retry else cam.source.start()  # a subclass's own start()
                except Exception as exc:
                    if len(self.cameras) > 1 and _rebuildable(exc):  # name the stream in the one error line
                        raise type(exc)(f"stream {cam.name}: {exc}") from exc
                    raise
                for lane in cam.lanes:
                    lane.started()
            down = [(cam, err) for cam, err in ((c, getattr(c.source, "open_error", None)) for c in self.cameras)
                    if err is not None]
            if down and len(down) == len(self.cameras):
                raise SourceOpenError("no source could be opened: " + "; ".join(
                    f"stream {cam.name}: {err}" for cam, err in down)) from down[0][1]
            self.sinks.open()
            for cam, err in down:  # reported lost from the start, like an outage, until the first frame
                for lane in cam.lanes:
                    lane.lost_at_start(err)
        except BaseException:
            self._release()
            raise
        assert self.backend is not None
        log.info("recognising %s with %s %s (%s%s)", ", ".join(ln.label for ln in self.lanes.values())
                 or ", ".join(f"tracks of {c.source.uri}" for c in self.cameras),
                 self.backend.name, self.backend.precision, "per-frame streaming on the server" if self.streams_frames
                 else "incremental" if self.incremental else "whole clips",
                 (", parent-row forking" if self.backend.parent_rows else ", full rows") if self.several
                 and self.incremental else "")
        self._thread = threading.Thread(target=self._loop, name=self._thread_names[0], daemon=True)
        self._thread.start()

    @property
    def several_views(self) -> bool:
        return bool(self.options.regions) or self.options.tracks is not None

    def _track_feed(self) -> Optional[TrackFeed]:
        tracks = self.options.tracks
        if tracks is None or isinstance(tracks, TrackFeed):
            return tracks
        if callable(tracks):  # (stream, timestamp) -> [(id, box), ...] for that frame
            return TrackFeed(callback=tracks)
        return TrackFeed().read_jsonl(tracks)

    def _add_lane(self, cam: Camera, view: Optional[View]) -> Lane:
        """A lane for ``cam`` (on the inference thread once running: tracks come and go)."""
        lane = Lane(self, cam.name, cam.source, camera=self.options.triton_camera + self._next_camera, view=view)
        self._next_camera += 1
        cam.lanes.append(lane)
        self.lanes[lane.key(cam.index)] = lane
        return lane

    def _backend_options(self) -> Dict[str, Any]:
        """The options this pipeline gives ``open_backend``: only those the chosen backend takes."""
        opts = self.options
        if opts.backend == "triton":
            return dict(url=opts.triton_url or "", sequence_base=opts.triton_sequence_base,
                        camera=opts.triton_camera, on_state=self._server_state)
        if opts.backend == "tensorrt":
            for name in ("providers", "threads"):
                if getattr(opts, name):
                    raise ConfigError(f"{name}={getattr(opts, name)!r} is an ONNX Runtime option; backend "
                                      "tensorrt does not take it (drop it, or use backend onnxruntime)")
            return {}
        extra: Dict[str, Any] = {"providers": opts.providers} if opts.providers else {}
        # one camera leaves a core to capture (the backend's default); several share one backend whose batched
        # calls get every core: at N = 8 on 2 cores 282 -> 374 windows/s (bench/multistream.py)
        threads = opts.threads or ((os.cpu_count() or 2) if self.several else None)
        if threads:
            extra["threads"] = threads
        return extra

    def _check_backend(self, backend: Backend) -> None:
        """The backend's declared capabilities against what this pipeline was asked to do."""
        opts = self.options
        per_camera = [len([r for r in opts.regions if r.stream in (None, name)]) or
                      (opts.max_tracks if opts.tracks is not None else 1) for name, _ in self._pairs]
        check_stream_count(backend, sum(per_camera), self.package_dir)  # lanes one step may batch
        # a server that keeps the window per frame (incremental=False: whole clips there)
        self.streams_frames = backend.streams_frames and opts.incremental is not False
        if backend.remote:  # the modes the server's repository serves, in the words its writer uses
            if opts.incremental and not self.streams_frames:  # per-frame streaming asked for
                raise ConfigError(mode_unavailable(STREAM_MODEL))
            if not self.streams_frames and not backend.whole_clips:  # whole clips asked for
                raise ConfigError(mode_unavailable(CLIP_MODEL))
        self.incremental = backend.has_split if opts.incremental is None else bool(opts.incremental)
        if self.streams_frames:
            self.incremental = False  # the window is the server's: no encoder here
        elif self.incremental and not backend.has_split:
            raise ConfigError(f"incremental mode needs the split graphs, which {self.package.root} lacks for "
                              f"{backend.name} {backend.precision}; use incremental=False")

    def close(self) -> None:
        """Stop inference, release the sources, close the open events, flush and close every sink (idempotent).

        From a callback it only asks recognition to stop; the ``with`` block (or a later ``close()``)
        releases. Once closed, the pipeline opens nothing again: iteration ends at once.
        """
        if threading.current_thread() in (self._thread, self._head_thread):
            self._stop.set()  # a thread cannot join itself
            self._wake.set()
            return
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                log.warning("the inference thread did not stop within %.0f s (a callback or sink blocked?); "
                            "releasing anyway", _JOIN_S)
        self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _release(self) -> None:
        for cam in self.cameras:
            try:
                cam.source.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", cam.source.uri, exc)
        for _, arg in self._pairs:  # sources handed in but never reached (a start that failed)
            if isinstance(arg, Source) and all(cam.source is not arg for cam in self.cameras):
                arg.close()
        self.sinks.close()
        if self.backend is not None:
            self.backend.__exit__(None, None, None)

    # -- consuming
    def stats(self) -> PipelineStats:
        """Telemetry now: the lanes together, and each lane in ``.streams`` (by name)."""
        per = {}
        for key, lane in list(self.lanes.items()):  # tracks come and go on the inference thread
            lane.sync_source()
            per[key] = lane.telemetry.snapshot()
        if self.several or not per:
            total = self._total(per)
        else:
            total = next(iter(per.values()))
        out = PipelineStats(**asdict(total), streams=per)
        if self.backend is not None and self.backend.remote:
            out.server = self.backend.stats().to_dict()
        return out

    def _total(self, per: Dict[str, Any]) -> Any:
        """All lanes together: counters and rates summed; latency percentiles over every lane's windows; the
        state "live" while any lane is, else "reconnecting" while any is."""
        t = self.total_telemetry
        snaps = list(per.values())
        t.source(sum(s.dropped for s in snaps), sum(s.reconnects for s in snaps), sum(s.corrupt for s in snaps))
        t.frames = sum(s.frames for s in snaps)
        t.skipped_windows = sum(s.skipped_windows for s in snaps)
        states = {s.source_state for s in snaps}
        t.set_state(LIVE if LIVE in states or not snaps else RECONNECTING if RECONNECTING in states else ENDED)
        snap = t.snapshot()
        snap.capture_fps = sum(s.capture_fps for s in snaps)
        snap.outages = sum(s.outages for s in snaps)
        snap.outage_s = sum(s.outage_s for s in snaps)
        return snap

    # -- the inference thread
    def _loop(self) -> None:
        reason = STOPPED
        try:
            assert self.backend is not None
            if self.options.overlap and self.backend.concurrent_roles:
                self._head_queue = queue.Queue(maxsize=1)  # one step waits while one runs: bounded, in order
                self._head_thread = threading.Thread(target=self._head_loop, name=self._thread_names[1],
                                                     daemon=True)
                self._head_thread.start()
            t_end = None if self.options.max_seconds is None else time.monotonic() + self.options.max_seconds
            while not self._stop.is_set():
                self.heartbeat = time.monotonic()
                if t_end is not None and time.monotonic() >= t_end:
                    break
                live = [cam for cam in self.cameras if not cam.ended]
                if self._pending and not any(cam.source.buffered for cam in live):
                    self._hand_off()  # about to wait for a camera: deliver now, latency first
                self._wake.clear()  # before reading: a frame arriving after this wakes the wait below
                one = len(live) == 1 and len(live[0].lanes) == 1 and live[0].router is None
                got = self._gather(live, _IDLE_S if one else 0.0)
                if all(cam.ended for cam in self.cameras):
                    break
                if got:
                    self._step(got)
                elif not one:
                    self._wake.wait(_IDLE_S if t_end is None else max(0.0, min(_IDLE_S, t_end - time.monotonic())))
                if self.sinks.wants_stats and time.monotonic() >= self._next_stats:
                    self._next_stats = time.monotonic() + _STATS_S
                    self.to_head(self.sinks.stats, self.stats())
        except BaseException as exc:  # reported to the consumer by next_result()
            log.error("inference stopped: %s", exc)
            self._error = self._error or exc
            reason = ERROR
        finally:
            head_done = self._stop_head()
            if self._error is not None:
                reason = ERROR
            for lane in list(self.lanes.values()):
                if not head_done:  # a stuck head thread still owns the detectors
                    break
                try:
                    lane.end(reason)
                except Exception as exc:
                    log.warning("%s: closing the open event failed: %s", lane.label, exc)
            self._hand_off()
            if head_done and self.sinks.wants_stats:
                self.sinks.stats(self.stats())
            self._put(STOP, force=True)

    def _gather(self, live: List[Camera], timeout: float) -> List[Tuple[Lane, Frame]]:
        """At most one new frame from every live camera, for each of its lanes (cropped to the lane's view);
        waits up to ``timeout`` (only with one camera and one lane)."""
        got = []
        now = time.monotonic()
        for cam in live:
            try:
                frame = cam.source.read(timeout=timeout)
            except EndOfStream:
                if not self._stop.is_set():
                    log.info("%s: end of stream%s", cam.source.uri, "; the other streams go on"
                             if len(self.cameras) > 1 else "")
                self._end_camera(cam, END_OF_STREAM if not self._stop.is_set() else STOPPED)
                continue
            except Exception as exc:  # failed for good (e.g. out of reconnect attempts)
                if len(self.cameras) == 1:
                    raise  # one camera: its error is the recogniser's
                log.error("stream %s: %s; the other streams go on", cam.name, exc)
                self._end_camera(cam, ERROR, exc)
                continue
            if frame is not None and cam.router is not None:
                self._route_tracks(cam, frame)
            for lane in cam.lanes:
                if frame is None:
                    if now >= lane.next_poll or lane.state != LIVE:
                        lane.poll(None)
                    continue
                if lane.state != LIVE or now >= lane.next_poll:
                    lane.poll(frame)
                view = frame if lane.view is None else lane.view.apply(frame)
                if view is not None:
                    got.append((lane, view))
        return got

    def _end_camera(self, cam: Camera, reason: str, error: Optional[BaseException] = None) -> None:
        cam.ended = True
        for lane in cam.lanes:
            lane.end(reason, error)

    def _route_tracks(self, cam: Camera, frame: Frame) -> None:
        """The camera's tracks at this frame: new tracks get lanes, lost ones end theirs, every crop moves."""
        assert cam.router is not None
        h, w = frame.image.shape[:2]
        boxes, started, lost = cam.router.update(frame.timestamp, h, w)
        by_track = {lane.view.name: lane for lane in cam.lanes if lane.view is not None}
        for tid in lost:
            lane = by_track.pop(tid, None)
            if lane is not None:
                lane.end(TRACK_LOST)
                cam.lanes.remove(lane)
                self.lanes.pop(lane.key(cam.index), None)
                self.tracks_ended += 1
        for tid in started:
            lane = self._add_lane(cam, View("track", tid))
            lane.started()
            by_track[tid] = lane
        for tid, box in boxes.items():
            if tid in by_track:
                by_track[tid].view.box = box  # type: ignore[union-attr]

    def _step(self, got: List[Tuple[Lane, Frame]]) -> None:
        """One step: every lane's new samples in rounds (one encoder call a round), then one call for every
        window that became full."""
        assert self.backend is not None
        self.steps += 1
        plans = [(lane, frame, lane.take(frame)) for lane, frame in got]
        if not any(plan for _, _, plan in plans):
            self._hand_off()  # nothing to compute: no reason to hold a result back
            return
        if self.streams_frames:
            self._step_server(plans)
            return
        jobs: List[_Job] = []
        rounds = max(len(p) for _, _, p in plans)
        prev: Dict[int, Optional[Sample]] = {id(lane): None for lane, _, _ in plans}
        for r in range(rounds):
            encoders, tensors, ready = [], [], []
            for lane, frame, plan in plans:
                if r >= len(plan):
                    continue
                s, is_ready = plan[r]
                tensor = lane.prepare(s, prev[id(lane)])
                prev[id(lane)] = s
                if lane.encoder is not None:
                    encoders.append(lane.encoder)
                    tensors.append(tensor)
                if is_ready:
                    ready.append((lane, frame, r < len(plan) - 1))
            self._hand_off()  # the consumer wakes while the backend runs without the GIL
            if encoders:
                encode_batch(encoders, tensors)
            for lane, frame, more in ready:
                if lane.encoder is not None:
                    x = lane.encoder.window()  # a fresh array
                else:
                    x = lane.window.clip()
                    x = x.copy() if more else x  # later samples of this step overwrite the ring
                jobs.append(_Job(lane, x, list(lane.window.samples), frame))
        if not jobs:
            return
        if len(jobs) == 1 and (self.incremental or self._head_queue is None):
            batch = jobs[0].x[None]  # a fresh feature window, or a ring the inline head reads before it moves
        else:
            batch = np.stack([j.x for j in jobs])  # a copy: the rings may move on while the head thread runs
        for j in jobs:
            j.x = batch[:0]  # drop the reference to the ring or features
        self.to_head(self._head, batch, jobs)

    def _step_server(self, plans: List[Tuple[Lane, Frame, List[Tuple[Sample, bool]]]]) -> None:
        """Backend "triton": every lane's sample as one uint8 frame, sent together (the server batches and
        keeps each lane's window); a full window's scores come back with the frame that completes it."""
        assert self.backend is not None
        for r in range(max(len(p) for _, _, p in plans)):
            sent = [(lane, frame, plan[r]) for lane, frame, plan in plans if r < len(plan)]
            for lane, _, (s, _) in sent:
                lane.window.push(s)
            self._hand_off()  # the consumer wakes while the request is in flight
            answers = self.backend.step_many([(lane.camera, s.frame.image, s.frame.color)
                                              for lane, _, (s, _) in sent])
            for (lane, frame, (_, is_ready)), out in zip(sent, answers):
                if is_ready and out is None:  # the server is lost (or its window was dropped): skipped, counted
                    lane.telemetry.skipped_windows += 1
                elif is_ready:
                    self.to_head(self._head_one, lane, out, list(lane.window.samples), frame)

    # -- the head stage: on the head thread when overlapped, else inline; always in the order of the frames
    def to_head(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the head stage, after everything handed to it before."""
        if self._head_queue is None or threading.current_thread() is self._head_thread:
            fn(*args)
            return
        item = functools.partial(fn, *args)
        while True:  # bounded waits: a failed head thread stops the loop instead of blocking it
            try:
                self._head_queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not (self._head_thread and self._head_thread.is_alive()):
                    raise RuntimeError("the head thread stopped") from self._error
                if self._stop.is_set():
                    return  # closing: this window is not wanted any more

    def _head(self, batch: np.ndarray, jobs: List[_Job]) -> None:
        """One call for every window that became full in a step, then each window's result."""
        assert self.backend is not None
        out = self.backend.head(batch) if self.incremental else self.backend.infer_clip(batch)
        if out is None:  # a remote backend's server is unreachable (reported through its state): skip them
            for job in jobs:
                job.lane.telemetry.skipped_windows += 1
            return
        for i, job in enumerate(jobs):
            one = ClipOutput(out.logits[i:i + 1], out.keypoints[i:i + 1], out.keypoint_scores[i:i + 1])
            self._head_one(job.lane, one, job.samples, job.newest)

    def set_event_config(self, **changes: Any) -> EventConfig:
        """Change the event settings (``enter``, ``exit``, ``min_duration_s``, smoothing...) while recognising; they
        apply from the next window on, to every lane without settings of its own (``stream_events``).

        Why here: the head stage owns the lanes' smoothers and detectors, so the new settings are only recorded now
        (any thread may call this: a ROS 2 parameter service, a web handler) and swapped in by the head stage before
        its next window. Checked now: a bad value is a :class:`ConfigError` and changes nothing. Returns the new
        settings.
        """
        unknown = sorted(set(changes) - set(_EVENT_FIELDS))
        if unknown:
            raise ConfigError(f"set_event_config: unknown settings {unknown}; known: {list(_EVENT_FIELDS)}")
        with self._event_config_lock:  # two callers at once: the second builds on the first
            base = self._next_event_config or self.event_config
            cfg = EventConfig(**{**asdict(base), **changes})  # checks the values (EventConfig.__post_init__)
            self._next_event_config = cfg
        return cfg

    def _apply_event_config(self) -> None:
        """The head stage, before a window: swap in the settings set_event_config recorded."""
        with self._event_config_lock:
            cfg, self._next_event_config = self._next_event_config, None
            if cfg is None:
                return
            old, self.event_config = self.event_config, cfg
        for lane in list(self.lanes.values()):
            if str(lane.name) not in self.stream_event_configs:
                lane.head_set_event_config(cfg)
        log.info("event settings changed from the next window on: %s", ", ".join(
            f"{f}={getattr(cfg, f)}" for f in _EVENT_FIELDS if getattr(cfg, f) != getattr(old, f)) or "no change")

    def _head_one(self, lane: Lane, out: ClipOutput, samples: List[Sample], newest: Frame) -> None:
        if self._next_event_config is not None:
            self._apply_event_config()
        result = lane.head_decide(out, samples, newest)
        with self._pending_lock:
            self._pending.append(result)  # handed to the iterator's queue by _hand_off (see there)

    def _server_state(self, state: str, info: Dict[str, Any]) -> None:
        """The Triton client's callback (inside a step): a server line for the sinks; a lost server ends every
        lane's open event (no results until it is back)."""
        log.warning("Triton server %s: %s", state, info)
        self.to_head(self._head_server, state, info)

    def _head_server(self, state: str, info: Dict[str, Any]) -> None:
        self.sinks.server_state("lost" if state == "lost" else "restored", info)
        if state == "lost":
            for lane in list(self.lanes.values()):
                lane.head_close_events(SERVER_LOST)

    def _head_loop(self) -> None:
        assert self._head_queue is not None
        try:
            while True:
                fn = self._head_queue.get()
                if fn is None:
                    return
                fn()
                self._hand_off()  # the next step is being encoded meanwhile: deliver now
        except BaseException as exc:
            log.error("head stage stopped: %s", exc)
            self._error = self._error or exc  # the first failure is the cause
            self._stop.set()
            self._wake.set()

    def _stop_head(self) -> bool:
        """Let the head thread finish what is queued and join it, within one deadline; True when none is left
        running (what follows then runs inline)."""
        thread, q = self._head_thread, self._head_queue
        if thread is None or q is None:
            return True
        deadline = time.monotonic() + _JOIN_S
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                q.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("the head thread did not stop within %.0f s (a callback or sink blocked?)", _JOIN_S)
            return False
        self._head_queue = None
        return True

    def _hand_off(self) -> None:
        """Queue the pending results for the iterator.

        Deferred to just before the next backend call, or to before waiting for a
        frame: a consumer woken by the queue runs Python and takes the GIL, and on
        a small machine that stalled the next frame's preprocessing (about 130 µs
        a window measured on 2 cores); during a backend call it costs nothing.
        With a live camera the loop waits for frames, so results go out at once;
        with frames backlogged they wait one preprocessing step. Callbacks
        (``on_result``) are not deferred.
        """
        if not self._pending:
            return
        with self._pending_lock:  # the inference and head threads may both hand off: one at a time, in order
            items, self._pending = self._pending, []
            for item in items:
                self._put(item)


def stream_event_configs(base: EventConfig, per_stream: Dict[str, Dict[str, Any]],
                         streams: Sequence[Optional[str]]) -> Dict[str, EventConfig]:
    """Each named stream's event settings (``per_stream[name]`` over ``base``); a stream or a setting that does not
    exist is an error naming it."""
    known = [str(s) for s in streams if s is not None]
    out = {}
    for name, over in (per_stream or {}).items():
        if name not in known:
            raise ConfigError(f"stream_events: no stream named {name!r}; streams: {', '.join(known) or 'none named'}")
        unknown = sorted(set(over) - set(_EVENT_FIELDS))
        if unknown:
            raise ConfigError(f"stream_events[{name!r}]: unknown settings {unknown}; known: {list(_EVENT_FIELDS)}")
        out[name] = EventConfig(**{**asdict(base), **over})
    return out


def _rebuildable(exc: BaseException) -> bool:
    """Whether ``type(exc)(message)`` makes the same kind of error (to name the stream in it)."""
    try:
        type(exc)("probe")
    except Exception:
        return False
    return True


__all__ = ["Pipeline", "PipelineClosedError", "RecognizerOptions", "check_stream_count", "parse_options"]
