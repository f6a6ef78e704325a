"""Everything cv2.VideoCapture opens: V4L2 cameras, Jetson CSI cameras, network streams, files, GStreamer pipelines.

One class, :class:`OpenCVSource`; what differs by kind is the options it accepts
(:class:`CameraOptions`, :class:`CsiOptions`, :class:`NetworkOptions`,
:class:`PipelineOptions`, :class:`FileOptions`) and the ``*_source`` factory
that :func:`open_source` calls for it.

Bounded waits. FFmpeg (network streams, files) takes OpenCV's open and read
timeouts. V4L2 and GStreamer have none that every OpenCV honours, and OpenCV's
GStreamer open was seen to block for minutes, so their captures live on a
thread of their own (:class:`_CaptureThread`) and every open and read is waited
for with a deadline; a call that misses it is given up on.

FFmpeg's options. OpenCV reads them from ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` when it
opens, and setting that variable replaces its defaults, among them TCP for RTSP.
So the options are merged (:func:`ffmpeg_capture_options`): our low-latency
defaults, the user's own variable, the source's ``ffmpeg_options`` and
``rtsp_transport`` (TCP unless someone asks otherwise); the variable is set to the
merge only while OpenCV opens, and the user's value is back afterwards.

Corrupt frames. A live stream's frame that fails to decode (a bad JPEG in an MJPEG
stream) makes OpenCV's read fail like a lost stream. A failed read is therefore
retried on the same connection: a frame that follows counts the failures as
``corrupt`` (:class:`SourceStats`), without a reconnect; ``max_corrupt_in_row``
failures in a row, or failures for ``read_timeout_s``, are a lost stream.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlparse

import numpy as np

from aknet_edge.sampling import media_time

from . import gstreamer as gst
from .base import Source, SourceError, SourceOpenError, UnsupportedSourceError
from .gstreamer import NO_GSTREAMER_HINT, csi_pipeline
from .options import (
    RTSP_TRANSPORTS,
    CameraOptions,
    CsiOptions,
    FileOptions,
    NetworkOptions,
    PipelineOptions,
    SourceOptionError,
    SourceOptions,
)

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "tcp", "rtmp", "srt")
RTSP_SCHEMES = ("rtsp", "rtsps")
LIVE_FFMPEG_OPTIONS = {"fflags": "nobuffer", "analyzeduration": "100000"}  # low latency, quick (re)open
FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()


# --------------------------------------------------------------------------- FFmpeg's options


def parse_ffmpeg_env(text: Optional[str]) -> Dict[str, str]:
    """``OPENCV_FFMPEG_CAPTURE_OPTIONS`` as a dict: OpenCV's format, ``key;value`` pairs joined by ``|``."""
    out: Dict[str, str] = {}
    for part in (text or "").split("|"):
        key, _, value = part.partition(";")
        if key:
            out[key] = value
    return out


def format_ffmpeg_env(options: Mapping[str, str]) -> str:
    return "|".join(f"{k};{v}" for k, v in options.items())


