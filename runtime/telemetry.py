"""Runtime counters: capture and inference rates, capture-to-result latency, drops, reconnects, source state.

Why: a live recogniser that silently falls behind or keeps reconnecting looks
fine in its output; these numbers make lag and loss visible (``--stats``).
Thread-safe; cheap enough to update on every frame.

Rates describe the recent past, not the last burst: a rate counts only the
ticks of the last ``horizon_s`` seconds and stretches its interval to "now"
once the next tick is overdue, so it falls to zero within ``horizon_s`` of the
last frame (a stalled camera reads 0 fps, not its last rate). When the source
is lost the rates restart from zero, so after it comes back they measure the
new stream only (not diluted by the outage).

``latency_ms`` (and the p50/p95 here) run from the moment a frame reached the
source's buffer (``Frame.capture_ts``: after the camera, its encoder, the
network and the decoder) to the moment its window's scores were ready. It
cannot see the delay before capture: sensor exposure and readout, the camera's
or server's encoder, network transport and jitter buffers, and the decoder's
own buffering; nor the time spent in the outputs after the result.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, Optional

import numpy as np

# the source's state as telemetry reports it
LIVE = "live"  # frames are arriving (or the source is open and waiting for its first)
RECONNECTING = "reconnecting"  # a live source was lost; it is trying to reconnect
ENDED = "ended"  # no more frames will come (end of stream, the source failed for good, or closed)
SOURCE_STATES = (LIVE, RECONNECTING, ENDED)


class RateMeter:
    """Events per second over the last ``window`` events that are at most ``horizon_s`` seconds old.

    The estimate is intervals / elapsed time over those events. Once the next event is later than
    the mean interval (counted from when the last one was ticked, so a tick carrying an earlier
    capture time is not "late"), the elapsed time runs on to "now": a stopped stream's rate decays
    to zero, and is zero ``horizon_s`` after its last event.
    """

    def __init__(self, window: int = 64, horizon_s: float = 5.0) -> None:
        self.horizon_s = float(horizon_s)
        self._t: collections.deque[float] = collections.deque(maxlen=window)
        self._ticked = 0.0  # monotonic time of the last tick
        self._lock = threading.Lock()

    def tick(self, t: Optional[float] = None, now: Optional[float] = None) -> None:
        """An event at ``t`` (default: now), seen at ``now`` (default: ``time.monotonic()``, the clock of ``t``)."""
        if now is None:
            now = time.monotonic()
        with self._lock:
            self._t.append(now if t is None else t)
            self._ticked = now

    def clear(self) -> None:
        with self._lock:
            self._t.clear()

    def rate(self, now: Optional[float] = None) -> float:
        if now is None:
            now = time.monotonic()
        with self._lock:
            if len(self._t) < 2:
                return 0.0
            oldest = now - self.horizon_s
            ts = [t for t in self._t if t > oldest] if self._t[0] <= oldest else list(self._t)
            ticked = self._ticked
        if len(ts) < 2:
            return 0.0
        n = len(ts) - 1
        span = ts[-1] - ts[0]
        if span <= 0:
            return 0.0
        overdue = now - ticked - span / n  # how much later than the mean interval the next event is
        return n / (span + max(0.0, overdue))


@dataclass
class TelemetrySnapshot:
    """One reading of the counters (latencies in milliseconds, times in seconds).

    ``source_state`` is "live", "reconnecting" or "ended"; ``state_s`` how long it has been so;
    ``outages`` how many times the source was lost, ``outage_s`` the time spent lost (the current
    outage included); ``frame_age_s`` the time since the last frame reached recognition (None
    before the first); ``corrupt`` the frames the source skipped because they did not decode.
    """

    frames: int
    results: int
    capture_fps: float
    inference_fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    dropped: int
    reconnects: int
    skipped_windows: int
    uptime_s: float
    source_state: str = LIVE
    state_s: float = 0.0
    outages: int = 0
    outage_s: float = 0.0
    frame_age_s: Optional[float] = None
    corrupt: int = 0  # frames the source could not decode and skipped (the stream itself went on)
    # backend "triton": the server's state and counters (runtime.triton_client.TritonStats.to_dict()); None locally
    server: Optional[dict] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        state = self.source_state if self.source_state == LIVE else f"{self.source_state} {self.state_s:.1f} s"
        corrupt = f" corrupt {self.corrupt}" if self.corrupt else ""
        return (f"source {state} | capture {self.capture_fps:5.1f} fps | inference {self.inference_fps:5.1f}/s | "
                f"latency p50 {self.latency_p50_ms:6.1f} ms p95 {self.latency_p95_ms:6.1f} ms | frames {self.frames} "
                f"dropped {self.dropped}{corrupt} | reconnects {self.reconnects} outages {self.outages} | "
                f"results {self.results}" + (f" | server {self.server['state']} outages {self.server['outages']} "
                                             f"restarts {self.server['sequence_restarts']}" if self.server else ""))


class Telemetry:
    """Counters fed by the inference thread; :meth:`snapshot` from any thread.

    ``rate_horizon_s``: how far back the rates look (see :class:`RateMeter`); keep it several
    result intervals long where results are rare (a long stride).
    """

    def __init__(self, latency_window: int = 512, rate_horizon_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.capture = RateMeter(64, rate_horizon_s)
        self.inference = RateMeter(32, rate_horizon_s)
        self._lat: collections.deque[float] = collections.deque(maxlen=latency_window)
        self.frames = 0
        self.results = 0
        self.skipped_windows = 0
        self.dropped = 0
        self.reconnects = 0
        self.corrupt = 0
        self.state = LIVE
        self._state_since = self._start
        self.outages = 0
        self._outage_total = 0.0
        self._last_frame: Optional[float] = None

    def frame(self, capture_ts: float) -> None:
        with self._lock:
            self.frames += 1
            self.capture.tick(capture_ts)
            self._last_frame = time.monotonic()

    def result(self, latency_s: float) -> None:
        with self._lock:
            self.results += 1
            self.inference.tick()
            self._lat.append(latency_s)

    def inference_rate(self) -> float:
        """Results per second now (see :class:`RateMeter`)."""
        return self.inference.rate()

    def source(self, dropped: int, reconnects: int, corrupt: int = 0) -> None:
        with self._lock:
            self.dropped, self.reconnects, self.corrupt = dropped, reconnects, corrupt

    def set_state(self, state: str, now: Optional[float] = None) -> None:
        """The source's state changed (see ``SOURCE_STATES``); losing it restarts the rates."""
        if state not in SOURCE_STATES:
            raise ValueError(f"source state {state!r}: expected one of {', '.join(SOURCE_STATES)}")
        now = time.monotonic() if now is None else now
        with self._lock:
            if state == self.state:
                return
            if self.state == RECONNECTING:
                self._outage_total += now - self._state_since
            if state == RECONNECTING:
                self.outages += 1
                self.capture.clear()
                self.inference.clear()
            self.state, self._state_since = state, now

    def snapshot(self) -> TelemetrySnapshot:
        now = time.monotonic()
        with self._lock:
            lat = np.asarray(self._lat, np.float64) * 1e3
            p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat.size else (0.0, 0.0)
            in_state = now - self._state_since
            outage = self._outage_total + (in_state if self.state == RECONNECTING else 0.0)
            return TelemetrySnapshot(self.frames, self.results, self.capture.rate(now), self.inference.rate(now), p50,
                                     p95, self.dropped, self.reconnects, self.skipped_windows, now - self._start,
                                     self.state, in_state, self.outages, outage,
                                     None if self._last_frame is None else now - self._last_frame, self.corrupt)


@dataclass
class PipelineStats(TelemetrySnapshot):
    """What a recogniser's ``stats()`` returns, for one camera or many: the lanes together (the fields of
    :class:`TelemetrySnapshot`; with one camera, that camera's) and each lane's own in :attr:`streams`, by name."""

    streams: Dict[str, TelemetrySnapshot] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The counters of all lanes together (each lane's: ``streams[name].to_dict()``)."""
        return {f.name: getattr(self, f.name) for f in fields(TelemetrySnapshot)}


__all__ = ["ENDED", "LIVE", "PipelineStats", "RECONNECTING", "RateMeter", "SOURCE_STATES", "Telemetry",
           "TelemetrySnapshot"]
