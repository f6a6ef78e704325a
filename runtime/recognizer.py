"""The embeddable recogniser: source -> time windows -> backend -> results, events and outputs.

Threading contract:

* the source captures on its own thread into a bounded buffer (newest frames win
  for live sources; files block instead of dropping);
* one inference thread reads frames, samples windows, runs the backend, turns
  scores into events and writes the outputs (JSON Lines, preview server, video
  file, window). ``on_result(result)`` and ``on_event(event)`` callbacks run on
  this inference thread: keep them short, a slow callback slows recognition
  (they never block capture);
* on a backend that allows it (ONNX Runtime), a window's last model call (the
  clip head in incremental mode, the whole-clip graph otherwise) and
  everything after it (events, outputs, callbacks) run on a second "head"
  thread, overlapping the next frames' sampling, preprocessing and encoding;
  the callbacks then run there instead, still one at a time and in order;
* iterating the recogniser (or :meth:`Recognizer.next_result`) reads a bounded
  queue fed by the inference thread; when the consumer falls behind, the oldest
  queued results are dropped (counted in ``results_dropped``), never the
  inference. Any number of threads may read it; each gets different results, and
  every one of them sees the end (:class:`EndOfStream`, or the error).

Outages: when a live source stops delivering (it reports the loss and
reconnects on its own thread), the inference thread notices once the frames
captured before the loss are used up. The open event then ends with
``reason="source lost"``, the smoothing and the window start afresh, telemetry
says "reconnecting" (rates zero), and JSON Lines get ``{"type": "stream",
"state": "lost", ...}``; the first frame after the reconnect writes "restored"
and telemetry says "live" again.

Outputs that fail at run time (a full disk under the JSON Lines file or the
video, a closed stdout pipe, a preview client hanging up) warn once and stop
(or drop that client); recognition goes on. Callbacks are not outputs: a
failing callback stops recognition with its error.

Usage::

    with Recognizer("pkg/", "csi://0", jsonl="out.jsonl") as rec:
        for result in rec:
            print(result.label, result.confidence)
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from aknet_edge import package as packaging
from aknet_edge.errors import ConfigError
from aknet_edge.preprocess import preprocess_frame

from .backends import Backend, ClipOutput, open_backend
from .events import ActionEvent, EventConfig, EventDetector, Smoother, softmax, top_k
from .result_queue import STOP, ResultQueue
from .sources import EndOfStream, Frame, Source, SourceStats, open_source
from .telemetry import ENDED, LIVE, RECONNECTING, Telemetry, TelemetrySnapshot
from .window import GridSampler, IncrementalEncoder, Sample, WindowBuffer, stride_steps

log = logging.getLogger(__name__)


@dataclass
class Result:
    """One window's decision. Times in seconds on the frames' clock (media time when known)."""

    timestamp: float  # time of the window's newest sample
    window_start: float
    label: str  # smoothed top class
    confidence: float  # its smoothed probability
    top_k: list[tuple[str, float]]  # raw (unsmoothed) window scores
    keypoints: list[tuple[float, float, float, float]]  # (time_s, x_px, y_px, score), best first; [] without
    # keypoints (TSM)
    # the newest frame reaching the source's buffer -> this window's scores; the delay before that (exposure,
    # camera encoder, network, decoder) is not in it, nor the outputs' time after it
    latency_ms: float
    fps: float  # results per second
    frame_index: int
    events: list[ActionEvent] = field(default_factory=list)
    probs: np.ndarray | None = field(default=None, repr=False)  # smoothed probabilities
    image: np.ndarray | None = field(default=None, repr=False)  # the newest window frame (BGR)
    stream: str | None = None  # the camera's name where one recogniser serves several (MultiRecognizer)
    logits: np.ndarray | None = field(default=None, repr=False)  # the window's raw logits (classes,)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {} if self.stream is None else {"stream": self.stream}
        obj.update({"type": "result", "timestamp": round(self.timestamp, 4),
                    "window_start": round(self.window_start, 4), "label": self.label,
                    "confidence": round(self.confidence, 4), "top_k": [[n, round(p, 4)] for n, p in self.top_k],
                    "keypoints": [[round(a, 3), round(x, 1), round(y, 1), round(s, 4)]
                                  for a, x, y, s in self.keypoints],
                    "latency_ms": round(self.latency_ms, 2), "fps": round(self.fps, 2), "frame": self.frame_index})
        return obj


@dataclass
class RecognizerOptions:
    """Every knob of :class:`Recognizer` (also accepted as keyword arguments)."""

    backend: str = "auto"
    precision: str = "auto"
    providers: list[str] | None = None  # onnxruntime execution providers (default: CPU; auto: best installed)
    threads: int | None = None  # onnxruntime intra-op threads (default: onnxruntime's choice)
    incremental: bool | None = None  # None: when the package has split graphs
    exact_incremental: bool = True
    # backend "triton": the model runs on a Triton server (aknet_edge.triton_repo's aknet_stream), one uint8 frame
    # per grid sample; this camera's correlation id there is triton_sequence_base + triton_camera
    triton_url: str | None = None  # HOST:PORT of the server's gRPC endpoint
    triton_camera: int = 0
    triton_sequence_base: int = 1
    stride_s: float | None = None  # None: one sample period (span_s / (frames - 1))
    # event settings: one source of defaults, EventConfig's
    smoothing: str = EventConfig.smoothing
    ema_alpha: float = EventConfig.ema_alpha
    mean_windows: int = EventConfig.mean_windows
    enter: float = EventConfig.enter
    exit: float = EventConfig.exit
    min_duration_s: float = EventConfig.min_duration_s
    top_k: int = 3
    keypoints_top: int = 32
    jsonl: Any = None  # path, "-" or a text stream
    preview_port: int | None = None
    preview_host: str = "127.0.0.1"
    output_video: str | None = None
    display: bool = False
    queue_size: int = 64
    max_seconds: float | None = None
    keep_images: bool = False  # attach the newest frame to each Result
    # run each window's last model call (the head, or the whole clip), events and outputs on a second thread
    # while the next frames are prepared and encoded (backends with ``concurrent_roles``: ONNX Runtime). Same
    # results; more windows per second when frames are backlogged (files, fast cameras); no change to a live
    # camera's latency
    overlap: bool = True
    # preprocess each frame on the capture thread instead of the inference thread (one resize per captured
    # frame, used or not). Off by default: on our 2-core benchmark it lowered throughput (GIL and memory
    # traffic shared with inference); try it where the camera's frames are large and cores are plentiful
    preprocess_on_capture: bool = False
    source_options: dict[str, Any] = field(default_factory=dict)
    # this camera's name: set, every result, event and stream line carries it as "stream" (the run CLI names
    # each source; MultiRecognizer names every stream)
    stream: str | None = None
    on_result: Callable[[Result], None] | None = None
    on_event: Callable[[ActionEvent], None] | None = None


_JOIN_S = 30.0  # how long close() waits for the threads (a blocked callback or output can hold them)
_POLL_S = 0.25  # while frames flow, how often the inference thread checks the source's state
# why the runtime, not the scores, ended an event (ActionEvent.reason)
SOURCE_LOST, STREAM_GAP, END_OF_STREAM = "source lost", "stream gap", "end of stream"
STOPPED, ERROR = "stopped", "error"
SERVER_LOST = "server lost"  # the Triton server became unreachable (backend "triton")
_TXY = np.array([0, 2, 1])  # keypoint columns (t, y, x) -> (t, x, y)
_EVENT_FIELDS = ("smoothing", "ema_alpha", "mean_windows", "enter", "exit", "min_duration_s")


def window_keypoints(out: ClipOutput, k: int, span_s: float, t_start: float, h: int,
                     w: int) -> list[tuple[float, float, float, float]]:
    """The ``k`` best keypoints of the first window in ``out`` as (time_s, x_px, y_px, score), best first."""
    if k <= 0:
        return []
    pts, scores = out.keypoints[0], out.keypoint_scores[0]
    if k < len(scores):  # the k best without sorting all K
        best = np.argpartition(-scores, k - 1)[:k]
        order = best[np.argsort(-scores[best], kind="stable")]
    else:
        order = np.argsort(-scores, kind="stable")
    # (t, y, x) normalised -> (time_s, x_px, y_px, score): one (k, 4) array, one tolist (this runs every window)
    a = np.empty((len(order), 4))
    a[:, :3] = pts[order][:, _TXY]
    a[:, 3] = scores[order]
    a[:, :3] *= (span_s, w, h)
    a[:, 0] += t_start
    return list(map(tuple, a.tolist()))


class Recognizer(ResultQueue):
    """Recognise actions in a live source with a model package; a context manager and an iterator.

    ``source`` is a URI for :func:`~aknet_edge.runtime.sources.open_source` (its options go in
    ``source_options``) or an unopened :class:`~aknet_edge.runtime.sources.Source`; other keyword
    arguments are :class:`RecognizerOptions` fields.

    Threading: capture runs on the source's thread; inference runs on an inference thread, and
    events, outputs and the ``on_result``/``on_event`` callbacks on the inference thread or, with
    ``overlap`` on ONNX Runtime, on the head thread: one thread either way, in order (keep
    callbacks short). Iteration and :meth:`next_result` read a bounded queue that drops its
    oldest results when the consumer lags (``results_dropped``). Ended events, including the
    one closed at end of stream, are also kept in :attr:`events`. Calling :meth:`close` from a
    callback only asks recognition to stop; the ``with`` block (or a later ``close()``) releases.
    """

    def __init__(self, package_dir: str | Path, source: str | int | Source, **options: Any) -> None:
        names = {f.name for f in fields(RecognizerOptions)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"Recognizer: unknown options {unknown}; known: {sorted(names)}")
        self.options = opts = RecognizerOptions(**options)
        self.package = packaging.load(package_dir)
        self.spec = self.package.clip_spec
        self.labels = self.package.labels
        self.event_config = EventConfig(**{f: getattr(opts, f) for f in _EVENT_FIELDS})
        self._source_arg = source
        self.source: Source | None = source if isinstance(source, Source) else None
        self.backend: Backend | None = None
        self.telemetry = Telemetry(rate_horizon_s=max(5.0, 4.0 * (opts.stride_s or 0.0)))
        self.events: collections.deque[ActionEvent] = collections.deque(maxlen=1000)
        self.results_dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, opts.queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pending: Result | None = None
        self._pending_lock = threading.Lock()
        self._head_queue: queue.Queue[Any] | None = None
        self._head_thread: threading.Thread | None = None
        self._finished = False
        self._start_lock = threading.Lock()
        self._stream_state = LIVE
        self._end_reason = STOPPED
        self._outputs: list[Any] = []
        self.preview: Any = None
        self._closed = False

    # -- lifecycle
    def start(self) -> Recognizer:
        """Open backend, source and outputs, then start the inference thread (idempotent, thread-safe)."""
        with self._start_lock:
            if self._thread is None:
                self._start()
        return self

    def _start(self) -> None:
        opts = self.options
        if opts.stride_s is not None and opts.stride_s <= 0:
            raise ConfigError(f"stride_s={opts.stride_s}: expected > 0 seconds (or None: one sample period)")
        try:
            extra: dict[str, Any] = {"providers": opts.providers} if opts.providers else {}
            if opts.threads:
                extra["threads"] = opts.threads
            if opts.backend == "triton":
                extra = dict(url=opts.triton_url or "", camera=opts.triton_camera,
                             sequence_base=opts.triton_sequence_base, on_state=self._server_state)
            self.backend = open_backend(self.package, opts.backend, opts.precision, **extra)
            # the server runs preprocessing, encoder, ring and head per frame (incremental=False: whole clips there)
            self._streams_frames = getattr(self.backend, "streams_frames", False) and opts.incremental is not False
            self.incremental = self.backend.has_split if opts.incremental is None else bool(opts.incremental)
            if self.incremental and not self.backend.has_split:
                raise ConfigError(f"incremental mode needs the split graphs, which {self.package.root} lacks for "
                                  f"{self.backend.name} {self.backend.precision}; use incremental=False")
            self._open_outputs()
            if self.source is None:
                self.source = open_source(self._source_arg, start=False, **opts.source_options)
            if opts.preprocess_on_capture:
                spec = self.spec
                self.source.prepare = lambda f: preprocess_frame(f.image, spec, f.color)
            self.source.start()
            if self.jsonl is not None:
                self.jsonl.open()
        except BaseException:
            self._release()
            raise
        log.info("recognising %s with %s %s (%s)", self.source.uri, self.backend.name, self.backend.precision,
                 "incremental" if self.incremental else "whole clips")
        self._thread = threading.Thread(target=self._loop, name="aknet-inference", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop inference, release the source, close the open event and flush every output."""
        if threading.current_thread() in (self._thread, self._head_thread):
            self._stop.set()  # from a callback: a thread cannot join itself; the owner's close() releases
            return
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                log.warning("the inference thread did not stop within %.0f s (a callback or output blocked?); "
                            "releasing anyway", _JOIN_S)
        self._release()

    def __enter__(self) -> Recognizer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- consuming
    def stats(self) -> TelemetrySnapshot:
        """Telemetry now: rates, latency, counters and the source's state (see :class:`TelemetrySnapshot`)."""
        self._sync_source()
        snap = self.telemetry.snapshot()
        if getattr(self.backend, "streams_frames", False):
            snap.server = self.backend.stats().to_dict()  # type: ignore[union-attr]
        return snap

    @property
    def source_state(self) -> str:
        """"live", "reconnecting" or "ended", as the inference thread last saw the source."""
        return self.telemetry.state

    @property
    def segments(self) -> list[Any] | None:
        """Ground truth of a synthetic source (None for real sources)."""
        return None if self.source is None else self.source.segments

    # -- internals
    def _open_outputs(self) -> None:
        from .jsonl import JsonlWriter

        opts = self.options
        if opts.jsonl is not None:
            self.jsonl: Any = JsonlWriter(opts.jsonl, defer=True)  # a file is created once the source started
            self._outputs.append(self.jsonl)
        else:
            self.jsonl = None
        self.video = self.display_window = None
        if opts.preview_port is not None:
            from .preview import MjpegServer

            self.preview = MjpegServer(opts.preview_port, opts.preview_host)
            self._outputs.append(self.preview)
        if opts.output_video:
            from .video_out import VideoOutput

            self.video = VideoOutput(opts.output_video, fps=1.0 / (self.spec.span_s / max(1, self.spec.frames - 1)))
            self._outputs.append(self.video)
        if opts.display:
            from .preview import DisplayWindow

            self.display_window = DisplayWindow()
            self._outputs.append(self.display_window)

    def _release(self) -> None:
        if self.source is not None:
            self.source.close()
        for out in reversed(self._outputs):
            try:
                out.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", type(out).__name__, exc)
        self._outputs.clear()
        if self.backend is not None:
            self.backend.close()

    def _sync_source(self) -> SourceStats | None:
        if self.source is None:
            return None
        s = self.source.stats()
        self.telemetry.source(s.dropped, s.reconnects, getattr(s, "corrupt", 0))
        return s

    def _reset_stream(self) -> None:
        assert self.backend is not None
        self._window = WindowBuffer(self.spec, keep_tensors=not self.incremental)
        self._input_shape = (3, self.spec.size, self.spec.size)
        self._scratch = np.empty(self._input_shape, np.float32)
        self._encoder = IncrementalEncoder(self.backend, self.spec.frames, self.options.exact_incremental,
                                           self._stride) if self.incremental else None
        self._k0: int | None = None
        if getattr(self, "_streams_frames", False):
            self.backend.restart()  # type: ignore[attr-defined]  # the next sample starts a new sequence (START)

    def _loop(self) -> None:
        self._detector: EventDetector | None = None
        try:
            self._setup_loop()
            self._run_loop()
        except BaseException as exc:  # reported to the consumer by next_result()
            log.error("inference stopped: %s", exc)
            self._error = self._error or exc
            self._end_reason = ERROR
        finally:
            head_done = self._stop_head()
            if self._error is not None:
                self._end_reason = ERROR
            try:
                if self._detector is not None and head_done:  # a stuck head thread still owns the detector
                    for ev in self._detector.finish(reason=self._end_reason):
                        self._emit_event(ev)
            except Exception as exc:
                log.warning("closing the open event failed: %s", exc)
            self._sync_source()
            self._stream_state = ENDED
            self.telemetry.set_state(ENDED)
            self._hand_off()
            self._put(STOP, force=True)

    def _setup_loop(self) -> None:
        assert self.source is not None and self.backend is not None
        self._sampler = GridSampler(self.spec.frames, self.spec.span_s)
        self._stride = stride_steps(self.options.stride_s, self._sampler.period)
        self._smoother = Smoother(self.event_config)
        self._detector = EventDetector(self.labels, self.event_config)
        self._reset_stream()
        self._losses_seen = self.source.stats().failed_reads
        self._last_frame: Frame | None = None
        self._lost_at = 0.0
        self._next_poll = 0.0
        if self.options.overlap and self.backend.concurrent_roles:
            self._head_queue = queue.Queue(maxsize=1)  # one window waits while one runs: bounded, in order
            # whole clips: a window's frames are copied out of the ring (which the next frames overwrite) into
            # one of three buffers: one running, one queued, one being filled
            self._clip_pool = [np.empty((self.spec.frames, *self._input_shape), np.float32) for _ in range(3)] \
                if not self.incremental else []
            self._clip_next = 0
            self._head_thread = threading.Thread(target=self._head_loop, name="aknet-head", daemon=True)
            self._head_thread.start()

    def _run_loop(self) -> None:
        assert self.source is not None
        t_end = None if self.options.max_seconds is None else time.monotonic() + self.options.max_seconds
        while not self._stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                break
            if self._pending is not None and not self.source.buffered:
                self._hand_off()  # about to wait for the camera: deliver now, latency first
            try:
                frame = self.source.read(timeout=0.1)
            except EndOfStream:
                if not self._stop.is_set():
                    self._end_reason = END_OF_STREAM
                break
            if frame is None:
                self._poll_stream(None)
                continue
            if self._stream_state != LIVE or time.monotonic() >= self._next_poll:
                self._poll_stream(frame)
            self._last_frame = frame
            self._on_frame(frame)

    # -- the source's state: polled on the inference thread, so lines and events keep the order of the frames
    def _poll_stream(self, frame: Frame | None) -> None:
        """Notice a lost or restored live source (``frame``: the one about to be used; None: none came)."""
        assert self.source is not None
        self._next_poll = time.monotonic() + _POLL_S
        s = self._sync_source()
        assert s is not None
        if self._stream_state == LIVE and (s.failed_reads > self._losses_seen or (frame is None and not s.connected)):
            self._losses_seen = s.failed_reads
            self._stream_lost(s)
        if self._stream_state == RECONNECTING and frame is not None and s.connected:
            self._stream_restored(frame, s)

    def _stream_lost(self, s: SourceStats) -> None:
        now = time.monotonic()
        last = self._last_frame
        self._lost_at = last.capture_ts if last is not None else now
        self._stream_state = RECONNECTING
        self.telemetry.set_state(RECONNECTING, now)
        assert self.source is not None
        log.warning("%s: stream lost after frame %s; an open event ends there", self.source.uri,
                    "none" if last is None else last.index)
        info = {"timestamp": None if last is None else round(last.timestamp, 4),
                "frame": None if last is None else last.index, "reconnects": s.reconnects}
        self._sampler.reset()  # the window fills again from the first frame after the reconnect
        self._to_head(("lost", info))
        self._reset_stream()

    def _stream_restored(self, frame: Frame, s: SourceStats) -> None:
        outage = max(0.0, frame.capture_ts - self._lost_at)
        self._stream_state = LIVE
        self.telemetry.set_state(LIVE)
        assert self.source is not None
        log.info("%s: stream restored at frame %d after %.1f s without frames", self.source.uri, frame.index, outage)
        self._to_head(("restored", {"timestamp": round(frame.timestamp, 4), "frame": frame.index,
                                    "reconnects": s.reconnects, "outage_s": round(outage, 3)}))

    def _on_frame(self, frame: Frame) -> None:
        self.telemetry.frame(frame.capture_ts)
        samples, restarted = self._sampler.push(frame)
        if restarted:
            self._to_head(("restart",))
            self._reset_stream()
        if not samples:  # nothing to compute for this frame: no reason to hold a result back
            self._hand_off()
            return
        if self._k0 is None:
            self._k0 = samples[0].k
        T = self.spec.frames
        ready = [i for i, s in enumerate(samples) if s.k - self._k0 >= T - 1 and (s.k - self._k0 - T + 1) % self._stride == 0]
        last_ready = ready[-1] if ready else -1
        self.telemetry.skipped_windows += max(0, len(ready) - 1)
        prev: Sample | None = None
        for i, s in enumerate(samples):
            if self._streams_frames:  # one uint8 frame per sample to the server, which keeps the window
                self._window.push(s)
                self._hand_off()  # the consumer wakes while the request is in flight
                out = self.backend.step(s.frame.image, s.frame.color)  # type: ignore[union-attr]
                if i == last_ready and out is not None:  # None: the server's window is not full, or it is lost
                    self._to_head(("output", out, list(self._window.samples), frame))
                continue
            if prev is not None and prev.frame is s.frame:
                s.tensor = prev.tensor
            elif s.frame.tensor is not None:  # prepared on the capture thread
                s.tensor = s.frame.tensor
            else:  # straight into the window ring (whole clips) or a reused buffer the encoder reads at once
                dst = self._window.slot(self._input_shape) if self._encoder is None else self._scratch
                s.tensor = preprocess_frame(s.frame.image, self.spec, s.frame.color, out=dst)
            prev = s
            self._window.push(s)
            self._hand_off()  # the consumer wakes while the backend runs without the GIL
            if self._encoder is not None:
                self._encoder.push(s.tensor)
            if i == last_ready:
                self._infer(frame)

    def _infer(self, newest: Frame) -> None:
        assert self.backend is not None
        samples = list(self._window.samples)
        if self._encoder is not None:
            self._to_head(("window", self._encoder.window(), samples, newest))  # a fresh array: safe to hand over
        elif self._head_queue is None:
            self._to_head(("clip", self._window.clip(), samples, newest))  # inline: the ring view is stable
        else:
            buf = self._clip_pool[self._clip_next]
            self._clip_next = (self._clip_next + 1) % len(self._clip_pool)
            np.copyto(buf, self._window.clip())
            self._to_head(("clip", buf, samples, newest))

    # -- the head stage: on the head thread when overlapped, else inline on the inference thread
    def _to_head(self, item: tuple) -> None:
        if self._head_queue is None:
            self._head_step(item)
            return
        while True:  # bounded wait: a failed head thread stops the loop instead of blocking it
            try:
                self._head_queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not (self._head_thread and self._head_thread.is_alive()):
                    raise RuntimeError("the head thread stopped") from self._error
                if self._stop.is_set():
                    return  # closing: this window is not wanted any more

    def _head_step(self, item: tuple) -> None:
        if item[0] in ("restart", "lost"):  # close the open event, forget the smoothed history
            if item[0] == "lost":
                self._write_stream("lost", item[1])
            for ev in self._detector.finish(reason=SOURCE_LOST if item[0] == "lost" else STREAM_GAP):
                self._emit_event(ev)
            self._smoother.reset()
            return
        if item[0] == "restored":
            self._write_stream("restored", item[1])
            return
        if item[0] == "server":  # the Triton server went away (no results meanwhile) or came back
            _, state, info = item
            if self.jsonl is not None:
                try:
                    self.jsonl.write({"type": "server", "state": "lost" if state == "lost" else "restored", **info})
                except Exception as exc:
                    self._output_failed("jsonl", exc)
            if state == "lost":
                for ev in self._detector.finish(reason=SERVER_LOST):
                    self._emit_event(ev)
                self._smoother.reset()
            return
        kind, x, samples, newest = item
        assert self.backend is not None
        if kind == "output":  # scores computed by the server
            self._decide(x, samples, newest)
            return
        self._decide(self.backend.head(x) if kind == "window" else self.backend.infer_clip(x), samples, newest)

    def _server_state(self, state: str, info: dict[str, Any]) -> None:
        """The Triton client's callback (on the inference thread, inside a step): a line and the event's end."""
        log.warning("Triton server %s: %s", state, info)
        self._to_head(("server", state, info))

    def _head_loop(self) -> None:
        assert self._head_queue is not None
        try:
            while True:
                item = self._head_queue.get()
                if item is None:
                    return
                self._head_step(item)
                self._hand_off()  # the next window is being encoded meanwhile: deliver now
        except BaseException as exc:
            log.error("head stage stopped: %s", exc)
            self._error = self._error or exc  # the first failure is the cause
            self._stop.set()

    def _stop_head(self) -> bool:
        """Let the head thread finish the queued windows and join it, within one deadline.

        True when no head thread is left running (then the caller may close the last event).
        """
        thread = self._head_thread
        if thread is None or self._head_queue is None:
            return True
        deadline = time.monotonic() + _JOIN_S
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                self._head_queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("the head thread did not stop within %.0f s (a callback or output blocked?)", _JOIN_S)
            return False
        return True

    def _decide(self, out: ClipOutput, samples: list[Sample], newest: Frame) -> None:
        """Scores -> smoothed label, keypoints, events, outputs and callbacks for one window."""
        t_end, t_start = samples[-1].time, samples[0].time
        latency = time.monotonic() - newest.capture_ts
        self.telemetry.result(latency)
        raw = softmax(out.logits[0])
        smooth = self._smoother(raw)
        c = int(np.argmax(smooth))
        h, w = newest.image.shape[:2]
        kps = self._keypoints(out, t_start, h, w)
        snap_fps = self.telemetry.inference_rate()
        result = Result(t_end, t_start, self.labels[c], float(smooth[c]), top_k(raw, self.labels, self.options.top_k),
                        kps, latency * 1e3, snap_fps, newest.index, probs=smooth, stream=self.options.stream,
                        logits=out.logits[0])
        result.events = self._detector.update(smooth, t_end - self.spec.span_s / 2)
        if self.preview is not None or self.video is not None or self.display_window is not None or self.options.keep_images:
            self._draw(result, samples, (h, w))
        if self.jsonl is not None:
            try:
                self.jsonl.write_result(result)
            except Exception as exc:
                self._output_failed("jsonl", exc)
        for ev in result.events:
            self._emit_event(ev)
        if self.options.on_result is not None:
            self.options.on_result(result)
        with self._pending_lock:
            self._pending = result  # handed to the iterator's queue by _hand_off (see there)

    def _keypoints(self, out: ClipOutput, t_start: float, h: int, w: int) -> list[tuple[float, float, float, float]]:
        return window_keypoints(out, self.options.keypoints_top, self.spec.span_s, t_start, h, w)

    def _draw(self, result: Result, samples: list[Sample], size: tuple[int, int]) -> None:
        """The overlay on the window's frame nearest the keypoints, to each visual output (``size``: the (h, w)
        the keypoints were scaled to)."""
        import cv2

        from .overlay import draw_overlay

        kt = np.mean([p[0] for p in result.keypoints]) if result.keypoints else result.timestamp
        idx = int(np.argmin([abs(s.time - kt) for s in samples]))
        frame = samples[idx].frame
        image = frame.image if frame.color == "BGR" else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        if self.options.keep_images:
            newest = samples[-1].frame
            result.image = newest.image if newest.color == "BGR" else cv2.cvtColor(newest.image, cv2.COLOR_RGB2BGR)
        if self.preview is None and self.video is None and self.display_window is None:
            return
        kps = result.keypoints
        fh, fw = image.shape[:2]
        nh, nw = size
        if kps and (fh, fw) != (nh, nw):  # keypoints are in the newest frame's pixels; this one has another size
            kps = [(t, x * fw / nw, y * fh / nh, sc) for t, x, y, sc in kps]
        drawn = draw_overlay(image, result, keypoints=kps)
        for name, call in (("preview", "update"), ("video", "write"), ("display_window", "show")):
            out = getattr(self, name)
            if out is not None:
                try:
                    getattr(out, call)(drawn)
                except Exception as exc:
                    self._output_failed(name, exc)

    def _emit_event(self, ev: ActionEvent) -> None:
        ev.stream = self.options.stream
        self.events.append(ev)
        if self.jsonl is not None:
            try:
                self.jsonl.write_event(ev)
            except Exception as exc:
                self._output_failed("jsonl", exc)
        if self.options.on_event is not None:
            self.options.on_event(ev)

    def _write_stream(self, state: str, info: dict[str, Any]) -> None:
        if self.jsonl is not None:
            try:
                self.jsonl.write_stream(state, stream=self.options.stream, **info)
            except Exception as exc:
                self._output_failed("jsonl", exc)

    def _output_failed(self, name: str, exc: BaseException) -> None:
        """An output raised (its own failures are handled inside; this is the safety net): warn once, drop it."""
        log.warning("output %s failed (%s: %s); it is switched off, recognition goes on", name, type(exc).__name__, exc)
        setattr(self, name, None)  # still closed at release (it stays in self._outputs)

    def _hand_off(self) -> None:
        """Queue the pending result for the iterator.

        Deferred to just before the next backend call, or to before waiting for a
        frame: a consumer woken by the queue runs Python and takes the GIL, and
        on a small machine that stalled the next frame's preprocessing (about
        130 µs a window measured on 2 cores); during a backend call it costs
        nothing. With a live camera the loop waits for frames, so results go out
        at once; with frames backlogged they wait one preprocessing step.
        Callbacks (``on_result``) are not deferred.
        """
        if self._pending is None:
            return
        with self._pending_lock:  # the inference and head threads may both hand off: one at a time, in order
            item, self._pending = self._pending, None
            if item is not None:
                self._put(item)



__all__ = ["Recognizer", "RecognizerOptions", "Result", "window_keypoints"]