def ffmpeg_capture_options(uri: str, live: bool, given: Optional[Any] = None, rtsp_transport: Optional[str] = None,
                           environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The FFmpeg options OpenCV gets for ``uri``, each layer overriding the one before:

    1. :data:`LIVE_FFMPEG_OPTIONS` for live streams, unless ``given`` (the source's ``ffmpeg_options``) is set;
    2. the user's ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (``environ``, default ``os.environ``): merged, never dropped;
    3. ``given``;
    4. for ``rtsp://``: ``rtsp_transport`` when given, else ``tcp`` unless a layer above chose a transport
       (``rtsp_transport`` or ``rtsp_flags``), as OpenCV itself asks when the variable is unset.
    """
    env = os.environ if environ is None else environ
    merged: Dict[str, str] = {}
    if given is None and live:
        merged.update(LIVE_FFMPEG_OPTIONS)
    merged.update(parse_ffmpeg_env(env.get(FFMPEG_ENV)))
    merged.update((str(k), str(v)) for k, v in dict(given or ()).items())
    if is_rtsp(uri):
        if rtsp_transport is not None:
            merged["rtsp_transport"] = rtsp_transport
        elif "rtsp_transport" not in merged and "rtsp_flags" not in merged:
            merged["rtsp_transport"] = "tcp"
    return merged


def is_rtsp(uri: Any) -> bool:
    return isinstance(uri, str) and urlparse(uri).scheme.lower() in RTSP_SCHEMES


# --------------------------------------------------------------------------- a capture on its own thread


class CallTimeout(TimeoutError):
    """A capture call did not return within its deadline (and was given up on)."""


class _CaptureThread:
    """One OpenCV capture, opened, read and released on a daemon thread of its own.

    :meth:`call` waits for each call with a deadline. A call that misses it is given up on:
    the thread finishes it whenever it returns, then releases the capture and ends (a capture
    must not be released while another thread is inside it). Used where OpenCV has no
    timeouts of its own (V4L2, GStreamer).
    """

    def __init__(self, name: str) -> None:
        self.cap: Any = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._late = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def late(self) -> bool:
        """A call missed its deadline: the thread ends (and releases the capture) when that call returns."""
        return self._late

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[Any], Any], timeout: float) -> Any:
        """``fn(self)`` on the capture's thread; its result or exception; :class:`CallTimeout` after ``timeout``."""
        box: List[Tuple[bool, Any]] = []
        done = threading.Event()
        self._jobs.put((fn, box, done))
        done.wait(timeout)
        with self._lock:
            if not box:
                self._late = True
                raise CallTimeout(f"no answer within {timeout:g} s")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _serve(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                fn, box, done = job
                try:
                    result: Tuple[bool, Any] = (True, fn(self))
                except BaseException as exc:  # handed to the caller
                    result = (False, exc)
                with self._lock:
                    box.append(result)
                    late = self._late
                done.set()
                if late:  # nobody waits any more: release and end
                    return
        finally:
            cap, self.cap = self.cap, None
            if cap is not None:
                try:
                    cap.release()
                except Exception as exc:
                    log.debug("release failed: %s", exc)

    def close(self, timeout: float) -> None:
        """Release the capture and end the thread, waiting up to ``timeout`` (not at all after a late call)."""
        self._jobs.put(None)
        if not self._late:
            self._thread.join(timeout)


# --------------------------------------------------------------------------- the source


class OpenCVSource(Source):
    """Anything cv2.VideoCapture opens: V4L2 cameras, network streams, files, GStreamer pipelines.

    Options: an ``options=`` object of the kind's class, or keywords parsed for the kind that
    ``api`` and ``live`` imply (V4L2: camera, FFmpeg: network or file, GStreamer: pipeline).
    """

    options_class = SourceOptions  # the kind's class: CameraOptions, NetworkOptions, ...

    def __init__(self, uri: str, target: Any, api: int, *, live: bool, options: Optional[SourceOptions] = None,
                 **kwargs: Any) -> None:
        self.live = live
        if options is None:
            options = _options_class(api, live).parse(kwargs, source=uri)
            kwargs = {}
        self._ffmpeg_options: Dict[str, str] = {}
        if api == _cv2_const("CAP_FFMPEG") and isinstance(options, (NetworkOptions, FileOptions)):
            transport = getattr(options, "rtsp_transport", None)
            self._ffmpeg_options = ffmpeg_capture_options(uri, live, options.ffmpeg_options, transport)
            changes: Dict[str, Any] = {"ffmpeg_options": tuple(self._ffmpeg_options.items())}
            if isinstance(options, NetworkOptions) and is_rtsp(uri):  # log the transport actually asked for
                resolved = self._ffmpeg_options.get("rtsp_transport")
                changes["rtsp_transport"] = resolved if resolved in RTSP_TRANSPORTS else None
            options = options.updated(**changes)
        super().__init__(uri, options=options, **kwargs)
        self._target, self._api = target, api
        cam = options if isinstance(options, CameraOptions) else None  # csi's mode is in its pipeline
        self._width = cam.width if cam else None
        self._height = cam.height if cam else None
        self._fps = cam.fps if cam else None
        self._open_timeout_s = float(getattr(options, "open_timeout_s", 5.0))
        self._read_timeout_s = float(getattr(options, "read_timeout_s", 3.0))
        self._max_corrupt = int(getattr(options, "max_corrupt_in_row", 0))
        self._realtime = bool(getattr(options, "realtime", False)) and not live
        self._threaded = api != _cv2_const("CAP_FFMPEG")  # V4L2, GStreamer: no timeouts of their own
        self._cap: Any = None
        self._worker: Optional[_CaptureThread] = None
        self._stale: Optional[_CaptureThread] = None  # a capture given up on, still inside an OpenCV call
        self._lock = threading.Lock()
        self._file_fps = 0.0
        self._n = 0
        self._t0: Optional[float] = None

    # -- open
    def _open(self) -> None:
        import cv2

        if self._threaded:
            self._open_on_thread(cv2)
        else:
            self._open_ffmpeg(cv2)

    def _open_ffmpeg(self, cv2: Any) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self._open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self._read_timeout_s * 1000)]
        with _ENV_LOCK:  # OpenCV reads its FFmpeg options from the environment, at open time only
            old = os.environ.get(FFMPEG_ENV)
            if self._ffmpeg_options:
                os.environ[FFMPEG_ENV] = format_ffmpeg_env(self._ffmpeg_options)
            try:
                cap = cv2.VideoCapture(self._target, self._api, params)
            finally:
                if self._ffmpeg_options:  # the user's own value back, untouched
                    if old is None:
                        os.environ.pop(FFMPEG_ENV, None)
                    else:
                        os.environ[FFMPEG_ENV] = old
        if not cap.isOpened():
            cap.release()
            raise SourceOpenError(f"cannot open {self.uri}: OpenCV could not open it (check the path/URL, that "
                                  "the stream is running, and that no other program holds the camera)")
        self._configure(cv2, cap)
        with self._lock:
            self._cap = cap

    def _open_on_thread(self, cv2: Any) -> None:
        stale = self._stale
        if stale is not None:
            if stale.alive:  # one capture given up on at a time: a camera it holds would be busy anyway
                raise SourceOpenError(f"cannot open {self.uri} yet: the previous capture, given up on at its "
                                      "deadline, is still inside OpenCV")
            self._stale = None
        worker = _CaptureThread(f"aknet-opencv[{self.uri[:40]}]")

        def open_(w: _CaptureThread) -> bool:
            w.cap = cv2.VideoCapture(self._target, self._api)
            if not w.cap.isOpened():
                return False
            self._configure(cv2, w.cap)
            return True

        try:
            opened = worker.call(open_, self._open_timeout_s)
        except CallTimeout:
            worker.close(0)
            self._stale = worker
            what = "the GStreamer pipeline did not start" if self._api == cv2.CAP_GSTREAMER else "it did not open"
            raise SourceOpenError(
                f"cannot open {self.uri}: {what} within {self._open_timeout_s:g} s (open_timeout_s); check that the "
                "device exists and is free" + (", and try the pipeline with gst-launch-1.0"
                                               if self._api == cv2.CAP_GSTREAMER else "")) from None
        except BaseException:
            worker.close(self._open_timeout_s)
            raise
        if not opened:
            worker.close(self._open_timeout_s)
            raise SourceOpenError(f"cannot open {self.uri}: OpenCV could not open it (check the device or pipeline, "
                                  "and that no other program holds the camera)")
        with self._lock:
            self._worker = worker

    def _configure(self, cv2: Any, cap: Any) -> None:
        if self._width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._width)
        if self._height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._height)
        if self._fps:
            cap.set(cv2.CAP_PROP_FPS, self._fps)
        self._file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    # -- read
    def _read(self, cv2: Any) -> Tuple[bool, Any, float]:
        """One ``cap.read()``: (ok, image, position in seconds or 0 for live sources)."""
        def read(cap: Any) -> Tuple[bool, Any, float]:
            ok, image = cap.read()
            # the decoder's position is the timestamp only where the container declares no frame rate
            pos = float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1e3 if ok and not self.live and self._file_fps <= 0 else 0.0
            return ok, image, pos

        worker = self._worker
        if worker is not None:
            return worker.call(lambda w: read(w.cap), self._read_timeout_s)
        cap = self._cap
        if cap is None:
            return False, None, 0.0
        return read(cap)

    def _grab(self) -> Optional[Tuple[np.ndarray, Optional[float]]]:
        import cv2

        if self._cap is None and self._worker is None:
            return None
        failed, start = 0, time.monotonic()
        while True:
            try:
                ok, image, pos = self._read(cv2)
            except CallTimeout:
                log.warning("%s: no frame within %.1f s (read_timeout_s)", self.uri, self._read_timeout_s)
                if not self.live:
                    raise SourceError(f"{self.uri}: no frame within {self._read_timeout_s:g} s "
                                      "(read_timeout_s)") from None
                return None
            if ok and image is not None:
                break
            if not self.live:
                return None  # the end of a file or of a finite pipeline
            # live: a frame that did not decode, or the stream's end? Only what follows can tell
            if failed >= self._max_corrupt or self._stop.is_set() or \
                    time.monotonic() - start >= self._read_timeout_s:
                return None  # lost: the base class reconnects
            failed += 1
        if failed:
            self._count_corrupt(failed)
            log.debug("%s: skipped %d frame(s) that failed to decode", self.uri, failed)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        media_ts = None
        if not self.live:
            media_ts = media_time(self._n, self._file_fps, pos)
            self._n += 1
            if self._realtime:
                self._pace(media_ts)
        return image, media_ts

    def _release(self) -> None:
        with self._lock:
            cap, self._cap = self._cap, None
            worker, self._worker = self._worker, None
        if cap is not None:
            cap.release()
        if worker is not None:
            worker.close(self._read_timeout_s + 1.0)
            if worker.late:
                self._stale = worker


