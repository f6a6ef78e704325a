"""One URI for every video source, read by a capture thread into a bounded buffer.

URIs understood by :func:`open_source` (one module per kind of source):

* ``0`` / ``"0"`` / ``/dev/video0`` / ``v4l2:///dev/video0`` -- V4L2 through OpenCV (:mod:`.capture`)
* ``csi://0`` -- Jetson CSI camera through nvarguscamerasrc (needs OpenCV with GStreamer)
* ``rtsp://``, ``http(s)://`` (MJPEG), ``udp://`` -- network streams through OpenCV's FFmpeg
* a video file (or ``file://``), a folder of images (:mod:`.folder`)
* a raw GStreamer pipeline (any string containing ``!``; :mod:`.gstreamer` checks its elements
  before OpenCV opens it, and one that ends by itself, ``num-buffers=`` or ``filesrc``, ends
  like a file)
* ``synthetic://?seed=1&fps=15&segments=6&size=112`` -- the synthetic action generator
  (:mod:`.synthetic`), paced at its frame rate (``speed=`` multiplies it, ``speed=0`` is
  unpaced), with its ground-truth :attr:`Source.segments`
* ``rosbag2://BAG?topic=/camera/image_raw`` -- an image topic of a rosbag2 bag, MCAP or
  SQLite3 (:mod:`.rosbag`; needs ``pip install rosbags``); :func:`expand_source` makes one
  stream per image topic of a bag
* frames already in memory: :class:`ArraySource` (:mod:`.memory`), constructed directly

Options are typed per kind (:mod:`.options`: :class:`SyntheticOptions`,
:class:`CameraOptions`, ...) and come as keyword arguments, or in the query of the
URIs this runtime owns (``synthetic://``, ``csi://``, ``v4l2://``, ``file://``;
a network URL's query belongs to the stream). Unknown options and values of the
wrong type are a :class:`SourceOptionError` (a ConfigError) naming the option;
a source logs the options it resolved when it opens.

``read(timeout)`` returns None on timeout, raises :class:`EndOfStream` when a
file ended and :class:`SourceError` on failures. Lost live sources reconnect
with exponential backoff (:class:`ReconnectPolicy`), each wait at most
``reconnect_max_s``. Opening and reading are bounded (``open_timeout_s``,
``read_timeout_s``); a live frame that fails to decode is skipped and counted
(``stats().corrupt``), not taken for a lost stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple
from urllib.parse import urlparse

# names importable from here before the split (tests and callers use some, e.g. ConfigError, _has_gstreamer)
from aknet_edge.errors import AknetError, ConfigError, DependencyError
from aknet_edge.media import IMAGE_SUFFIXES

from .base import (
    EndOfStream,
    Frame,
    GStreamerElementError,
    GStreamerUnavailableError,
    Source,
    SourceError,
    SourceOpenError,
    SourceStats,
    UnsupportedSourceError,
)
from .capture import (
    FFMPEG_ENV,
    LIVE_FFMPEG_OPTIONS,
    NETWORK_SCHEMES,
    NO_GSTREAMER_HINT,
    OpenCVSource,
    _cv2_const,
    _has_gstreamer,
    _require_gstreamer,
    camera_source,
    csi_pipeline,
    csi_source,
    ffmpeg_capture_options,
    file_source,
    network_source,
    pipeline_source,
)
from .folder import ImageFolderSource, folder_source
from .memory import ArraySource
from .options import (
    OPTION_CLASSES,
    RTSP_TRANSPORTS,
    ArrayOptions,
    RosbagOptions,
    CameraOptions,
    CaptureOptions,
    CsiOptions,
    FileOptions,
    FolderOptions,
    LiveOptions,
    NetworkOptions,
    PipelineOptions,
    ReconnectPolicy,
    SourceOptionError,
    SourceOptions,
    SyntheticOptions,
    parse_option_pairs,
    usage,
)
from .synthetic import SyntheticSource, synthetic_source

EXPECTED_URIS = ("csi://, v4l2://, rtsp://, http(s)://, udp://, synthetic://, rosbag2://, a device /dev/videoN, a "
                 "file, a folder or a GStreamer pipeline")


def open_source(uri: str | int, *, start: bool = True, **options: Any) -> Source:
    """Open a source by URI (see the module docstring) and start capturing (``start=False``: not yet).

    ``options`` are the kind's (:mod:`.options`); values may be typed or strings (a command line's
    ``--source-option KEY=VALUE``, through :func:`parse_option_pairs`), and override the URI's query.
    Common: ``buffer_size`` (frames kept, newest win), ``block`` (wait instead of dropping; default
    for files and folders). Live sources: ``reconnect`` (:class:`ReconnectPolicy`) or
    ``reconnect_initial_s``/``reconnect_max_s``/``reconnect_factor``/``reconnect_max_attempts``,
    ``open_timeout_s``/``read_timeout_s``, ``max_corrupt_in_row``.
    Cameras: ``width``/``height``/``fps``; csi: those and ``flip``; files: ``realtime`` to pace at
    their frame rate, ``open_timeout_s``/``read_timeout_s``; network streams and files:
    ``ffmpeg_options`` (merged with the user's ``OPENCV_FFMPEG_CAPTURE_OPTIONS``; live network streams
    default to :data:`LIVE_FFMPEG_OPTIONS`); rtsp://: ``rtsp_transport`` (``tcp``, the default, or
    ``udp``); GStreamer pipelines: ``finite``. Unknown options raise :class:`SourceOptionError`.
    """
    src = _make_source(uri, options)
    if start:
        src.start()
    return src


# --------------------------------------------------------------------------- dispatch by scheme


def _synthetic(uri: str, parsed: Any, options: Dict[str, Any]) -> Source:
    return synthetic_source(uri, options, parsed.query)


def _csi(uri: str, parsed: Any, options: Dict[str, Any]) -> Source:
    return csi_source(uri, parsed.netloc or parsed.path.strip("/") or "0", options, parsed.query)


def _rosbag(uri: str, parsed: Any, options: Dict[str, Any]) -> Source:
    from .rosbag import rosbag_source  # rosbags is optional: imported only for rosbag2:// URIs

    return rosbag_source(uri, options, parsed.query)


def expand_source(name: str, uri: str, explicit: bool = False) -> List[Tuple[str, str]]:
    """The streams one source argument stands for: itself, or one per image topic of a ``rosbag2://`` bag (see
    :func:`.rosbag.expand_rosbag`; ``explicit``: the user named it, so several topics are named ``name.topic``)."""
    if isinstance(uri, str) and urlparse(uri.strip()).scheme.lower() == "rosbag2":
        from .rosbag import expand_rosbag

        return expand_rosbag(name, uri.strip(), explicit)
    return [(name, uri)]


def _network(uri: str, parsed: Any, options: Dict[str, Any]) -> Source:
    return network_source(uri, options)


def _local(uri: str, parsed: Any, options: Dict[str, Any]) -> Source:
    """``v4l2:///dev/video0`` and ``file:///path``: a local path, with our options in the query."""
    path = parsed.path if parsed.scheme.lower() == "file" else (parsed.path or parsed.netloc)
    return _path_source(path, options, parsed.query)


