"""Many cameras, one engine: N named streams recognised by one backend, batched per step.

Why: a robot carries several cameras and a site runs dozens; N single-camera
:class:`~aknet_edge.runtime.recognizer.Recognizer` objects cost N engine calls per
step and N copies of the model. Here every stream keeps its own time grid, window,
shift state, smoothing, events and outputs (a :class:`_Lane`), and they share one
backend: each step takes at most one new frame from every stream that has one, runs
one batched encoder call for all streams with a new grid sample (incremental mode;
:func:`~aknet_edge.runtime.window.encode_batch`, exact mode included) and one
batched call for all windows that are full (the clip head, or the whole-clip graph
on the stacked windows). Results equal N single-stream recognisers on the same
frames (``tests/test_multistream.py``).

Independence: sources are polled without waiting, so a stream that stalls,
reconnects or ends never holds the others back more than one step; frame rates may
differ. A stream that is lost reconnects on its own thread (its open event ends
with reason "source lost", JSON Lines get its "lost"/"restored" lines), one that
ends or fails for good ends alone; recognition stops when every stream has ended
(or on :meth:`MultiRecognizer.close` / ``max_seconds``).

Batching is opportunistic: a step holds whatever frames have arrived, so
unsynchronised live cameras batch less than backlogged ones (files, replays);
nothing waits to fill a batch, latency first.

Threading: each source captures on its own thread; one inference thread gathers
frames, samples, preprocesses and runs the batched encoder; with ``overlap`` on a
backend that allows it (ONNX Runtime), a head thread runs each step's batched head
(or whole-clip) call and everything after it -- smoothing, events, outputs and the
``on_result``/``on_event`` callbacks, one at a time and in order -- while the next
step is encoded (without it, all inline). Results carry ``stream``. Iteration and
:meth:`MultiRecognizer.next_result` read one bounded queue for all streams (oldest
dropped when the consumer lags).

Outputs: one JSON Lines target for all streams (every line carries ``"stream"``),
one video file per stream (:func:`stream_video_path`: ``out.mp4`` ->
``out-<stream>.mp4``), and the MJPEG preview / display window show a mosaic of every
stream's latest annotated frame (:mod:`.mosaic`).

Usage::

    with MultiRecognizer("pkg/", {"front": "rtsp://a/stream", "rear": "csi://0"}) as rec:
        for result in rec:
            print(result.stream, result.label, result.confidence)
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from aknet_edge import package as packaging
from aknet_edge.errors import ConfigError
from aknet_edge.preprocess import preprocess_frame

from .backends import Backend, ClipOutput, open_backend
from .events import ActionEvent, EventConfig, EventDetector, Smoother, softmax, top_k
from .recognizer import (_EVENT_FIELDS, END_OF_STREAM, ERROR, SERVER_LOST, SOURCE_LOST, STOPPED, STREAM_GAP,
                         RecognizerOptions, Result, window_keypoints)
from .result_queue import STOP, ResultQueue
from .sources import EndOfStream, Frame, Source, SourceStats, open_source
from .telemetry import ENDED, LIVE, RECONNECTING, Telemetry, TelemetrySnapshot
from .window import GridSampler, IncrementalEncoder, Sample, WindowBuffer, encode_batch, stride_steps

log = logging.getLogger(__name__)

_JOIN_S = 30.0
_POLL_S = 0.25  # how often a stream's source state is checked while its frames flow
_IDLE_S = 0.1  # longest wait for any stream's next frame (every source wakes the loop when one arrives)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SourceArg = Union[str, int, Source]


def split_source_arg(text: str, index: int) -> Tuple[str, str]:
    """``NAME=URI`` -> (NAME, URI); a bare URI -> (str(index), URI).

    A name is letters, digits, ``_ . -`` (up to 64, starting with a letter or digit), so a URI's own
    ``=`` (``synthetic://?seed=1``, ``rtsp://h/s?a=b``) is never taken for one.
    """
    name, sep, rest = text.partition("=")
    if sep and rest and _NAME.match(name) and not Path(text).exists():
        return name, rest
    return str(index), text


def check_stream_names(names: Sequence[str]) -> None:
    """Every stream name unique and well formed (they key the outputs)."""
    seen: Dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"stream name {name!r}: expected letters, digits, '_', '.' or '-' (up to 64, "
                              "starting with a letter or digit)")
        if name in seen:
            raise ConfigError(f"stream name {name!r} is given twice (sources {seen[name]} and {i}); give each "
                              "source its own name: NAME=URI")
        seen[name] = i


def check_stream_count(backend: Backend, n: int, package_dir: Any) -> None:
    """Refuse more streams than the package's engines were built to batch, with the command that fixes it."""
    limit = backend.max_streams
    if limit is not None and n > limit:
        raise ConfigError(f"{n} streams, but the package's {backend.name} engines in {package_dir} were built for at "
                          f"most {limit}; rebuild them for {n}: python -m aknet_edge.build --from {package_dir} "
                          f"--max-streams {n} (or run at most {limit} streams, or --backend onnxruntime)")


def stream_video_path(path: Union[str, Path], stream: str) -> Path:
    """``out.mp4`` and stream ``front`` -> ``out-front.mp4`` (one video file per stream)."""
    p = Path(path)
    return p.with_name(f"{p.stem}-{stream}{p.suffix}")


@dataclass
class _Job:
    lane: "_Lane"
    x: np.ndarray  # the window's features (T, C, h, w) or clip (T, 3, S, S)
    samples: List[Sample]
    newest: Frame


class _Lane:
    """One stream: its source, grid, window, encoder state, smoothing, events, telemetry and video output."""

    def __init__(self, rec: "MultiRecognizer", name: str, source: Source) -> None:
        self.rec = rec
        self.name = name
        self.source = source
        opts = rec.options
        self.telemetry = Telemetry(rate_horizon_s=max(5.0, 4.0 * (opts.stride_s or 0.0)))
        self.events: collections.deque[ActionEvent] = collections.deque(maxlen=1000)
        self.state = LIVE
        self.end_reason = STOPPED
        self.error: Optional[BaseException] = None
        self.video: Any = None
        self.drawn: Optional[np.ndarray] = None  # latest annotated frame (mosaic)
        spec = rec.spec
        self.sampler = GridSampler(spec.frames, spec.span_s)
        self.stride = stride_steps(opts.stride_s, self.sampler.period)
        self.smoother = Smoother(rec.event_config)
        self.detector = EventDetector(rec.labels, rec.event_config)
        self.input_shape = (3, spec.size, spec.size)
        self.scratch = np.empty(self.input_shape, np.float32)
        self.camera = rec.streams.index(name)  # backend "triton": Triton correlation id = sequence base + camera
        self.losses_seen = 0
        self.last_frame: Optional[Frame] = None
        self.lost_at = 0.0
        self.next_poll = 0.0
        self.reset()

    @property
    def ended(self) -> bool:
        return self.state == ENDED

    def reset(self) -> None:
        rec = self.rec
        self.window = WindowBuffer(rec.spec, keep_tensors=not rec.incremental)
        assert rec.backend is not None
        self.encoder = IncrementalEncoder(rec.backend, rec.spec.frames, rec.options.exact_incremental,
                                          self.stride) if rec.incremental else None
        self.k0: Optional[int] = None
        if rec.streams_frames:
            rec.backend.restart(self.camera)  # type: ignore[union-attr]  # the next sample starts its sequence

    # -- the source's state (as Recognizer: lost, restored, gaps)
    def sync_source(self) -> SourceStats:
        s = self.source.stats()
        self.telemetry.source(s.dropped, s.reconnects, getattr(s, "corrupt", 0))
        return s

    def poll(self, frame: Optional[Frame]) -> None:
        self.next_poll = time.monotonic() + _POLL_S
        s = self.sync_source()
        if self.state == LIVE and (s.failed_reads > self.losses_seen or (frame is None and not s.connected)):
            self.losses_seen = s.failed_reads
            self._lost(s)
        if self.state == RECONNECTING and frame is not None and s.connected:
            self._restored(frame, s)

    def _lost(self, s: SourceStats) -> None:
        now = time.monotonic()
        last = self.last_frame
        self.lost_at = last.capture_ts if last is not None else now
        self.state = RECONNECTING
        self.telemetry.set_state(RECONNECTING, now)
        log.warning("stream %s (%s): lost after frame %s; an open event ends there; the other streams go on",
                    self.name, self.source.uri, "none" if last is None else last.index)
        info = {"timestamp": None if last is None else round(last.timestamp, 4),
                "frame": None if last is None else last.index, "reconnects": s.reconnects}
        self.sampler.reset()
        self.rec._to_head(functools.partial(self._head_lost, info))
        self.reset()

    def _head_lost(self, info: Dict[str, Any]) -> None:
        self.rec._write_stream(self, "lost", info)
        self.close_events(SOURCE_LOST)

    def _restored(self, frame: Frame, s: SourceStats) -> None:
        outage = max(0.0, frame.capture_ts - self.lost_at)
        self.state = LIVE
        self.telemetry.set_state(LIVE)
        log.info("stream %s (%s): restored at frame %d after %.1f s without frames", self.name, self.source.uri,
                 frame.index, outage)
        self.rec._to_head(functools.partial(
            self.rec._write_stream, self, "restored", {"timestamp": round(frame.timestamp, 4), "frame": frame.index,
                                                       "reconnects": s.reconnects, "outage_s": round(outage, 3)}))

    def close_events(self, reason: str) -> None:
        """Close the open event and forget the smoothed history (the head stage: in order with the windows)."""
        for ev in self.detector.finish(reason=reason):
            self.rec._emit_event(self, ev)
        self.smoother.reset()

    def end(self, reason: str, error: Optional[BaseException] = None) -> None:
        """This stream is over (end of stream, a source failed for good, stopping); the others go on."""
        if self.ended:
            return
        self.end_reason, self.error = reason, error
        try:
            self.rec._to_head(functools.partial(self.close_events, reason))
        finally:
            self.sync_source()
            self.state = ENDED
            self.telemetry.set_state(ENDED)

    # -- one step: this stream's new frame -> its new samples, each prepared when its round comes
    def take(self, frame: Frame) -> List[Tuple[Sample, bool]]:
        """``frame`` on the grid: the newly resolved samples, each with whether a window ends there."""
        self.telemetry.frame(frame.capture_ts)
        samples, restarted = self.sampler.push(frame)
        if restarted:
            self.rec._to_head(functools.partial(self.close_events, STREAM_GAP))
            self.reset()
        if not samples:
            return []
        if self.k0 is None:
            self.k0 = samples[0].k
        t = self.rec.spec.frames
        ready = [i for i, s in enumerate(samples)
                 if s.k - self.k0 >= t - 1 and (s.k - self.k0 - t + 1) % self.stride == 0]
        self.telemetry.skipped_windows += max(0, len(ready) - 1)
        last = ready[-1] if ready else -1
        return [(s, i == last) for i, s in enumerate(samples)]

    def prepare(self, s: Sample, prev: Optional[Sample]) -> np.ndarray:
        if prev is not None and prev.frame is s.frame:
            s.tensor = prev.tensor
        elif s.frame.tensor is not None:
            s.tensor = s.frame.tensor
        else:
            dst = self.window.slot(self.input_shape) if self.encoder is None else self.scratch
            s.tensor = preprocess_frame(s.frame.image, self.rec.spec, s.frame.color, out=dst)
        self.window.push(s)
        assert s.tensor is not None
        return s.tensor

    # -- a window's scores -> result, events, outputs
    def decide(self, out: ClipOutput, samples: List[Sample], newest: Frame) -> Result:
        rec = self.rec
        t_end, t_start = samples[-1].time, samples[0].time
        latency = time.monotonic() - newest.capture_ts
        self.telemetry.result(latency)
        rec.telemetry.result(latency)
        raw = softmax(out.logits[0])
        smooth = self.smoother(raw)
        c = int(np.argmax(smooth))
        h, w = newest.image.shape[:2]
        kps = window_keypoints(out, rec.options.keypoints_top, rec.spec.span_s, t_start, h, w)
        result = Result(t_end, t_start, rec.labels[c], float(smooth[c]), top_k(raw, rec.labels, rec.options.top_k),
                        kps, latency * 1e3, self.telemetry.inference_rate(), newest.index, probs=smooth,
                        stream=self.name, logits=out.logits[0])
        result.events = self.detector.update(smooth, t_end - rec.spec.span_s / 2)
        if rec._visual or rec.options.keep_images:
            self.draw(result, samples, (h, w))
        if rec.jsonl is not None:
            try:
                rec.jsonl.write_result(result)
            except Exception as exc:
                rec._output_failed("jsonl", exc)
        for ev in result.events:
            rec._emit_event(self, ev)
        if rec.options.on_result is not None:
            rec.options.on_result(result)
        return result

    def draw(self, result: Result, samples: List[Sample], size: Tuple[int, int]) -> None:
        import cv2

        kt = np.mean([p[0] for p in result.keypoints]) if result.keypoints else result.timestamp
        frame = samples[int(np.argmin([abs(s.time - kt) for s in samples]))].frame
        image = frame.image if frame.color == "BGR" else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        if self.rec.options.keep_images:
            newest = samples[-1].frame
            result.image = newest.image if newest.color == "BGR" else cv2.cvtColor(newest.image, cv2.COLOR_RGB2BGR)
        if not self.rec._visual:
            return
        from .overlay import draw_overlay

        kps = result.keypoints
        fh, fw = image.shape[:2]
        nh, nw = size
        if kps and (fh, fw) != (nh, nw):
            kps = [(t, x * fw / nw, y * fh / nh, sc) for t, x, y, sc in kps]
        drawn = draw_overlay(image, result, keypoints=kps)
        if self.video is not None:
            try:
                self.video.write(drawn)
            except Exception as exc:
                log.warning("stream %s: video output failed (%s); it is switched off, recognition goes on",
                            self.name, exc)
                self.video = None
        self.drawn = drawn
        self.rec._show(self)


class MultiRecognizer(ResultQueue):
    """Recognise actions in several named live sources with one model package and one backend.

    ``sources``: a mapping name -> source, or a sequence of sources (named "0", "1", ...) or of
    ``(name, source)`` pairs; a source is a URI for :func:`~aknet_edge.runtime.sources.open_source`
    (``source_options`` apply to all) or an unopened :class:`~aknet_edge.runtime.sources.Source`.
    Other keyword arguments are :class:`~aknet_edge.runtime.recognizer.RecognizerOptions` fields
    (``preprocess_on_capture`` and ``stream`` do not apply: frames are prepared on the inference
    thread, and every stream has its name). See the module docstring for batching, independence,
    threading and outputs.
    """

    def __init__(self, package_dir: Union[str, Path],
                 sources: Union[Mapping[str, SourceArg], Sequence[Union[SourceArg, Tuple[str, SourceArg]]]],
                 **options: Any) -> None:
        names = {f.name for f in fields(RecognizerOptions)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"MultiRecognizer: unknown options {unknown}; known: {sorted(names)}")
        self.options = opts = RecognizerOptions(**options)
        pairs = self._pairs(sources)
        if not pairs:
            raise ConfigError("MultiRecognizer: expected at least one source")
        self.streams: List[str] = [n for n, _ in pairs]
        check_stream_names(self.streams)
        self._source_args = dict(pairs)
        self.package_dir = package_dir
        self.package = packaging.load(package_dir)
        self.spec = self.package.clip_spec
        self.labels = self.package.labels
        self.event_config = EventConfig(**{f: getattr(opts, f) for f in _EVENT_FIELDS})
        self.backend: Optional[Backend] = None
        self.incremental = False
        self.streams_frames = False  # backend "triton": each stream a sequence on the server (aknet_stream)
        self.lanes: Dict[str, _Lane] = {}
        self.telemetry = Telemetry(rate_horizon_s=max(5.0, 4.0 * (opts.stride_s or 0.0)))  # every stream
        self.results_dropped = 0
        self.steps = 0  # inference steps (each: at most one encoder call and one head call per round)
        self.jsonl: Any = None
        self.preview: Any = None
        self.display_window: Any = None
        self._visual = False
        self._outputs: List[Any] = []
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

    @staticmethod
    def _pairs(sources: Any) -> List[Tuple[str, SourceArg]]:
        if isinstance(sources, Mapping):
            return [(str(k), v) for k, v in sources.items()]
        if isinstance(sources, (str, int, Source)):
            sources = [sources]
        out = []
        for i, s in enumerate(sources):
            if isinstance(s, tuple) and len(s) == 2:
                out.append((str(s[0]), s[1]))
            else:
                out.append((str(i), s))
        return out

    # -- lifecycle
    def start(self) -> "MultiRecognizer":
        """Open backend, every source and the outputs, then start the inference thread.

        A source that fails to open is an error here (the others are released); once running, a lost
        source reconnects on its own while the others go on.
        """
        with self._start_lock:
            if self._thread is None:
                self._start()
        return self

    def _start(self) -> None:
        opts = self.options
        if opts.stride_s is not None and opts.stride_s <= 0:
            raise ConfigError(f"stride_s={opts.stride_s}: expected > 0 seconds (or None: one sample period)")
        try:
            extra: Dict[str, Any] = {"providers": opts.providers} if opts.providers else {}
            # one backend serves every camera, so its batched calls get every core by default (a single camera's
            # Recognizer leaves one to capture); at N = 8 on 2 cores: 282 -> 374 windows/s (bench/multistream.py)
            extra["threads"] = opts.threads or (os.cpu_count() or 2)
            if opts.backend == "triton":
                extra = dict(url=opts.triton_url or "", sequence_base=opts.triton_sequence_base,
                             on_state=self._server_state)
            self.backend = open_backend(self.package, opts.backend, opts.precision, **extra)
            check_stream_count(self.backend, len(self.streams), self.package_dir)
            self.streams_frames = getattr(self.backend, "streams_frames", False) and opts.incremental is not False
            self.incremental = self.backend.has_split if opts.incremental is None else bool(opts.incremental)
            if self.incremental and not self.backend.has_split:
                raise ConfigError(f"incremental mode needs the split graphs, which {self.package.root} lacks for "
                                  f"{self.backend.name} {self.backend.precision}; use incremental=False")
            self._open_outputs()
            for name in self.streams:
                arg = self._source_args[name]
                src = arg if isinstance(arg, Source) else open_source(arg, start=False, **opts.source_options)
                src.wake = self._wake
                self.lanes[name] = _Lane(self, name, src)
                self._open_video(self.lanes[name])
            for lane in self.lanes.values():
                try:
                    lane.source.start()
                except Exception as exc:
                    if _rebuildable(exc):  # name the stream in the one error line
                        raise type(exc)(f"stream {lane.name}: {exc}") from exc
                    raise
                lane.losses_seen = lane.source.stats().failed_reads
            if self.jsonl is not None:
                self.jsonl.open()
        except BaseException:
            self._release()
            raise
        assert self.backend is not None
        log.info("recognising %d streams (%s) with %s %s (%s, %s)", len(self.streams), ", ".join(self.streams),
                 self.backend.name, self.backend.precision, "incremental" if self.incremental else "whole clips",
                 "parent-row forking" if self.backend.parent_rows else "full rows" if self.incremental else "")
        self._thread = threading.Thread(target=self._loop, name="aknet-multi-inference", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop recognition and release sources, outputs and the backend (idempotent)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            self._stop.set()  # from a callback: the with-block releases
            self._wake.set()
            return
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                log.warning("the inference thread did not stop within %.0f s; releasing anyway", _JOIN_S)
        self._release()

    def __enter__(self) -> "MultiRecognizer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- consuming
    def stats(self) -> Dict[str, TelemetrySnapshot]:
        """Each stream's telemetry now, by name."""
        out = {}
        for name, lane in self.lanes.items():
            lane.sync_source()
            out[name] = lane.telemetry.snapshot()
        return out

    def total_stats(self) -> TelemetrySnapshot:
        """All streams together: frames, results, rates and counters summed; latency percentiles over every
        stream's windows; the state "live" while any stream is, else "reconnecting" while any is."""
        per = self.stats()
        t = self.telemetry
        t.source(sum(s.dropped for s in per.values()), sum(s.reconnects for s in per.values()),
                 sum(s.corrupt for s in per.values()))
        t.frames = sum(s.frames for s in per.values())
        t.skipped_windows = sum(s.skipped_windows for s in per.values())
        states = {s.source_state for s in per.values()}
        t.set_state(LIVE if LIVE in states or not per else RECONNECTING if RECONNECTING in states else ENDED)
        snap = t.snapshot()
        snap.capture_fps = sum(s.capture_fps for s in per.values())
        snap.outages = sum(s.outages for s in per.values())
        snap.outage_s = sum(s.outage_s for s in per.values())
        if self.streams_frames:
            snap.server = self.backend.stats().to_dict()  # type: ignore[union-attr]
        return snap

    def events(self, stream: Optional[str] = None) -> List[ActionEvent]:
        """Ended and started events kept (the last 1000 a stream), of one stream or of all."""
        lanes = [self.lanes[stream]] if stream is not None else list(self.lanes.values())
        return [ev for lane in lanes for ev in lane.events]

    def source_state(self, stream: str) -> str:
        return self.lanes[stream].telemetry.state

    # -- outputs
    def _open_outputs(self) -> None:
        opts = self.options
        if opts.jsonl is not None:
            from .jsonl import JsonlWriter

            self.jsonl = JsonlWriter(opts.jsonl, defer=True)
            self._outputs.append(self.jsonl)
        if opts.preview_port is not None:
            from .preview import MjpegServer

            self.preview = MjpegServer(opts.preview_port, opts.preview_host)
            self._outputs.append(self.preview)
        if opts.display:
            from .preview import DisplayWindow

            self.display_window = DisplayWindow()
            self._outputs.append(self.display_window)
        self._visual = bool(self.preview or self.display_window or opts.output_video)

    def _open_video(self, lane: _Lane) -> None:
        if not self.options.output_video:
            return
        from .video_out import VideoOutput

        lane.video = VideoOutput(stream_video_path(self.options.output_video, lane.name),
                                 fps=1.0 / (self.spec.span_s / max(1, self.spec.frames - 1)))
        self._outputs.append(lane.video)

    def _show(self, lane: _Lane) -> None:
        """A stream's new annotated frame: the preview and the display show the mosaic of every stream.

        (The preview's per-stream API, once it has one: ``publish_frame(lane.name, lane.drawn)``.)
        """
        if self.preview is None and self.display_window is None:
            return
        from .mosaic import mosaic

        image = mosaic({n: ln.drawn for n, ln in self.lanes.items()}, self.streams)
        for name, call in (("preview", "update"), ("display_window", "show")):
            out = getattr(self, name)
            if out is not None:
                try:
                    getattr(out, call)(image)
                except Exception as exc:
                    self._output_failed(name, exc)

    def _emit_event(self, lane: _Lane, ev: ActionEvent) -> None:
        ev.stream = lane.name
        lane.events.append(ev)
        if self.jsonl is not None:
            try:
                self.jsonl.write_event(ev)
            except Exception as exc:
                self._output_failed("jsonl", exc)
        if self.options.on_event is not None:
            self.options.on_event(ev)

    def _server_state(self, state: str, info: Dict[str, Any]) -> None:
        """The Triton client's callback (inference thread): a JSON line for all streams; a lost server ends every
        stream's open event (no results until it is back)."""
        if self.jsonl is not None:
            try:
                self.jsonl.write({"type": "server", "state": "lost" if state == "lost" else "restored", **info})
            except Exception as exc:
                self._output_failed("jsonl", exc)
        if state == "lost":
            for lane in self.lanes.values():
                lane.close_events(SERVER_LOST)

    def _write_stream(self, lane: _Lane, state: str, info: Dict[str, Any]) -> None:
        if self.jsonl is not None:
            try:
                self.jsonl.write_stream(state, stream=lane.name, **info)
            except Exception as exc:
                self._output_failed("jsonl", exc)

    def _output_failed(self, name: str, exc: BaseException) -> None:
        log.warning("output %s failed (%s: %s); it is switched off, recognition goes on", name, type(exc).__name__, exc)
        setattr(self, name, None)

    def _release(self) -> None:
        for lane in self.lanes.values():
            try:
                lane.source.close()
            except Exception as exc:
                log.warning("closing stream %s failed: %s", lane.name, exc)
        for arg in self._source_args.values():  # sources handed in but never reached (a start that failed)
            if isinstance(arg, Source) and all(lane.source is not arg for lane in self.lanes.values()):
                arg.close()
        for out in reversed(self._outputs):
            try:
                out.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", type(out).__name__, exc)
        self._outputs.clear()
        if self.backend is not None:
            self.backend.close()

    # -- the inference thread
    def _loop(self) -> None:
        reason = STOPPED
        try:
            assert self.backend is not None
            if self.options.overlap and self.backend.concurrent_roles:
                self._head_queue = queue.Queue(maxsize=1)  # one step waits while one runs: bounded, in order
                self._head_thread = threading.Thread(target=self._head_loop, name="aknet-multi-head", daemon=True)
                self._head_thread.start()
            t_end = None if self.options.max_seconds is None else time.monotonic() + self.options.max_seconds
            while not self._stop.is_set():
                if t_end is not None and time.monotonic() >= t_end:
                    break
                self._wake.clear()  # before reading: a frame arriving after this wakes the wait below
                got = self._gather()
                if all(lane.ended for lane in self.lanes.values()):
                    break
                if not got:
                    self._wake.wait(_IDLE_S if t_end is None else max(0.0, min(_IDLE_S, t_end - time.monotonic())))
                    continue
                self._step(got)
        except BaseException as exc:
            log.error("inference stopped: %s", exc)
            self._error = self._error or exc
            reason = ERROR
        finally:
            head_done = self._stop_head()
            if self._error is not None:
                reason = ERROR
            for lane in self.lanes.values():
                if not head_done:  # a stuck head thread still owns the detectors
                    break
                try:
                    lane.end(reason)
                except Exception as exc:
                    log.warning("stream %s: closing the open event failed: %s", lane.name, exc)
            self._put(STOP, force=True)

    def _gather(self) -> List[Tuple[_Lane, Frame]]:
        """At most one new frame from every stream that has one, without waiting for any."""
        got = []
        now = time.monotonic()
        for lane in self.lanes.values():
            if lane.ended:
                continue
            try:
                frame = lane.source.read(timeout=0)
            except EndOfStream:
                log.info("stream %s: end of stream; the other streams go on", lane.name)
                lane.end(END_OF_STREAM)
                continue
            except Exception as exc:  # failed for good (e.g. out of reconnect attempts): this stream only
                log.error("stream %s: %s; the other streams go on", lane.name, exc)
                lane.end(ERROR, exc)
                continue
            if frame is None:
                if now >= lane.next_poll or lane.state != LIVE:
                    lane.poll(None)
                continue
            if lane.state != LIVE or now >= lane.next_poll:
                lane.poll(frame)
            lane.last_frame = frame
            got.append((lane, frame))
        return got

    def _step(self, got: List[Tuple[_Lane, Frame]]) -> None:
        """One step: the new samples of every stream in rounds (one encoder call a round), then one call for every
        window that became full."""
        assert self.backend is not None
        self.steps += 1
        plans = [(lane, frame, lane.take(frame)) for lane, frame in got]
        jobs: List[_Job] = []
        rounds = max((len(p) for _, _, p in plans), default=0)
        prev: Dict[str, Optional[Sample]] = {lane.name: None for lane, _, _ in plans}
        for r in range(rounds):
            if self.streams_frames:  # every stream's sample as one uint8 frame, sent together (the server batches)
                sent = [(lane, frame, plan[r]) for lane, frame, plan in plans if r < len(plan)]
                for lane, _, (s, _) in sent:
                    lane.window.push(s)
                answers = self.backend.stream.step_many(  # type: ignore[attr-defined]
                    [(lane.camera, s.frame.image, s.frame.color) for lane, _, (s, _) in sent])
                for (lane, frame, (_, is_ready)), res in zip(sent, answers):
                    if is_ready and res is not None and res.output is not None:  # None: server lost / window filling
                        self._put(lane.decide(res.output, list(lane.window.samples), frame))
                continue
            encoders, tensors, ready = [], [], []
            for lane, frame, plan in plans:
                if r >= len(plan):
                    continue
                s, is_ready = plan[r]
                tensor = lane.prepare(s, prev[lane.name])
                prev[lane.name] = s
                if lane.encoder is not None:
                    encoders.append(lane.encoder)
                    tensors.append(tensor)
                if is_ready:
                    ready.append((lane, frame, r < len(plan) - 1))
            if encoders:
                encode_batch(encoders, tensors)
            for lane, frame, more in ready:
                if lane.encoder is not None:
                    x = lane.encoder.window()
                else:
                    x = lane.window.clip()
                    x = x.copy() if more else x  # later samples of this step overwrite the ring
                jobs.append(_Job(lane, x, list(lane.window.samples), frame))
        if not jobs:
            return
        batch = np.stack([j.x for j in jobs])  # a copy: the windows' rings may move on while the head runs
        for j in jobs:
            j.x = batch[:0]  # drop the reference to the ring or features
        self._to_head(functools.partial(self._head, batch, jobs))

    # -- the head stage: on the head thread when overlapped (ONNX Runtime), else inline, always in order
    def _head(self, batch: np.ndarray, jobs: List[_Job]) -> None:
        """One call for every window that became full in a step, then each window's result, events, outputs."""
        assert self.backend is not None
        out = self.backend.head(batch) if self.incremental else self.backend.infer_clip(batch)
        for i, job in enumerate(jobs):
            one = ClipOutput(out.logits[i:i + 1], out.keypoints[i:i + 1], out.keypoint_scores[i:i + 1])
            self._put(job.lane.decide(one, job.samples, job.newest))

    def _to_head(self, fn: Any) -> None:
        if self._head_queue is None or threading.current_thread() is self._head_thread:
            fn()
            return
        while True:  # bounded waits: a failed head thread stops the loop instead of blocking it
            try:
                self._head_queue.put(fn, timeout=0.1)
                return
            except queue.Full:
                if not (self._head_thread and self._head_thread.is_alive()):
                    raise RuntimeError("the head thread stopped") from self._error
                if self._stop.is_set():
                    return

    def _head_loop(self) -> None:
        assert self._head_queue is not None
        try:
            while True:
                fn = self._head_queue.get()
                if fn is None:
                    return
                fn()
        except BaseException as exc:
            log.error("head stage stopped: %s", exc)
            self._error = self._error or exc
            self._stop.set()
            self._wake.set()

    def _stop_head(self) -> bool:
        """Let the head thread finish what is queued and join it; True when none is left running (then what
        follows runs inline)."""
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
            log.warning("the head thread did not stop within %.0f s (a callback or output blocked?)", _JOIN_S)
            return False
        self._head_queue = None
        return True



def _rebuildable(exc: BaseException) -> bool:
    """Whether ``type(exc)(message)`` makes the same kind of error (to name the stream in it)."""
    try:
        type(exc)("probe")
    except Exception:
        return False
    return True


__all__ = ["MultiRecognizer", "check_stream_count", "check_stream_names", "split_source_arg", "stream_video_path"]