def _cv2_const(name: str) -> int:
    import cv2

    return int(getattr(cv2, name))


def _options_class(api: int, live: bool) -> type:
    if not live:
        return FileOptions
    if api == _cv2_const("CAP_V4L2"):
        return CameraOptions
    if api == _cv2_const("CAP_GSTREAMER"):
        return PipelineOptions
    return NetworkOptions


# --------------------------------------------------------------------------- GStreamer (see .gstreamer)


def _has_gstreamer() -> bool:
    return gst.opencv_has_gstreamer()


def _require_gstreamer(uri: str) -> None:
    gst.require_gstreamer(uri)


# --------------------------------------------------------------------------- factories (one per kind)


def camera_source(device: Any, options: Mapping[str, Any], query: str = "") -> OpenCVSource:
    """A V4L2 camera by index (``0``) or device path (``/dev/video0``, which must exist)."""
    import cv2

    if isinstance(device, int):
        uri, target = f"/dev/video{device}", device
    else:
        uri = target = str(device)
        if not Path(uri).exists():
            raise SourceOpenError(f"{uri} does not exist: no such camera (list them with ls /dev/video*)")
    opts = CameraOptions.parse(options, query, source=uri)
    return OpenCVSource(uri, target, cv2.CAP_V4L2, live=True, options=opts)