SCHEMES: Dict[str, Callable[[str, Any, Dict[str, Any]], Source]] = {
    "synthetic": _synthetic, "csi": _csi, "v4l2": _local, "file": _local, "rosbag2": _rosbag,
    **{scheme: _network for scheme in NETWORK_SCHEMES},
}


def _path_source(path: str, options: Dict[str, Any], query: str = "") -> Source:
    if path.startswith("/dev/video"):
        return camera_source(path, options, query)
    if Path(path).is_dir():
        return folder_source(path, options, query)
    return file_source(path, options, query)


def _make_source(uri: str | int, options: Dict[str, Any]) -> Source:
    if isinstance(uri, bool):
        raise UnsupportedSourceError(f"source {uri!r}: expected a URI string or a camera index")
    if isinstance(uri, int) or (isinstance(uri, str) and uri.strip().isdigit()):
        return camera_source(int(uri), options)
    if not isinstance(uri, str) or not uri.strip():
        raise UnsupportedSourceError(f"source {uri!r}: expected a URI such as csi://0, /dev/video0, rtsp://..., "
                                     "a video file, an image folder or synthetic://")
    uri = uri.strip()
    if "!" in uri:
        return pipeline_source(uri, options)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in SCHEMES:
        return SCHEMES[scheme](uri, parsed, options)
    if scheme and len(scheme) > 1:  # one letter: a Windows drive
        raise UnsupportedSourceError(f"source {uri}: unknown scheme {scheme}://; expected {EXPECTED_URIS}")
    return _path_source(uri, options)


__all__ = [
    "FFMPEG_ENV", "RTSP_TRANSPORTS", "ArrayOptions", "ArraySource", "CameraOptions", "CaptureOptions", "CsiOptions",
    "EndOfStream", "FileOptions", "RosbagOptions", "expand_source", "FolderOptions", "Frame", "GStreamerElementError", "GStreamerUnavailableError",
    "ImageFolderSource", "LiveOptions", "NetworkOptions", "OpenCVSource", "PipelineOptions", "ReconnectPolicy",
    "Source", "SourceError", "SourceOpenError", "SourceOptionError", "SourceOptions", "SourceStats",
    "SyntheticOptions", "SyntheticSource", "UnsupportedSourceError", "csi_pipeline", "ffmpeg_capture_options",
    "open_source", "parse_option_pairs",
]
