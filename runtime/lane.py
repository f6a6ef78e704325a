"""One stream's recognition state: a lane of the pipeline.

Why a lane: everything that belongs to one camera (its source, time grid,
window and encoder state, smoothing, events, outage state and telemetry)
lives here, once, whether the pipeline serves one camera or forty. The
pipeline (:mod:`.pipeline`) owns what lanes share: the backend, the threads,
the sinks and the result queue. A lane never calls the backend itself; it
says which samples are new and which windows are full, and turns a window's
scores into a :class:`Result`.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from aknet_edge.preprocess import preprocess_frame

from . import records
from .records import END_OF_STREAM, ERROR, SERVER_LOST, SOURCE_LOST, STOPPED, STREAM_GAP
from .backends import ClipOutput
from .events import ActionEvent, EventConfig, EventDetector, Smoother, softmax, top_k
from .sources import Frame, Source, SourceStats
from .telemetry import ENDED, LIVE, RECONNECTING, Telemetry
from .views import View
from .window import GridSampler, IncrementalEncoder, Sample, WindowBuffer, stride_steps

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

POLL_S = 0.25  # while frames flow, how often a lane checks its source's state
_TXY = np.array([0, 2, 1])  # keypoint columns (t, y, x) -> (t, x, y)


@dataclass
class Result:
    """One window's decision. Times in seconds on the frames' clock (media time when known)."""

    timestamp: float  # time of the window's newest sample
    window_start: float
    label: str  # smoothed top class
    confidence: float  # its smoothed probability
    top_k: List[Tuple[str, float]]  # raw (unsmoothed) window scores
    keypoints: List[Tuple[float, float, float, float]]  # (time_s, x_px, y_px, score), best first; [] without
    # keypoints (TSM)
    # the newest frame reaching the source's buffer -> this window's scores; the delay before that (exposure,
    # camera encoder, network, decoder) is not in it, nor the outputs' time after it
    latency_ms: float
    fps: float  # results per second
    frame_index: int
    events: List[ActionEvent] = field(default_factory=list)
    probs: Optional[np.ndarray] = field(default=None, repr=False)  # smoothed probabilities
    image: Optional[np.ndarray] = field(default=None, repr=False)  # the newest window frame (BGR)
    stream: Optional[str] = None  # the camera's name where the recogniser names its streams
    logits: Optional[np.ndarray] = field(default=None, repr=False)  # the window's raw logits (classes,)
    # per-person recognition: the region's name or the track's id, and the crop's box (x, y, w, h) in the
    # camera frame's pixels (keypoints and ``image`` are in the crop's pixels: add box[:2] for the camera's)
    roi: Optional[str] = None
    track: Optional[str] = None
    box: Optional[Tuple[int, int, int, int]] = None

    @property
    def lane(self) -> Optional[str]:
        """The lane's name for display: the camera, and its region (``cam/roi``) or track (``cam#id``)."""
        return lane_name(self.stream, self.roi, self.track)

    def to_json(self) -> Dict[str, Any]:
        """The JSON Lines "result" record (:mod:`.records` defines every line type)."""
        return records.result_record(self)


def lane_name(stream: Optional[str], roi: Optional[str], track: Optional[str]) -> Optional[str]:
    """``cam``, ``cam/roi`` or ``cam#track`` (None: one unnamed whole-frame camera)."""
    if roi is None and track is None:
        return stream
    cam = stream if stream is not None else "0"
    return f"{cam}/{roi}" if roi is not None else f"{cam}#{track}"


def window_keypoints(out: ClipOutput, k: int, span_s: float, t_start: float, h: int,
                     w: int) -> List[Tuple[float, float, float, float]]:
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


