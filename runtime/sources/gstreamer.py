"""GStreamer pipelines before OpenCV opens them: is GStreamer there, are the elements installed, does it end.

OpenCV's GStreamer open has no timeout, and a pipeline whose element does not
exist (``nvarguscamerasrc`` anywhere but a Jetson, a misspelled name) was seen to
block ``cv2.VideoCapture`` for minutes. So the elements a pipeline names are
looked up first, in GStreamer's registry: through GStreamer's introspection
(``gi``) where it is importable, else with ``gst-inspect-1.0`` (Debian's
gstreamer1.0-tools, on JetPack by default). A missing element is an error that
names it and says what installs it. Where neither can be asked, the open's
deadline (:class:`~.options.CaptureOptions` ``open_timeout_s``) still bounds it.

A pipeline that ends by itself (``num-buffers=``, ``filesrc``, a ``file://`` URI)
is :func:`finite`: its end is an :class:`~.base.EndOfStream`, not a lost camera.
"""

from __future__ import annotations

import difflib
import logging
import re
import shutil
import subprocess
import threading
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from .base import GStreamerElementError, GStreamerUnavailableError

log = logging.getLogger(__name__)

NO_GSTREAMER_HINT = (
    "this OpenCV has no GStreamer support (pip's opencv-python wheels are built without it); "
    "on Jetson use JetPack's system OpenCV (apt python3-opencv, and pip uninstall opencv-python "
    "opencv-python-headless in this environment), or read the camera as /dev/videoN through V4L2"
)

# what installs an element (Debian/Ubuntu/JetPack package names); the rest get the closest name or a generic hint
_JETSON = ("NVIDIA's Jetson elements, installed with JetPack (nvidia-l4t-gstreamer) and only there; on other machines "
           "read a USB camera as /dev/videoN (V4L2) or through a v4l2src pipeline")
_PACKAGES = {
    "gstreamer1.0-plugins-base": ("appsink", "appsrc", "videoconvert", "videoscale", "videorate", "videotestsrc",
                                  "decodebin", "uridecodebin", "playbin", "audioconvert", "tcpclientsrc",
                                  "tcpserversrc", "oggdemux", "theoradec", "encodebin"),
    "gstreamer1.0-plugins-good": ("v4l2src", "rtspsrc", "rtph264depay", "rtph265depay", "rtpjpegdepay",
                                  "rtph264pay", "udpsrc", "souphttpsrc", "jpegdec", "jpegenc", "qtdemux",
                                  "matroskademux", "avidemux", "multifilesrc", "rtpbin", "flvdemux", "multipartdemux",
                                  "pngdec"),
    "gstreamer1.0-plugins-bad": ("h264parse", "h265parse", "rtmpsrc", "srtsrc", "tsdemux", "webrtcbin",
                                 "vah264dec", "nvh264dec"),
    "gstreamer1.0-plugins-ugly": ("x264enc", "mpeg2dec"),
    "gstreamer1.0-libav": ("avdec_h264", "avdec_h265", "avdec_mjpeg", "avdec_mpeg4", "avdec_mpeg2video"),
}
_JETSON_ELEMENTS = ("nvarguscamerasrc", "nvvidconv", "nvv4l2decoder", "nvv4l2h264enc", "nvv4l2h265enc", "nvjpegdec",
                    "nvjpegenc", "nvvideoconvert", "nvv4l2camerasrc", "nvegltransform", "nvstreammux", "nvinfer")
_KNOWN = {name: pkg for pkg, names in _PACKAGES.items() for name in names}

_REGISTRY_LOCK = threading.Lock()
_REGISTRY: Optional[Tuple[Any, ...]] = None


def opencv_has_gstreamer() -> bool:
    """Whether this process's OpenCV was built with GStreamer (``cv2.getBuildInformation()``)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def require_gstreamer(what: str) -> None:
    if not opencv_has_gstreamer():
        raise GStreamerUnavailableError(f"{what} needs GStreamer, but {NO_GSTREAMER_HINT}")


def elements(pipeline: str) -> List[str]:
    """The element factory names a ``gst-launch`` style pipeline uses, in order (caps, properties and pad
    references such as ``t.`` or ``demux.video_0`` skipped)."""
    names: List[str] = []
    for segment in pipeline.split("!"):
        words = segment.replace("(", " ").replace(")", " ").split()
        if not words:
            continue
        word = words[0]
        if "/" in word or "=" in word or "." in word or "," in word or not re.match(r"^[A-Za-z][\w-]*$", word):
            continue
        if word not in names:
            names.append(word)
    return names


def finite(pipeline: str) -> bool:
    """Whether the pipeline ends by itself: a ``num-buffers=N`` (N >= 0), a ``filesrc``, a ``multifilesrc`` that
    does not loop, or a ``file://`` URI. (A pipeline is a guess; the ``finite`` option decides when given.)"""
    if re.search(r"\bnum-buffers\s*=\s*\d", pipeline):
        return True
    names = elements(pipeline)
    if "filesrc" in names or re.search(r"\buri\s*=\s*\"?file:", pipeline):
        return True
    if "multifilesrc" in names and not re.search(r"\bloop\s*=\s*(true|1|yes)\b", pipeline, re.IGNORECASE):
        return True
    return False


