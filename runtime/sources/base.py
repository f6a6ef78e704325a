"""What every source shares: frames, errors, the capture thread, the bounded buffer, reconnects, pacing.

Why a thread and a small newest-first buffer: a live camera must never make the
recogniser lag behind it (the mmaction2 webcam demo's tens of seconds), so when
inference is slower than capture the oldest frames are dropped and counted.
Files are not live: their reader blocks instead of dropping (``block=True``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from aknet_edge.errors import AknetError, DependencyError
from aknet_edge.redact import redact

from .options import LiveOptions, ReconnectPolicy, SourceOptions

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- errors


class SourceError(AknetError, OSError):
    """A source failed: it cannot be opened, or it broke and cannot come back."""


class SourceOpenError(SourceError):
    """The source could not be opened (missing file, unreachable stream, busy camera)."""


class UnsupportedSourceError(AknetError, ValueError):
    """The URI names no source this runtime can read."""


class GStreamerUnavailableError(DependencyError):
    """The URI needs GStreamer, which this OpenCV build lacks."""


class GStreamerElementError(GStreamerUnavailableError):
    """A GStreamer pipeline names an element that this machine's GStreamer lacks (``elements`` lists them)."""

    def __init__(self, message: str, elements: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.elements = tuple(elements)


class EndOfStream(AknetError, EOFError):
    """A finite source (file, image folder, finite synthetic stream) has no more frames.

    Distinct from :class:`SourceError` so callers can tell a clean end from a failure.
    """


# --------------------------------------------------------------------------- data


@dataclass
class Frame:
    """One captured image and its clocks.

    ``capture_ts`` is ``time.monotonic()`` when the frame reached the buffer;
    ``media_ts`` is its position in the media (files, synthetic) or None (cameras).
    ``image`` is uint8 (H, W, 3) in ``color`` order. ``tensor`` is what the
    source's ``prepare`` hook made of it on the capture thread (or None).
    """

    image: np.ndarray
    capture_ts: float
    media_ts: Optional[float]
    index: int
    color: str = "BGR"
    tensor: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def timestamp(self) -> float:
        """The clock windows are built on: media time when known, else capture time."""
        return self.media_ts if self.media_ts is not None else self.capture_ts


@dataclass
class SourceStats:
    """Counters a source keeps; read through :meth:`Source.stats`."""

    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    failed_reads: int = 0  # reads that lost the source (each one started a reconnect)
    # time.monotonic() of the last such read: frames captured before it (capture_ts) belong to the stream that was lost
    lost_at: Optional[float] = None
    corrupt: int = 0  # frames that failed to decode and were skipped, without a reconnect
    connected: bool = False
    fps: float = 0.0


# --------------------------------------------------------------------------- base


class Source:
    """A capture thread feeding a bounded buffer; subclasses implement the device calls.

    Subclasses implement ``_open()``, ``_grab() -> (image, media_ts) | None`` (None:
    end of stream or a lost connection) and ``_release()``, and name the options they
    accept in ``options_class``. A source takes its options as keywords (parsed and
    checked by ``options_class.parse``: unknown names are an error) or as a ready
    ``options=`` object; :attr:`options` holds them resolved (``block`` decided).
    """

    live: bool = True
    color: str = "BGR"
    options_class: type[SourceOptions] = LiveOptions

    def __init__(self, uri: str, *, options: SourceOptions | None = None, **kwargs: Any) -> None:
        if options is None:
            options = self.options_class.parse(kwargs, source=uri)  # its errors are AknetErrors: redacted
        elif kwargs:
            raise TypeError(f"{type(self).__name__}({redact(uri)!r}): give options either as an options object or as "
                            f"keywords, not both (got options= and {', '.join(sorted(kwargs))})")
        elif not isinstance(options, self.options_class):
            raise TypeError(f"{type(self).__name__}({redact(uri)!r}): options={redact(repr(options))}: expected a "
                            f"{self.options_class.__name__}")
        # what logs, errors and outputs show: the URI with its password and secret query values masked (the
        # real one stays with whoever opens the device: OpenCV's target, the bag's path)
        self.uri = redact(uri)
        self.block = (not self.paced_live(options)) if options.block is None else bool(options.block)
        self.reconnect = options.reconnect if isinstance(options, LiveOptions) else ReconnectPolicy()
        self.options: SourceOptions = options.updated(block=self.block)
        self.segments: list[Any] | None = None
        self._buf: collections.deque[Frame] = collections.deque()
        self._size = options.buffer_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._stats = SourceStats()
        self._rate: collections.deque[float] = collections.deque(maxlen=64)
        self._thread: threading.Thread | None = None
        self._index = 0
        self._finished = False  # a finite live-like source (synthetic) ran out
        # why the first open failed, while a source started with ``retry=True`` has not opened yet (else None)
        self.open_error: BaseException | None = None
        # called on the capture thread with each new Frame; its return value becomes ``frame.tensor``
        self.prepare: Callable[[Frame], np.ndarray] | None = None
        # set (never cleared here) when a frame, the end or a failure arrives: a reader of several sources
        # (MultiRecognizer) waits on one event shared by all of them instead of polling each
        self.wake: threading.Event | None = None

    # -- lifecycle
    def start(self, retry: bool = False) -> Source:
        """Open the device now and start the capture thread.

        Errors raise here, unless ``retry`` is set and a live source fails to open (:class:`SourceError`: an
        unreachable stream, a camera not plugged in yet): then the error is kept in :attr:`open_error` and the
        capture thread retries the open with the reconnect policy, as it reconnects a lost source (why: a camera
        that is down when a multi-camera run starts must not stop the others). Files, and errors that are not
        about reaching the device (bad options, a missing GStreamer element), raise even with ``retry``.
        """
        if self._thread is not None:
            return self
        try:
            self._open()
        except SourceError as exc:
            if not (retry and self.live):
                raise
            self._safe_release()
            self.open_error = exc
            log.debug("%s did not open (%s); retrying in the background with its reconnect policy", self.uri, exc)
        else:
            self._stats.connected = True
            log.info("opened %s (%s): %s", self.uri, self.options.kind, self.options.describe())
        self._thread = threading.Thread(target=self._run, name=f"aknet-capture[{self.uri}]", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the capture thread and release the device (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("capture thread for %s did not stop within %.1f s", self.uri, timeout)
        self._thread = None
        self._safe_release()

    def paced_live(self, options: SourceOptions) -> bool:
        """Whether frames come at the camera's pace (then a full buffer drops the oldest; else the reader waits)."""
        return bool(self.live)

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading
    @property
    def buffered(self) -> int:
        """Frames waiting in the buffer (a hint for the consumer; may change at once)."""
        return len(self._buf)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The oldest buffered frame; None after ``timeout`` seconds without one.

        Raises :class:`EndOfStream` once a finite source is drained, :class:`SourceError`
        when the source failed for good.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buf:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    raise EndOfStream(f"{self.uri}: end of stream after {self._stats.frames} frames")
                if self._stop.is_set():
                    raise EndOfStream(f"{self.uri}: source closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._buf.popleft()
            if len(self._buf) <= self._size // 2:
                # a blocked producer refills from half-empty, several frames per wake-up: waking it on every
                # read costs a thread hand-off (GIL and OS) per frame in the middle of the consumer's work
                self._cond.notify_all()
            return frame

    def __iter__(self) -> Iterator[Frame]:
        """Frames until end of stream (stops cleanly) or failure (raises)."""
        while True:
            try:
                frame = self.read(timeout=1.0)
            except EndOfStream:
                return
            if frame is not None:
                yield frame

    def stats(self) -> SourceStats:
        with self._cond:
            s = SourceStats(**vars(self._stats))
            if len(self._rate) >= 2 and self._rate[-1] > self._rate[0]:
                s.fps = (len(self._rate) - 1) / (self._rate[-1] - self._rate[0])
        return s

    # -- capture thread
    def _run(self) -> None:
        try:
            self._capture_loop()
        except BaseException as exc:  # a bug or an unexpected error must reach the reader, not kill it silently
            log.debug("%s: capture thread failed", self.uri, exc_info=True)
            self._fail(exc if isinstance(exc, SourceError) else SourceError(f"{self.uri}: capture failed: {exc!r}"))

    def _capture_loop(self) -> None:
        attempt = 0
        reopen = self.open_error is not None  # started with retry=True and not open yet: retry like a lost one
        try:
            while not self._stop.is_set():
                if not reopen:
                    try:
                        got = self._grab()
                    except Exception as exc:  # device errors are handled like a lost stream
                        log.debug("%s: grab failed: %s", self.uri, exc)
                        got = None
                        if not self.live:
                            self._fail(exc if isinstance(exc, SourceError) else
                                       SourceError(f"{self.uri}: read failed: {exc}"))
                            return
                    if got is not None:
                        attempt = 0
                        self._push(*got)
                        continue
                    if self._stop.is_set():
                        return
                    if not self.live or self._finished:
                        with self._cond:
                            self._ended = True
                            self._cond.notify_all()
                        self._wake()
                        return
                    # a live source went away: reconnect with backoff
                    with self._cond:
                        self._stats.connected = False
                        self._stats.failed_reads += 1
                        self._stats.lost_at = time.monotonic()
                    self._wake()  # the reader notices the loss now, not at its next poll
                    self._safe_release()
                attempt = self._reconnect(attempt, first_open=reopen)  # counts on until a frame comes
                if attempt is None:
                    return
                reopen = False
        finally:
            self._safe_release()

    def _reconnect(self, attempt: int, first_open: bool = False) -> int | None:
        """Open again with the reconnect policy's backoff until it works (the attempts so far) or the source stops
        or runs out of attempts (None). ``first_open``: the source never opened (``start(retry=True)``)."""
        what = "not open yet; open" if first_open else "stream lost; reconnect"
        while not self._stop.is_set():
            attempt += 1
            if self.reconnect.max_attempts is not None and attempt > self.reconnect.max_attempts:
                self._fail(SourceError(
                    f"{self.uri}: did not open after {self.reconnect.max_attempts} attempts ({self.open_error})"
                    if first_open else
                    f"{self.uri}: lost and not back after {self.reconnect.max_attempts} reconnect attempts"))
                return None
            delay = self.reconnect.delay(attempt)
            log.warning("%s: %s attempt %d in %.2f s", self.uri, what, attempt, delay)
            if self._stop.wait(delay):
                return None
            try:
                self._open()
            except Exception as exc:
                log.debug("%s: %s attempt %d failed: %s", self.uri, what.split("; ")[1], attempt, exc)
                self._safe_release()
                continue
            with self._cond:
                self._stats.reconnects += 1
                self._stats.connected = True
                self.open_error = None
            if first_open:
                log.info("opened %s (%s) after %d attempt(s): %s", self.uri, self.options.kind, attempt,
                         self.options.describe())
            else:
                log.info("%s: reconnected after %d attempt(s)", self.uri, attempt)
            self._wake()
            return attempt
        return None

    def _push(self, image: np.ndarray, media_ts: float | None) -> None:
        now = time.monotonic()
        frame = Frame(image, now, media_ts, self._index, self.color)
        self._index += 1
        prepare = self.prepare
        if prepare is not None:  # e.g. the model's preprocessing, overlapped with inference on the other thread
            try:
                frame.tensor = prepare(frame)
            except Exception as exc:  # the consumer falls back to preparing the frame itself and reports the error
                log.debug("%s: prepare hook failed on frame %d: %s", self.uri, frame.index, exc)
        with self._cond:
            if self.block:
                while len(self._buf) >= self._size and not self._stop.is_set():
                    self._cond.wait(0.1)
            elif len(self._buf) >= self._size:
                self._buf.popleft()
                self._stats.dropped += 1
            self._buf.append(frame)
            self._stats.frames += 1
            self._rate.append(now)
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        wake = self.wake
        if wake is not None:
            wake.set()

    def _count_corrupt(self, n: int = 1) -> None:
        """``n`` frames failed to decode and were skipped (the stream itself is fine)."""
        with self._cond:
            self._stats.corrupt += n

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._stats.connected = False
            self._cond.notify_all()
        self._wake()

    def _safe_release(self) -> None:
        try:
            self._release()
        except Exception as exc:  # releasing a broken device must not mask the real error
            log.debug("%s: release failed: %s", self.uri, exc)

    # -- device hooks
    def _open(self) -> None:
        raise NotImplementedError

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        raise NotImplementedError

    def _release(self) -> None:
        pass

    def _pace(self, media_ts: float, speed: float = 1.0) -> None:
        """Wait until media time ``media_ts`` is due at ``speed`` x real time (files, synthetic, arrays)."""
        now = time.monotonic()
        if getattr(self, "_t0", None) is None:
            self._t0 = now - media_ts / speed
        wait = self._t0 + media_ts / speed - now
        if wait > 0:
            self._stop.wait(wait)


__all__ = [
    "EndOfStream", "Frame", "GStreamerElementError", "GStreamerUnavailableError", "ReconnectPolicy", "Source",
    "SourceError", "SourceOpenError", "SourceStats", "UnsupportedSourceError",
]