def csi_source(uri: str, sensor: str, options: Mapping[str, Any], query: str = "") -> OpenCVSource:
    """``csi://N``: the nvarguscamerasrc pipeline of sensor N (needs OpenCV with GStreamer, and a Jetson)."""
    import cv2

    if not sensor.isdigit():
        raise UnsupportedSourceError(f"{uri}: expected csi://N with a sensor number")
    opts = CsiOptions.parse(options, query, source=uri)
    _require_gstreamer(uri)
    pipe = csi_pipeline(int(sensor), opts.width, opts.height, opts.fps, opts.flip)
    gst.check_elements(uri, pipe, opts.open_timeout_s)
    return OpenCVSource(uri, pipe, cv2.CAP_GSTREAMER, live=True, options=opts)


def network_source(uri: str, options: Mapping[str, Any]) -> OpenCVSource:
    """rtsp://, http(s)://, udp://, ... through FFmpeg; the URL's query is the stream's, not ours."""
    import cv2

    opts = NetworkOptions.parse(options, source=uri)
    if opts.rtsp_transport is not None and not is_rtsp(uri):
        raise SourceOptionError(f"{uri}: network source option rtsp_transport={opts.rtsp_transport}: only rtsp:// "
                                "streams have a transport to choose")
    return OpenCVSource(uri, uri, cv2.CAP_FFMPEG, live=True, options=opts)


def pipeline_source(pipeline: str, options: Mapping[str, Any]) -> OpenCVSource:
    """A raw GStreamer pipeline ending in appsink (needs OpenCV with GStreamer).

    Its elements are looked up before OpenCV opens it (a missing one is a :class:`GStreamerElementError`
    naming it). A finite pipeline (``finite``, auto: :func:`.gstreamer.finite`) is read like a file: it
    waits instead of dropping frames, carries media timestamps, and its end is an EndOfStream.
    """
    import cv2

    opts = PipelineOptions.parse(options, source=pipeline)
    _require_gstreamer("a GStreamer pipeline")
    gst.check_elements(f"pipeline {pipeline!r}", pipeline, opts.open_timeout_s)
    finite = gst.finite(pipeline) if opts.finite is None else bool(opts.finite)
    opts = opts.updated(finite=finite)  # type: ignore[assignment]
    return OpenCVSource(pipeline, pipeline, cv2.CAP_GSTREAMER, live=not finite, options=opts)


def file_source(path: str, options: Mapping[str, Any], query: str = "") -> OpenCVSource:
    """A video file, decoded by FFmpeg as fast as read (``realtime=1``: at its frame rate)."""
    import cv2

    if not Path(path).exists():
        raise SourceOpenError(f"source {path}: no such file or folder")
    opts = FileOptions.parse(options, query, source=path)
    return OpenCVSource(path, str(Path(path)), cv2.CAP_FFMPEG, live=False, options=opts)


__all__ = [
    "FFMPEG_ENV", "LIVE_FFMPEG_OPTIONS", "NETWORK_SCHEMES", "NO_GSTREAMER_HINT", "OpenCVSource", "camera_source",
    "csi_pipeline", "csi_source", "ffmpeg_capture_options", "file_source", "network_source", "parse_ffmpeg_env",
    "pipeline_source",
]