def registry(timeout: float = 10.0) -> Optional[Tuple[FrozenSet[str], str]]:
    """(element names GStreamer knows, how we asked), or None where it cannot be asked. Cached per process."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = _ask_gi() or _ask_gst_inspect(timeout) or ()  # (): cannot be asked; not asked again
        return _REGISTRY or None


def _ask_gi() -> Optional[Tuple[FrozenSet[str], str]]:
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError):
        return None
    try:
        Gst.init(None)
        names = frozenset(f.get_name() for f in Gst.Registry.get().get_feature_list(Gst.ElementFactory))
    except Exception as exc:  # introspection present but unusable
        log.debug("GStreamer registry through gi failed: %s", exc)
        return None
    return (names, "GStreamer's registry through gi") if names else None


def _ask_gst_inspect(timeout: float) -> Optional[Tuple[FrozenSet[str], str]]:
    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool], capture_output=True, text=True, timeout=timeout, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("gst-inspect-1.0 failed: %s", exc)
        return None
    names = frozenset(m.group(1) for m in re.finditer(r"^[^\s:][^:]*:\s+([^\s:]+):", out, re.MULTILINE))
    return (names, "gst-inspect-1.0") if names else None


def hints(missing: List[str], known: FrozenSet[str] = frozenset()) -> str:
    """What to do about missing elements: the package that has them, or the closest installed name."""
    jetson = [n for n in missing if n in _JETSON_ELEMENTS]
    by_package: Dict[str, List[str]] = {}
    for n in missing:
        if n in _KNOWN:
            by_package.setdefault(_KNOWN[n], []).append(n)
    parts = []
    if jetson:
        parts.append(f"{_names(jetson)} {'is' if len(jetson) == 1 else 'are'} {_JETSON}")
    for package, names in by_package.items():
        parts.append(f"{_names(names)} {'is' if len(names) == 1 else 'are'} in {package} (apt-get install {package})")
    candidates = sorted(known | set(_KNOWN) | set(_JETSON_ELEMENTS))
    for n in missing:
        if n in _JETSON_ELEMENTS or n in _KNOWN:
            continue
        close = difflib.get_close_matches(n, candidates, n=1, cutoff=0.75)
        parts.append(f"{n!r}: did you mean {close[0]!r}?" if close else
                     f"{n!r}: no installed plugin provides it; check the spelling, or install the plugin that does "
                     "(gst-inspect-1.0 lists the installed elements)")
    return "; ".join(parts)


def _names(names: List[str]) -> str:
    return " and ".join(repr(n) for n in names)


def check_elements(what: str, pipeline: str, timeout: float = 10.0) -> None:
    """Raise :class:`GStreamerElementError` naming every element of ``pipeline`` that GStreamer lacks.

    Does nothing where the registry cannot be asked (then the open's deadline bounds the wait)."""
    reg = registry(timeout)
    if reg is None:
        log.debug("%s: cannot list GStreamer's elements (no gi, no gst-inspect-1.0); not checked", what)
        return
    known, how = reg
    missing = [n for n in elements(pipeline) if n not in known]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise GStreamerElementError(
            f"{what}: GStreamer has no element{plural} {_names(missing)} (asked {how}), so the pipeline cannot "
            f"start: {hints(missing, known)}", missing)


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The nvarguscamerasrc pipeline for Jetson CSI cameras (BGR frames into appsink)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={fps}/1 ! nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
            "video/x-raw,format=BGR ! appsink drop=1 max-buffers=1")


__all__ = ["NO_GSTREAMER_HINT", "check_elements", "csi_pipeline", "elements", "finite", "hints",
           "opencv_has_gstreamer", "registry", "require_gstreamer"]
