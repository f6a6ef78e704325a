"""Runtime counters: capture and inference rates, capture-to-result latency, drops, reconnects.

Why: a live recogniser that silently falls behind or keeps reconnecting looks
fine in its output; these numbers make lag and loss visible (``--stats``).
Thread-safe; cheap enough to update on every frame.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np


class RateMeter:
    """Events per second over the last ``window`` events."""

    def __init__(self, window: int = 64) -> None:
        self._t: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float | None = None) -> None:
        self._t.append(time.monotonic() if now is None else now)

    def rate(self) -> float:
        if len(self._t) < 2 or self._t[-1] <= self._t[0]:
            return 0.0
        return (len(self._t) - 1) / (self._t[-1] - self._t[0])


@dataclass
class TelemetrySnapshot:
    """One reading of the counters (latencies in milliseconds)."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"capture {self.capture_fps:5.1f} fps | inference {self.inference_fps:5.1f}/s | latency p50 "
                f"{self.latency_p50_ms:6.1f} ms p95 {self.latency_p95_ms:6.1f} ms | frames {self.frames} "
                f"dropped {self.dropped} | reconnects {self.reconnects} | results {self.results}")


class Telemetry:
    """Counters fed by the inference thread; :meth:`snapshot` from any thread."""

    def __init__(self, latency_window: int = 512) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self.capture = RateMeter()
        self.inference = RateMeter(32)
        self._lat: collections.deque[float] = collections.deque(maxlen=latency_window)
        self.frames = 0
        self.results = 0
        self.skipped_windows = 0
        self.dropped = 0
        self.reconnects = 0

    def frame(self, capture_ts: float) -> None:
        with self._lock:
            self.frames += 1
            self.capture.tick(capture_ts)

    def result(self, latency_s: float) -> None:
        with self._lock:
            self.results += 1
            self.inference.tick()
            self._lat.append(latency_s)

    def source(self, dropped: int, reconnects: int) -> None:
        with self._lock:
            self.dropped, self.reconnects = dropped, reconnects

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            lat = np.asarray(self._lat, np.float64) * 1e3
            p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if lat.size else (0.0, 0.0)
            return TelemetrySnapshot(self.frames, self.results, self.capture.rate(), self.inference.rate(), p50, p95,
                                     self.dropped, self.reconnects, self.skipped_windows,
                                     time.monotonic() - self._start)
