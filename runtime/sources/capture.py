"""Everything cv2.VideoCapture opens: V4L2 cameras, Jetson CSI cameras, network streams, files, GStreamer pipelines.

One class, :class:`OpenCVSource`; what differs by kind is the options it accepts
(:class:`CameraOptions`, :class:`CsiOptions`, :class:`NetworkOptions`,
:class:`PipelineOptions`, :class:`FileOptions`) and the ``*_source`` factory
that :func:`open_source` calls for it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np

from aknet_edge.sampling import media_time

from .base import GStreamerUnavailableError, Source, SourceOpenError, UnsupportedSourceError
from .options import (
    CameraOptions,
    CsiOptions,
    FileOptions,
    NetworkOptions,
    PipelineOptions,
    SourceOptions,
)

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "tcp", "rtmp", "srt")
LIVE_FFMPEG_OPTIONS = {"fflags": "nobuffer", "analyzeduration": "500000"}  # low latency, quick open
_ENV_LOCK = threading.Lock()
NO_GSTREAMER_HINT = (
    "this OpenCV has no GStreamer support (pip's opencv-python wheels are built without it); "
    "on Jetson use JetPack's system OpenCV (apt python3-opencv, and pip uninstall opencv-python "
    "opencv-python-headless in this environment), or read the camera as /dev/videoN through V4L2"
)


class OpenCVSource(Source):
    """Anything cv2.VideoCapture opens: V4L2 cameras, network streams, files, GStreamer pipelines.

    Options: an ``options=`` object of the kind's class, or keywords parsed for the kind that
    ``api`` and ``live`` imply (V4L2: camera, FFmpeg: network or file, GStreamer: pipeline).
    """

    options_class = SourceOptions  # the kind's class: CameraOptions, NetworkOptions, ...

    def __init__(self, uri: str, target: Any, api: int, *, live: bool, options: SourceOptions | None = None,
                 **kwargs: Any) -> None:
        self.live = live
        if options is None:
            options = _options_class(api, live).parse(kwargs, source=uri)
            kwargs = {}
        if isinstance(options, (NetworkOptions, FileOptions)) and options.ffmpeg_options is None:
            live_ffmpeg = live and api == _cv2_const("CAP_FFMPEG")
            options = options.updated(ffmpeg_options=LIVE_FFMPEG_OPTIONS if live_ffmpeg else ())
        super().__init__(uri, options=options, **kwargs)
        self._target, self._api = target, api
        cam = options if isinstance(options, CameraOptions) else None  # csi's mode is in its pipeline
        self._width = cam.width if cam else None
        self._height = cam.height if cam else None
        self._fps = cam.fps if cam else None
        self._open_timeout_ms = int(getattr(options, "open_timeout_s", 5.0) * 1000)
        self._read_timeout_ms = int(getattr(options, "read_timeout_s", 3.0) * 1000)
        self._realtime = bool(getattr(options, "realtime", False)) and not live
        self._ffmpeg_options: Dict[str, str] = dict(getattr(options, "ffmpeg_options", None) or ())
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
            media_ts = media_time(self._n, self._file_fps, float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1e3)
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


def _options_class(api: int, live: bool) -> type[SourceOptions]:
    if not live:
        return FileOptions
    if api == _cv2_const("CAP_V4L2"):
        return CameraOptions
    if api == _cv2_const("CAP_GSTREAMER"):
        return PipelineOptions
    return NetworkOptions


# --------------------------------------------------------------------------- GStreamer


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


# --------------------------------------------------------------------------- factories (one per kind)


def camera_source(device: int | str, options: Mapping[str, Any], query: str = "") -> OpenCVSource:
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
    """``csi://N``: the nvarguscamerasrc pipeline of sensor N (needs OpenCV with GStreamer)."""
    import cv2

    if not sensor.isdigit():
        raise UnsupportedSourceError(f"{uri}: expected csi://N with a sensor number")
    opts = CsiOptions.parse(options, query, source=uri)
    _require_gstreamer(uri)
    pipe = csi_pipeline(int(sensor), opts.width, opts.height, opts.fps, opts.flip)
    return OpenCVSource(uri, pipe, cv2.CAP_GSTREAMER, live=True, options=opts)


def network_source(uri: str, options: Mapping[str, Any]) -> OpenCVSource:
    """rtsp://, http(s)://, udp://, ... through FFmpeg; the URL's query is the stream's, not ours."""
    import cv2

    opts = NetworkOptions.parse(options, source=uri)
    return OpenCVSource(uri, uri, cv2.CAP_FFMPEG, live=True, options=opts)


def pipeline_source(pipeline: str, options: Mapping[str, Any]) -> OpenCVSource:
    """A raw GStreamer pipeline ending in appsink (needs OpenCV with GStreamer)."""
    import cv2

    opts = PipelineOptions.parse(options, source=pipeline)
    _require_gstreamer("a GStreamer pipeline")
    return OpenCVSource(pipeline, pipeline, cv2.CAP_GSTREAMER, live=True, options=opts)


def file_source(path: str, options: Mapping[str, Any], query: str = "") -> OpenCVSource:
    """A video file, decoded by FFmpeg as fast as read (``realtime=1``: at its frame rate)."""
    import cv2

    if not Path(path).exists():
        raise SourceOpenError(f"source {path}: no such file or folder")
    opts = FileOptions.parse(options, query, source=path)
    return OpenCVSource(path, str(Path(path)), cv2.CAP_FFMPEG, live=False, options=opts)


__all__ = [
    "LIVE_FFMPEG_OPTIONS", "NETWORK_SCHEMES", "NO_GSTREAMER_HINT", "OpenCVSource", "camera_source", "csi_pipeline",
    "csi_source", "file_source", "network_source", "pipeline_source",
]
