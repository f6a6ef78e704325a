"""One URI for every video source, read by a capture thread into a bounded buffer.

Why a thread and a small newest-first buffer: a live camera must never make the
recogniser lag behind it (the mmaction2 webcam demo's tens of seconds), so when
inference is slower than capture the oldest frames are dropped and counted.
Files are not live: their reader blocks instead of dropping (``block=True``).

URIs understood by :func:`open_source`:

* ``0`` / ``"0"`` / ``/dev/video0`` / ``v4l2:///dev/video0`` -- V4L2 through OpenCV
* ``csi://0`` -- Jetson CSI camera through nvarguscamerasrc (needs OpenCV with GStreamer)
* ``rtsp://``, ``http(s)://`` (MJPEG), ``udp://`` -- network streams through OpenCV's FFmpeg
* a video file, a folder of images
* a raw GStreamer pipeline (any string containing ``!``)
* ``synthetic://?seed=1&fps=15&segments=6&size=112`` -- the synthetic action generator,
  paced at its frame rate (``speed=`` multiplies it, ``speed=0`` is unpaced), with its
  ground-truth :attr:`Source.segments`

``read(timeout)`` returns None on timeout, raises :class:`EndOfStream` when a
file ended and :class:`SourceError` on failures. Lost live sources reconnect
with exponential backoff (:class:`ReconnectPolicy`).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from aknet_edge.errors import AknetError, ConfigError, DependencyError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "tcp", "rtmp", "srt")
LIVE_FFMPEG_OPTIONS = {"fflags": "nobuffer", "analyzeduration": "500000"}  # low latency, quick open
_ENV_LOCK = threading.Lock()
NO_GSTREAMER_HINT = (
    "this OpenCV has no GStreamer support (pip's opencv-python wheels are built without it); "
    "on Jetson use JetPack's system OpenCV (apt python3-opencv, and pip uninstall opencv-python "
    "opencv-python-headless in this environment), or read the camera as /dev/videoN through V4L2"
)


# --------------------------------------------------------------------------- errors


class SourceError(AknetError, OSError):
    """A source failed: it cannot be opened, or it broke and cannot come back."""


class SourceOpenError(SourceError):
    """The source could not be opened (missing file, unreachable stream, busy camera)."""


class UnsupportedSourceError(AknetError, ValueError):
    """The URI names no source this runtime can read."""


class GStreamerUnavailableError(DependencyError):
    """The URI needs GStreamer, which this OpenCV build lacks."""


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
    media_ts: float | None
    index: int
    color: str = "BGR"
    tensor: np.ndarray | None = field(default=None, repr=False)

    @property
    def timestamp(self) -> float:
        """The clock windows are built on: media time when known, else capture time."""
        return self.media_ts if self.media_ts is not None else self.capture_ts


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff for lost live sources; ``max_attempts=None`` retries forever."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ConfigError(f"reconnect policy {self}: expected 0 < initial_s <= max_s and factor >= 1")

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))


@dataclass
class SourceStats:
    """Counters a source keeps; read through :meth:`Source.stats`."""

    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    failed_reads: int = 0
    connected: bool = False
    fps: float = 0.0


# --------------------------------------------------------------------------- base


class Source:
    """A capture thread feeding a bounded buffer; subclasses implement the device calls.

    Subclasses implement ``_open()``, ``_grab() -> (image, media_ts) | None`` (None:
    end of stream or a lost connection) and ``_release()``.
    """

    live: bool = True
    color: str = "BGR"

    def __init__(self, uri: str, *, buffer_size: int = 4, block: bool | None = None,
                 reconnect: ReconnectPolicy | None = None, **_: Any) -> None:
        if buffer_size < 1:
            raise ConfigError(f"buffer_size={buffer_size}: expected at least 1")
        self.uri = uri
        self.block = (not self.live) if block is None else bool(block)
        self.reconnect = reconnect or ReconnectPolicy()
        self.segments: list[Any] | None = None
        self._buf: collections.deque[Frame] = collections.deque()
        self._size = buffer_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._stats = SourceStats()
        self._rate: collections.deque[float] = collections.deque(maxlen=64)
        self._thread: threading.Thread | None = None
        self._index = 0
        self._finished = False  # a finite live-like source (synthetic) ran out
        # called on the capture thread with each new Frame; its return value becomes ``frame.tensor``
        self.prepare: Callable[[Frame], np.ndarray] | None = None

    # -- lifecycle
    def start(self) -> Source:
        """Open the device now (errors raise here) and start the capture thread."""
        if self._thread is not None:
            return self
        self._open()
        self._stats.connected = True
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
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    got = self._grab()
                except Exception as exc:  # device errors are handled like a lost stream
                    log.debug("%s: grab failed: %s", self.uri, exc)
                    got = None
                    if not self.live:
                        self._fail(SourceError(f"{self.uri}: read failed: {exc}"))
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
                    return
                # a live source went away: reconnect with backoff
                with self._cond:
                    self._stats.connected = False
                    self._stats.failed_reads += 1
                self._safe_release()
                while not self._stop.is_set():
                    attempt += 1
                    if self.reconnect.max_attempts is not None and attempt > self.reconnect.max_attempts:
                        self._fail(SourceError(f"{self.uri}: lost and not back after "
                                               f"{self.reconnect.max_attempts} reconnect attempts"))
                        return
                    delay = self.reconnect.delay(attempt)
                    log.warning("%s: stream lost; reconnect attempt %d in %.2f s", self.uri, attempt, delay)
                    if self._stop.wait(delay):
                        return
                    try:
                        self._open()
                    except Exception as exc:
                        log.debug("%s: reconnect attempt %d failed: %s", self.uri, attempt, exc)
                        self._safe_release()
                        continue
                    with self._cond:
                        self._stats.reconnects += 1
                        self._stats.connected = True
                    log.info("%s: reconnected after %d attempt(s)", self.uri, attempt)
                    break
        finally:
            self._safe_release()

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

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._stats.connected = False
            self._cond.notify_all()

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


# --------------------------------------------------------------------------- OpenCV


class OpenCVSource(Source):
    """Anything cv2.VideoCapture opens: V4L2 cameras, network streams, files, GStreamer pipelines."""

    def __init__(self, uri: str, target: Any, api: int, *, live: bool, width: int | None = None,
                 height: int | None = None, fps: float | None = None, open_timeout_s: float = 5.0,
                 read_timeout_s: float = 3.0, realtime: bool = False,
                 ffmpeg_options: dict[str, str] | None = None, **options: Any) -> None:
        self.live = live
        super().__init__(uri, **options)
        self._target, self._api = target, api
        self._width, self._height, self._fps = width, height, fps
        self._open_timeout_ms = int(open_timeout_s * 1000)
        self._read_timeout_ms = int(read_timeout_s * 1000)
        self._realtime = realtime and not live
        if ffmpeg_options is None and live and api == _cv2_const("CAP_FFMPEG"):
            ffmpeg_options = LIVE_FFMPEG_OPTIONS
        self._ffmpeg_options = ffmpeg_options or {}
        self._cap: Any = None
        self._lock = threading.Lock()
        self._file_fps = 0.0
        self._n = 0
        self._t0: float | None = None

    def _open(self) -> None:
        import cv2

        params: list[int] = []
        if self._api == cv2.CAP_FFMPEG:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._open_timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._read_timeout_ms]
        with _ENV_LOCK:  # OpenCV reads its FFmpeg demuxer options from the environment at open time
            old = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            if self._ffmpeg_options:
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "|".join(
                    f"{k};{v}" for k, v in self._ffmpeg_options.items())
            try:
                cap = cv2.VideoCapture(self._target, self._api, params) if params else \
                    cv2.VideoCapture(self._target, self._api)
            finally:
                if self._ffmpeg_options:
                    if old is None:
                        os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                    else:
                        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = old
        if not cap.isOpened():
            cap.release()
            raise SourceOpenError(f"cannot open {self.uri}: OpenCV could not open it (check the path/URL, that "
                                  "the stream is running, and that no other program holds the camera)")
        if self._width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._width)
        if self._height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._height)
        if self._fps:
            cap.set(cv2.CAP_PROP_FPS, self._fps)
        self._file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        with self._lock:
            self._cap = cap

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        import cv2

        cap = self._cap
        if cap is None:
            return None
        ok, image = cap.read()
        if not ok or image is None:
            return None
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        media_ts = None
        if not self.live:
            media_ts = self._n / self._file_fps if self._file_fps > 0 else float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1e3
            self._n += 1
            if self._realtime:
                self._pace(media_ts)
        return image, media_ts

    def _release(self) -> None:
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def _cv2_const(name: str) -> int:
    import cv2

    return int(getattr(cv2, name))


# --------------------------------------------------------------------------- image folder


class ImageFolderSource(Source):
    """Sorted images of a folder as a finite stream at ``fps`` (media time index / fps)."""

    live = False

    def __init__(self, uri: str, folder: Path, *, fps: float = 15.0, **options: Any) -> None:
        super().__init__(uri, **options)
        self._files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceOpenError(f"{folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        if fps <= 0:
            raise ConfigError(f"fps={fps}: expected > 0")
        self._fps = float(fps)
        self._i = 0

    def _open(self) -> None:
        self._i = 0

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        import cv2

        while self._i < len(self._files):
            path = self._files[self._i]
            i = self._i
            self._i += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping unreadable image %s", path)
                continue
            return image, i / self._fps
        return None


# --------------------------------------------------------------------------- synthetic


class SyntheticSource(Source):
    """The synthetic long-video generator as a live camera paced at its frame rate.

    ``speed`` scales the pace (2 = twice real time, 0 = as fast as rendered).
    Frames carry media timestamps; :attr:`segments` is the ground truth.
    The stream ends after its segments unless ``loop=1``.
    """

    color = "RGB"

    def __init__(self, uri: str, *, seed: int = 1, fps: float = 15.0, segments: int = 6, size: int = 112,
                 speed: float = 1.0, loop: bool = False, seg_min: float = 2.0, seg_max: float = 3.0,
                 **options: Any) -> None:
        self.live = True
        super().__init__(uri, **options)
        from aknet_edge.synthetic import iter_long_video

        self._make = lambda s: iter_long_video(s, int(segments), float(fps), int(size), (seg_min, seg_max))
        self.seed, self.fps, self.speed, self.loop = int(seed), float(fps), float(speed), bool(loop)
        if self.speed < 0:
            raise ConfigError(f"speed={speed}: expected >= 0 (0 = unpaced)")
        self.segments, self._frames = self._make(self.seed)
        self._offset = 0.0
        self._t0: float | None = None

    def _open(self) -> None:
        pass

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        try:
            t, rgb = next(self._frames)
        except StopIteration:
            if not self.loop:
                self._finished = True
                return None
            self._offset += self.segments[-1].end
            _, self._frames = self._make(self.seed)
            t, rgb = next(self._frames)
        t += self._offset
        if self.speed > 0:
            self._pace(t, self.speed)
        return rgb, t


class ArraySource(Source):
    """Frames already in memory replayed as a finite stream at ``fps`` media time (unpaced unless ``speed``).

    For benchmarks and tests that must not pay for decoding or rendering.
    """

    live = False

    def __init__(self, frames: Any, fps: float = 15.0, color: str = "RGB", repeat: int = 1,
                 speed: float = 0.0, **options: Any) -> None:
        super().__init__("array://", **options)
        self._frames, self._fps, self.color = list(frames), float(fps), color
        self._total = len(self._frames) * max(1, int(repeat))
        self._i = 0
        self._speed = float(speed)
        self._t0: float | None = None

    def _open(self) -> None:
        pass

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        if self._i >= self._total:
            return None
        t = self._i / self._fps
        image = self._frames[self._i % len(self._frames)]
        self._i += 1
        if self._speed > 0:
            self._pace(t, self._speed)
        return image, t


# --------------------------------------------------------------------------- URI parsing


def _has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def _require_gstreamer(uri: str) -> None:
    if not _has_gstreamer():
        raise GStreamerUnavailableError(f"{uri} needs GStreamer, but {NO_GSTREAMER_HINT}")


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The nvarguscamerasrc pipeline for Jetson CSI cameras (BGR frames into appsink)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1 ! nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
            "video/x-raw,format=BGR ! appsink drop=1 max-buffers=1")


def _query_options(query: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        text = values[-1]
        try:
            out[key] = int(text)
        except ValueError:
            try:
                out[key] = float(text)
            except ValueError:
                out[key] = text
    return out


def _policy(options: dict[str, Any]) -> None:
    keys = {"reconnect_initial_s": "initial_s", "reconnect_max_s": "max_s", "reconnect_factor": "factor",
            "reconnect_max_attempts": "max_attempts"}
    given = {new: options.pop(old) for old, new in keys.items() if old in options}
    if given and "reconnect" not in options:
        options["reconnect"] = ReconnectPolicy(**given)


def open_source(uri: str | int, *, start: bool = True, **options: Any) -> Source:
    """Open a source by URI (see the module docstring) and start capturing.

    Common options: ``buffer_size`` (frames kept, newest win), ``block`` (wait instead
    of dropping; default for files), ``reconnect`` (:class:`ReconnectPolicy`) or
    ``reconnect_initial_s``/``reconnect_max_s``/``reconnect_factor``/``reconnect_max_attempts``,
    ``width``/``height``/``fps`` for cameras, ``realtime`` to pace files at their frame rate,
    ``open_timeout_s``/``read_timeout_s`` and ``ffmpeg_options`` (e.g. ``{"rtsp_transport": "tcp"}``;
    live network streams default to :data:`LIVE_FFMPEG_OPTIONS`) for network streams.
    """
    import cv2

    _policy(options)
    src = _make_source(uri, cv2, options)
    if start:
        src.start()
    return src


def _make_source(uri: str | int, cv2: Any, options: dict[str, Any]) -> Source:
    if isinstance(uri, bool):
        raise UnsupportedSourceError(f"source {uri!r}: expected a URI string or a camera index")
    if isinstance(uri, int) or (isinstance(uri, str) and uri.strip().isdigit()):
        index = int(uri)
        return OpenCVSource(f"/dev/video{index}", index, cv2.CAP_V4L2, live=True, **options)
    if not isinstance(uri, str) or not uri.strip():
        raise UnsupportedSourceError(f"source {uri!r}: expected a URI such as csi://0, /dev/video0, rtsp://..., "
                                     "a video file, an image folder or synthetic://")
    uri = uri.strip()
    if "!" in uri:
        _require_gstreamer("a GStreamer pipeline")
        return OpenCVSource(uri, uri, cv2.CAP_GSTREAMER, live=True, **options)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "synthetic":
        return SyntheticSource(uri, **{**_query_options(parsed.query), **options})
    if scheme == "csi":
        _require_gstreamer(uri)
        sensor = (parsed.netloc or parsed.path.strip("/") or "0")
        if not sensor.isdigit():
            raise UnsupportedSourceError(f"{uri}: expected csi://N with a sensor number")
        opts = {**_query_options(parsed.query), **options}
        pipe = csi_pipeline(int(sensor), int(opts.pop("width", 1280)), int(opts.pop("height", 720)),
                            int(opts.pop("fps", 30)), int(opts.pop("flip", 0)))
        return OpenCVSource(uri, pipe, cv2.CAP_GSTREAMER, live=True, **opts)
    if scheme == "v4l2":
        uri = parsed.path or parsed.netloc
        scheme = ""
    if scheme in NETWORK_SCHEMES:
        return OpenCVSource(uri, uri, cv2.CAP_FFMPEG, live=True, **options)
    if scheme == "file":
        uri, scheme = parsed.path, ""
    if scheme and len(scheme) > 1:  # one letter: a Windows drive
        raise UnsupportedSourceError(
            f"source {uri}: unknown scheme {scheme}://; expected csi://, v4l2://, rtsp://, http(s)://, udp://, "
            "synthetic://, a device /dev/videoN, a file, a folder or a GStreamer pipeline")
    path = Path(uri)
    if str(path).startswith("/dev/video"):
        if not path.exists():
            raise SourceOpenError(f"{path} does not exist: no such camera (list them with ls /dev/video*)")
        return OpenCVSource(str(path), str(path), cv2.CAP_V4L2, live=True, **options)
    if path.is_dir():
        return ImageFolderSource(uri, path, **options)
    if not path.exists():
        raise SourceOpenError(f"source {uri}: no such file or folder")
    return OpenCVSource(uri, str(path), cv2.CAP_FFMPEG, live=False, **options)


__all__ = [
    "ArraySource", "EndOfStream", "Frame", "GStreamerUnavailableError", "ImageFolderSource", "OpenCVSource", "ReconnectPolicy",
    "Source", "SourceError", "SourceOpenError", "SourceStats", "SyntheticSource", "UnsupportedSourceError",
    "csi_pipeline", "open_source",
]