class Lane:
    """One stream: source, grid, window, encoder state, smoothing, events, outage state and telemetry.

    Methods named ``head_*`` run on the pipeline's head stage (in the order of the frames); the
    others on the inference thread.
    """

    def __init__(self, pipe: "Pipeline", name: Optional[str], source: Source, camera: int,
                 view: Optional[View] = None) -> None:
        self.pipe = pipe
        self.name = name  # None: a single unnamed camera (its lines carry no "stream")
        self.source = source
        self.view = view  # None: the whole frame; else the region or track this lane crops (runtime/views.py)
        self.roi = view.name if view is not None and view.kind == "roi" else None
        self.track = view.name if view is not None and view.kind == "track" else None
        self.camera = camera  # backend "triton": the correlation id is the sequence base + camera
        opts = pipe.options
        spec = pipe.spec
        self.telemetry = Telemetry(rate_horizon_s=max(5.0, 4.0 * (opts.stride_s or 0.0)))
        self.events: "collections.deque[ActionEvent]" = collections.deque(maxlen=1000)
        self.state = LIVE
        self.end_reason = STOPPED
        self.error: Optional[BaseException] = None
        self.sampler = GridSampler(spec.frames, spec.span_s)
        self.stride = stride_steps(opts.stride_s, self.sampler.period)
        # the camera's own event settings where it has them (RecognizerOptions.stream_events), else the pipeline's
        self.event_config = pipe.stream_event_configs.get(str(name), pipe.event_config)
        self.smoother = Smoother(self.event_config)
        self.detector = EventDetector(pipe.labels, self.event_config)
        self.input_shape = (3, spec.size, spec.size)
        self.scratch = np.empty(self.input_shape, np.float32)
        self.losses_seen = 0
        self.drops_seen = 0  # frames the source dropped when this lane last looked (warned once when they grow)
        self.last_frame: Optional[Frame] = None
        self.lost_at = 0.0
        self.next_poll = 0.0
        self.window: WindowBuffer
        self.encoder: Optional[IncrementalEncoder] = None
        self.k0: Optional[int] = None

    @property
    def ended(self) -> bool:
        return self.state == ENDED

    def started(self) -> None:
        """The source runs: count from its state now, and start the first window."""
        self.losses_seen = self.source.stats().failed_reads
        self.reset()

    def reset(self) -> None:
        """A fresh window and encoder state (at start, after an outage or a gap in the frames)."""
        pipe = self.pipe
        self.window = WindowBuffer(pipe.spec, keep_tensors=not pipe.incremental)
        assert pipe.backend is not None
        self.encoder = IncrementalEncoder(pipe.backend, pipe.spec.frames, pipe.options.exact_incremental,
                                          self.stride) if pipe.incremental else None
        self.k0 = None
        if pipe.streams_frames:
            pipe.backend.restart(self.camera)  # the next sample starts this camera's sequence on the server

    # -- the source's state: polled on the inference thread, so lines and events keep the order of the frames
    def sync_source(self) -> SourceStats:
        s = self.source.stats()
        self.telemetry.source(s.dropped, s.reconnects, s.corrupt)
        if s.dropped > self.drops_seen:  # windows are lost: say so once (the counts are in the stats)
            self.drops_seen = s.dropped
            if not self.pipe.warned_drops:
                self.pipe.warned_drops = True
                log.warning("%s: recognition is slower than the source, which dropped %d frames so far (the "
                            "newest are kept; stats: dropped, skipped_windows); read it like a file "
                            "(source option block=1) to process every frame", self.label, s.dropped)
        return s

    def poll(self, frame: Optional[Frame]) -> None:
        """Notice a lost or restored live source (``frame``: the one about to be used; None: none came)."""
        self.next_poll = time.monotonic() + POLL_S
        s = self.sync_source()
        if self.state == LIVE and (s.failed_reads > self.losses_seen or (frame is None and not s.connected)):
            if frame is not None and s.lost_at is not None and frame.capture_ts < s.lost_at:
                # the buffer still holds frames captured before the loss: they belong to the stream that was lost,
                # so they are used first, and the loss is noticed at the first frame after it (or when none comes)
                self.next_poll = 0.0
                return
            self.losses_seen = s.failed_reads
            self._lost(s)
        if self.state == RECONNECTING and frame is not None and s.connected:
            self._restored(frame, s)

    def key(self, camera_index: int) -> str:
        """The lane's key in the pipeline's lanes and stats: ``cam``, ``cam/roi`` or ``cam#track``."""
        return lane_name(self.name if self.name is not None else str(camera_index), self.roi, self.track) or ""

    @property
    def label(self) -> str:
        """How logs name this lane."""
        what = "" if self.view is None else f" {self.view.kind} {self.view.name}"
        return (self.source.uri if self.name is None else f"stream {self.name} ({self.source.uri})") + what

    def lost_at_start(self, error: BaseException) -> None:
        """The source did not open at start and retries in the background (``Source.start(retry=True)``): it is
        reported lost, like an outage ("reconnecting" in telemetry, a ``stream`` lost line), until its first frame
        restores it."""
        self._lost(self.sync_source(), f"did not open at start ({error}); retrying with its reconnect policy")

    def _lost(self, s: SourceStats, why: Optional[str] = None) -> None:
        now = time.monotonic()
        last = self.last_frame
        self.lost_at = last.capture_ts if last is not None else now
        self.state = RECONNECTING
        self.telemetry.set_state(RECONNECTING, now)
        others = "; the other streams go on" if self.pipe.several else ""
        if why is not None:
            log.warning("%s: %s%s", self.label, why, others)
        else:
            log.warning("%s: lost after frame %s; an open event ends there%s", self.label,
                        "none" if last is None else last.index, others)
        info = {**self._view_info(), "timestamp": None if last is None else round(last.timestamp, 4),
                "frame": None if last is None else last.index, "reconnects": s.reconnects}
        self.sampler.reset()  # the window fills again from the first frame after the reconnect
        self.pipe.to_head(self.head_stream_lost, info)
        self.reset()

    def _restored(self, frame: Frame, s: SourceStats) -> None:
        outage = max(0.0, frame.capture_ts - self.lost_at)
        self.state = LIVE
        self.telemetry.set_state(LIVE)
        log.info("%s: restored at frame %d after %.1f s without frames", self.label, frame.index, outage)
        self.pipe.to_head(self.pipe.sinks.stream_state, self.name, "restored",
                          {**self._view_info(), "timestamp": round(frame.timestamp, 4), "frame": frame.index,
                           "reconnects": s.reconnects, "outage_s": round(outage, 3)})

    def _view_info(self) -> Dict[str, Any]:
        """A region's or track's lane names its view in its stream lines (each lane reports its own outage)."""
        return {k: v for k, v in (("roi", self.roi), ("track", self.track)) if v is not None}

    def end(self, reason: str, error: Optional[BaseException] = None) -> None:
        """This stream is over (end of stream, a source failed for good, stopping); the others go on."""
        if self.ended:
            return
        self.end_reason, self.error = reason, error
        try:
            self.pipe.to_head(self.head_close_events, reason)
        finally:
            self.sync_source()
            self.state = ENDED
            self.telemetry.set_state(ENDED)

    # -- a new frame -> the newly resolved grid samples, each prepared when its round comes
    def take(self, frame: Frame) -> List[Tuple[Sample, bool]]:
        """``frame`` on the grid: the new samples, each with whether a window ends there."""
        self.last_frame = frame
        self.telemetry.frame(frame.capture_ts)
        samples, restarted = self.sampler.push(frame)
        if restarted:
            self.pipe.to_head(self.head_close_events, STREAM_GAP)
            self.reset()
        if not samples:
            return []
        if self.k0 is None:
            self.k0 = samples[0].k
        t = self.pipe.spec.frames
        ready = [i for i, s in enumerate(samples)
                 if s.k - self.k0 >= t - 1 and (s.k - self.k0 - t + 1) % self.stride == 0]
        self.telemetry.skipped_windows += max(0, len(ready) - 1)
        last = ready[-1] if ready else -1
        return [(s, i == last) for i, s in enumerate(samples)]

    def prepare(self, s: Sample, prev: Optional[Sample]) -> np.ndarray:
        """The sample's model input, straight into the window ring (whole clips) or a reused buffer the encoder
        reads at once; a frame prepared on the capture thread, or one already used by ``prev``, is reused."""
        if prev is not None and prev.frame is s.frame:
            s.tensor = prev.tensor
        elif s.frame.tensor is not None:
            s.tensor = s.frame.tensor
        else:
            dst = self.window.slot(self.input_shape) if self.encoder is None else self.scratch
            s.tensor = preprocess_frame(s.frame.image, self.pipe.spec, s.frame.color, out=dst)
        self.window.push(s)
        assert s.tensor is not None
        return s.tensor

    # -- the head stage
    def head_stream_lost(self, info: Dict[str, Any]) -> None:
        self.pipe.sinks.stream_state(self.name, "lost", info)
        self.head_close_events(SOURCE_LOST)

    def head_set_event_config(self, cfg: EventConfig) -> None:
        """New thresholds and minimum duration for the next windows (the open event and its history go on); new
        smoothing settings restart the smoothing (the pipeline's set_event_config)."""
        old, self.event_config = self.event_config, cfg
        if (cfg.smoothing, cfg.ema_alpha, cfg.mean_windows) != (old.smoothing, old.ema_alpha, old.mean_windows):
            self.smoother = Smoother(cfg)
        else:
            self.smoother.cfg = cfg
        self.detector.cfg = cfg

    def head_close_events(self, reason: str) -> None:
        """Close the open event and forget the smoothed history."""
        for ev in self.detector.finish(reason=reason):
            self.head_emit(ev)
        self.smoother.reset()

    def head_emit(self, ev: ActionEvent) -> None:
        ev.stream, ev.roi, ev.track = self.name, self.roi, self.track
        self.events.append(ev)
        self.pipe.sinks.event(ev)
        if self.pipe.options.on_event is not None:
            self.pipe.options.on_event(ev)

    def head_decide(self, out: ClipOutput, samples: List[Sample], newest: Frame) -> Result:
        """A window's scores -> smoothed label, keypoints, events, outputs and callbacks."""
        pipe = self.pipe
        t_end, t_start = samples[-1].time, samples[0].time
        latency = time.monotonic() - newest.capture_ts
        self.telemetry.result(latency)
        if pipe.several:
            pipe.total_telemetry.result(latency)
        raw = softmax(out.logits[0])
        smooth = self.smoother(raw)
        c = int(np.argmax(smooth))
        h, w = newest.image.shape[:2]
        opts = pipe.options
        kps = window_keypoints(out, opts.keypoints_top, pipe.spec.span_s, t_start, h, w)
        result = Result(t_end, t_start, pipe.labels[c], float(smooth[c]), top_k(raw, pipe.labels, opts.top_k),
                        kps, latency * 1e3, self.telemetry.inference_rate(), newest.index, probs=smooth,
                        stream=self.name, logits=out.logits[0], roi=self.roi, track=self.track,
                        box=None if self.view is None else self.view.box)
        result.events = self.detector.update(smooth, t_end - pipe.spec.span_s / 2)
        sinks = pipe.sinks
        if opts.keep_images or sinks.wants_images:
            result.image = _bgr(samples[-1].frame)
        if sinks.wants_frames:
            self._draw(result, samples, (h, w))
        sinks.result(result)
        for ev in result.events:
            self.head_emit(ev)
        if opts.on_result is not None:
            opts.on_result(result)
        if not opts.keep_images:
            result.image = None  # results queued for a slow reader do not hold frames
        return result

    def _draw(self, result: Result, samples: List[Sample], size: Tuple[int, int]) -> None:
        """The overlay on the window's frame nearest the keypoints, to the sinks that want frames (``size``: the
        (h, w) the keypoints were scaled to)."""
        from .overlay import draw_overlay

        kt = np.mean([p[0] for p in result.keypoints]) if result.keypoints else result.timestamp
        image = _bgr(samples[int(np.argmin([abs(s.time - kt) for s in samples]))].frame)
        kps = result.keypoints
        fh, fw = image.shape[:2]
        nh, nw = size
        if kps and (fh, fw) != (nh, nw):  # keypoints are in the newest frame's pixels; this one has another size
            kps = [(t, x * fw / nw, y * fh / nh, sc) for t, x, y, sc in kps]
        # a region's or track's frame goes out under its lane's name (cam/roi, cam#id): its own card on the page
        self.pipe.sinks.frame(lane_name(self.name, self.roi, self.track), draw_overlay(image, result, keypoints=kps))


def _bgr(frame: Frame) -> np.ndarray:
    """The frame's image in BGR (what the overlay and the outputs take)."""
    if frame.color == "BGR":
        return frame.image
    import cv2

    return cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)


__all__ = ["END_OF_STREAM", "ERROR", "Lane", "Result", "SERVER_LOST", "SOURCE_LOST", "STOPPED", "STREAM_GAP",
           "window_keypoints"]
