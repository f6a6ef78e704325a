"""Typed source options: one frozen dataclass per source kind, one parser, one printer.

Modelled on jetson-utils' ``videoOptions`` (one options object, ``Parse``, ``Print``):

* every source kind declares the options it accepts as a frozen dataclass
  (:class:`SyntheticOptions`, :class:`CameraOptions`, ...), all built on the
  common :class:`SourceOptions`;
* :meth:`SourceOptions.parse` reads keyword arguments and URI query strings
  alike: strings are converted to the field's type (``fps=abc`` is an error
  naming the option, the value and what was expected) and unknown names are an
  error naming the option, suggesting the closest known one and listing what the
  kind accepts (``synthetic://?sped=0`` no longer runs paced at speed 1);
* :meth:`SourceOptions.describe` prints the resolved options on one line in the
  form the parser reads back (``fps=15.0 speed=0.0 loop=false ...``); every
  source logs it when it opens.

Command lines pass options through as strings: ``--source-option KEY=VALUE``
becomes ``open_source(uri, **parse_option_pairs(values))`` (or the
``source_options`` of a ``Recognizer``), converted and checked here exactly like a
URI query. Imports nothing heavy (no numpy, no OpenCV).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Optional, Tuple
from urllib.parse import parse_qsl

from aknet_edge.errors import ConfigError
from aknet_edge.redact import redact
from aknet_edge.sampling import FOLDER_FPS

_TRUE = ("1", "true", "yes", "on", "")  # "" : a bare flag in a query (``?loop``)
_FALSE = ("0", "false", "no", "off")
_UNSET = ("none", "auto", "default")  # strings that mean "the kind's default" for optional options


class SourceOptionError(ConfigError):
    """A source option is unknown to its source kind, or its value has the wrong type or range."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff for lost live sources; ``max_attempts=None`` retries forever."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    max_attempts: Optional[int] = None

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ConfigError(f"reconnect policy {self}: expected 0 < initial_s <= max_s and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect ``attempt`` (1, 2, ...): ``initial_s * factor**(attempt-1)``, never more
        than ``max_s``, however long the source has been gone."""
        try:
            return min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        except OverflowError:  # factor**n leaves float range after ~1000 attempts (hours at the cap): long capped
            return self.max_s


# --------------------------------------------------------------------------- field declarations


def _opt(default: Any, type_: str, doc: str, *, optional: bool = False, minimum: float | None = None,
         above: float | None = None, maximum: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A declared option: its type (int, float, bool, str, pairs), range and one-line help."""
    return field(default=default, metadata={"type": type_, "doc": doc, "optional": optional, "min": minimum,
                                            "gt": above, "max": maximum, "choices": choices})


def _expected(meta: Mapping[str, Any]) -> str:
    what = {"int": "an integer", "float": "a finite number", "bool": "a boolean (1/0, true/false, yes/no, on/off)",
            "str": "one of " + "/".join(meta["choices"]) if meta["choices"] else "a string",
            "pairs": "KEY=VALUE pairs separated by commas (or a dict)"}[meta["type"]]
    bounds = []
    if meta["gt"] is not None:
        bounds.append(f"> {meta['gt']:g}")
    if meta["min"] is not None:
        bounds.append(f">= {meta['min']:g}")
    if meta["max"] is not None:
        bounds.append(f"<= {meta['max']:g}")
    if bounds:
        what += " " + " and ".join(bounds)
    if meta["optional"]:
        what += ", or auto"
    return what


def _convert(kind: str, name: str, value: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` (typed, or a string from a URI or a command line) as the declared type, range-checked."""
    type_ = meta["type"]

    def bad(why: str = "") -> SourceOptionError:
        return SourceOptionError(f"{kind} source option {name}={value!r}: expected {_expected(meta)}{why}")

    text = value.strip() if isinstance(value, str) else None
    if meta["optional"] and (value is None or (text is not None and text.lower() in _UNSET)):
        return None
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise bad()
    if type_ == "pairs":
        return _pairs(value, bad)
    if type_ == "str":
        if text is None:
            raise bad()
        if meta["choices"]:
            match = [c for c in meta["choices"] if c.lower() == text.lower()]
            if not match:
                raise bad()
            return match[0]
        return text
    # numbers
    if isinstance(value, bool):
        raise bad()
    number: float
    if isinstance(value, (int, float)):
        number = value
    elif text is not None:
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise bad() from None
    else:
        raise bad()
    if not math.isfinite(number):
        raise bad()
    if type_ == "int":
        if number != int(number):
            raise bad()
        number = int(number)
    else:
        number = float(number)
    if ((meta["gt"] is not None and not number > meta["gt"]) or (meta["min"] is not None and number < meta["min"])
            or (meta["max"] is not None and number > meta["max"])):
        raise bad(f" ({meta['doc']})")
    return number


def _pairs(value: Any, bad: Any) -> Tuple[Tuple[str, str], ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, eq, val = part.partition("=")
            if not eq or not key.strip():
                raise bad()
            items.append((key.strip(), val.strip()))
    elif isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        items = list(value)
    else:
        raise bad()
    return tuple((str(k), str(v)) for k, v in items)


def _show(value: Any) -> str:
    """A value as the parser reads it back."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(f"{k}={v}" for k, v in value) or "none"
    return str(value)


# --------------------------------------------------------------------------- the options family


@dataclass(frozen=True)
class SourceOptions:
    """Options every source accepts. Subclasses add their kind's options; ``kind`` names it in messages.

    Construct directly (values are converted and checked as in :meth:`parse`) or with :meth:`parse`.
    """

    kind = "source"

    buffer_size: int = _opt(4, "int", "frames kept; when full the oldest is dropped, or the reader waits (block)",
                            minimum=1)
    block: Optional[bool] = _opt(None, "bool", "wait for the reader instead of dropping frames (auto: files and "
                                               "folders wait, live sources drop)", optional=True)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _convert(self.kind, f.name, getattr(self, f.name), f.metadata))
        self._check()

    def _check(self) -> None:
        """Checks that span several options (subclasses)."""

    # -- parse
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options this kind accepts, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None = None, query: str = "", *, source: str = "") -> SourceOptions:
        """Options from a URI query string and keyword arguments (these win), converted and checked.

        Keys may use ``-`` for ``_`` (``buffer-size=2``). ``source`` prefixes error messages.
        Raises :class:`SourceOptionError` (a :class:`~aknet_edge.errors.ConfigError`) naming the option.
        """
        given: Dict[str, Any] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            given[key] = value
        given.update(options or {})
        given = {str(k).replace("-", "_") if isinstance(k, str) else k: v for k, v in given.items()}
        prefix = f"{source}: " if source else ""
        try:
            given = cls._aliases(given)
            unknown = [k for k in given if k not in cls.names()]
            if unknown:
                raise SourceOptionError("; ".join(cls._unknown(k) for k in unknown)
                                        + f"; {cls.kind} sources accept {', '.join(sorted(cls.names()))}")
            return cls(**given)
        except SourceOptionError as exc:
            raise SourceOptionError(f"{prefix}{exc}") from None

    @classmethod
    def _aliases(cls, given: Dict[str, Any]) -> Dict[str, Any]:
        """Other spellings of options (subclasses)."""
        return given

    @classmethod
    def _unknown(cls, key: Any) -> str:
        msg = f"unknown {cls.kind} source option {key!r}"
        elsewhere = sorted(c.kind for c in OPTION_CLASSES if key in c.names())
        if elsewhere:
            return msg + f" (an option of {', '.join(elsewhere)} sources)"
        close = difflib.get_close_matches(str(key), cls.names(), n=1, cutoff=0.6)
        if close:
            return msg + f" (did you mean {close[0]!r}?)"
        return msg

    # -- print
    def items(self) -> list[tuple[str, Any]]:
        """(name, value) pairs, the kind's own options first, then the common ones."""
        common = [n for n in CaptureOptions.names() if n in self.names()]
        own = [n for n in self.names() if n not in common]
        return [(n, getattr(self, n)) for n in own + common]

    def describe(self) -> str:
        """One line, ``name=value`` separated by spaces, in the form :meth:`parse` reads back (for logs: a
        secret-named value, e.g. an FFmpeg option ``password``, is masked)."""
        return redact(" ".join(f"{k}={_show(v)}" for k, v in self.items()))

    def to_query(self) -> str:
        return "&".join(f"{k}={_show(v)}" for k, v in self.items())

    def updated(self, **changes: Any) -> SourceOptions:
        """A copy with ``changes`` (checked like everything else)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class LiveOptions(SourceOptions):
    """Common options plus the reconnect policy of live sources (and of :class:`Source` subclasses).

    ``reconnect=ReconnectPolicy(...)`` is accepted by :meth:`parse` in place of the four ``reconnect_*``.
    """

    kind = "live"

    reconnect_initial_s: float = _opt(0.5, "float", "first reconnect delay, seconds", above=0)
    reconnect_max_s: float = _opt(10.0, "float", "longest reconnect delay, seconds", above=0)
    reconnect_factor: float = _opt(2.0, "float", "delay growth per failed attempt", minimum=1)
    reconnect_max_attempts: Optional[int] = _opt(None, "int", "attempts before giving up (auto: forever)",
                                                 optional=True, minimum=1)

    def _check(self) -> None:
        super()._check()
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise SourceOptionError(f"{self.kind} source options reconnect_initial_s={self.reconnect_initial_s} "
                                    f"reconnect_max_s={self.reconnect_max_s}: expected reconnect_initial_s <= "
                                    "reconnect_max_s")

    @property
    def reconnect(self) -> ReconnectPolicy:
        return ReconnectPolicy(self.reconnect_initial_s, self.reconnect_max_s, self.reconnect_factor,
                               self.reconnect_max_attempts)

    @classmethod
    def _aliases(cls, given: Dict[str, Any]) -> Dict[str, Any]:
        given = super()._aliases(given)
        if "reconnect" not in given:
            return given
        given = dict(given)
        policy = given.pop("reconnect")
        if policy is None:
            return given
        if not isinstance(policy, ReconnectPolicy):
            raise SourceOptionError(f"{cls.kind} source option reconnect={policy!r}: expected a ReconnectPolicy; in a "
                                    "URI or on a command line give reconnect_initial_s, reconnect_max_s, "
                                    "reconnect_factor, reconnect_max_attempts")
        clash = sorted(k for k in given if k.startswith("reconnect_"))
        if clash:
            raise SourceOptionError(f"{cls.kind} source options reconnect and {', '.join(clash)}: give the policy "
                                    "one way, not both")
        given.update(reconnect_initial_s=policy.initial_s, reconnect_max_s=policy.max_s,
                     reconnect_factor=policy.factor, reconnect_max_attempts=policy.max_attempts)
        return given


@dataclass(frozen=True)
class CaptureOptions(LiveOptions):
    """Live sources read through OpenCV (cameras, network streams, GStreamer): timeouts and corrupt frames.

    Not a kind of its own; :class:`CameraOptions`, :class:`CsiOptions`, :class:`NetworkOptions` and
    :class:`PipelineOptions` build on it. Opening and every read are bounded: FFmpeg (network streams)
    through OpenCV's own timeouts, V4L2 and GStreamer by running the capture on a thread that is given up
    on at the deadline (OpenCV's GStreamer open has no timeout and was seen to hang for minutes).
    """

    kind = "capture"

    open_timeout_s: float = _opt(5.0, "float", "seconds to wait for the source to open", above=0)
    read_timeout_s: float = _opt(3.0, "float", "seconds a read may block before the source counts as lost",
                                 above=0)
    max_corrupt_in_row: int = _opt(
        10, "int", "frames in a row that fail to decode and are skipped (counted in stats().corrupt) before the "
                   "source counts as lost and reconnects; 0: reconnect at the first", minimum=0)


@dataclass(frozen=True)
class CameraOptions(CaptureOptions):
    """A V4L2 camera (``0``, ``/dev/video0``, ``v4l2:///dev/video0``): the mode asked of the driver."""

    kind = "camera"

    width: Optional[int] = _opt(None, "int", "capture width asked of the camera (auto: its default)",
                                optional=True, minimum=1)
    height: Optional[int] = _opt(None, "int", "capture height asked of the camera", optional=True, minimum=1)
    fps: Optional[float] = _opt(None, "float", "frame rate asked of the camera", optional=True, above=0)


@dataclass(frozen=True)
class CsiOptions(CaptureOptions):
    """A Jetson CSI camera (``csi://N``) through nvarguscamerasrc: the pipeline's mode."""

    kind = "csi"

    open_timeout_s: float = _opt(10.0, "float", "seconds to wait for the camera pipeline to start (Argus can take "
                                                "a few)", above=0)
    read_timeout_s: float = _opt(5.0, "float", "seconds a read may block before the camera counts as lost",
                                 above=0)

    width: int = _opt(1280, "int", "sensor mode width", minimum=1)
    height: int = _opt(720, "int", "sensor mode height", minimum=1)
    fps: int = _opt(30, "int", "sensor frame rate", minimum=1)
    flip: int = _opt(0, "int", "nvvidconv flip-method (0 none, 2 rotate 180, ...)", minimum=0, maximum=7)


RTSP_TRANSPORTS = ("tcp", "udp")


@dataclass(frozen=True)
class NetworkOptions(CaptureOptions):
    """A network stream (rtsp://, http(s)://, udp://, ...) through OpenCV's FFmpeg.

    Its URL's query belongs to the stream, so these come only as keyword arguments. FFmpeg's options
    are merged, lowest first: our low-latency defaults for live streams (replaced as a whole by an
    explicit ``ffmpeg_options``), the user's ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (never overwritten),
    ``ffmpeg_options``, then ``rtsp_transport``.
    """

    kind = "network"

    rtsp_transport: Optional[str] = _opt(
        None, "str", "RTSP lower transport: tcp (interleaved; through NAT, firewalls and lossy Wi-Fi) or udp (RTP "
                     "over UDP; lower latency on a clean LAN). auto: tcp, unless OPENCV_FFMPEG_CAPTURE_OPTIONS or "
                     "ffmpeg_options name one; rtsp:// only", optional=True, choices=RTSP_TRANSPORTS)
    ffmpeg_options: Optional[Tuple[Tuple[str, str], ...]] = _opt(
        None, "pairs", "FFmpeg demuxer options, e.g. fflags=nobuffer,probesize=32768 (auto: low-latency defaults)",
        optional=True)

    def _check(self) -> None:
        super()._check()
        given = dict(self.ffmpeg_options or ())
        if self.rtsp_transport is not None and given.get("rtsp_transport", self.rtsp_transport) != \
                self.rtsp_transport:
            raise SourceOptionError(f"network source options rtsp_transport={self.rtsp_transport} and "
                                    f"ffmpeg_options=rtsp_transport={given['rtsp_transport']}: give the transport "
                                    "one way, not both")


@dataclass(frozen=True)
class PipelineOptions(CaptureOptions):
    """A raw GStreamer pipeline (any string with ``!``): the pipeline itself says everything else."""

    kind = "gstreamer"

    finite: Optional[bool] = _opt(
        None, "bool", "the pipeline ends (num-buffers=, filesrc, a file:// uri): its end is an EndOfStream, as a "
                      "file's, and it is read like a file; false: a live pipeline, reconnected when it stops. auto: "
                      "decided from the pipeline", optional=True)
    open_timeout_s: float = _opt(10.0, "float", "seconds to wait for the pipeline to start (OpenCV's GStreamer open "
                                                "has no timeout of its own)", above=0)
    read_timeout_s: float = _opt(5.0, "float", "seconds a read may block before the pipeline counts as stalled",
                                 above=0)


@dataclass(frozen=True)
class FileOptions(SourceOptions):
    """A video file (finite; the reader blocks instead of dropping unless ``block=0``)."""

    kind = "file"

    realtime: bool = _opt(False, "bool", "pace frames at the file's frame rate instead of as fast as decoded")
    open_timeout_s: float = _opt(5.0, "float", "seconds to wait for the file to open", above=0)
    read_timeout_s: float = _opt(3.0, "float", "seconds a read may block", above=0)
    ffmpeg_options: Optional[Tuple[Tuple[str, str], ...]] = _opt(
        None, "pairs", "FFmpeg demuxer options (auto: none)", optional=True)


@dataclass(frozen=True)
class FolderOptions(SourceOptions):
    """A folder of images, sorted by name, as a finite stream."""

    kind = "folder"

    fps: float = _opt(FOLDER_FPS, "float", "frame rate that gives the images their media time (training reads "
                                           "frame folders at the same default)", above=0)


@dataclass(frozen=True)
class SyntheticOptions(SourceOptions):
    """``synthetic://``: the synthetic action generator as a camera, with ground-truth segments."""

    kind = "synthetic"

    seed: int = _opt(1, "int", "scene and action plan seed", minimum=0)
    fps: float = _opt(15.0, "float", "frame rate", above=0)
    segments: int = _opt(6, "int", "actions before the stream ends (or loops)", minimum=1)
    size: int = _opt(112, "int", "frame side in pixels", minimum=16)
    speed: float = _opt(1.0, "float", "pace as a multiple of real time; 0 = unpaced", minimum=0)
    loop: bool = _opt(False, "bool", "start over after the last segment instead of ending")
    seg_min: float = _opt(2.0, "float", "shortest action, seconds", above=0)
    seg_max: float = _opt(3.0, "float", "longest action, seconds", above=0)

    def _check(self) -> None:
        super()._check()
        if self.seg_max < self.seg_min:
            raise SourceOptionError(f"synthetic source options seg_min={self.seg_min} seg_max={self.seg_max}: "
                                    "expected seg_min <= seg_max")


@dataclass(frozen=True)
class ArrayOptions(SourceOptions):
    """Frames already in memory (:class:`ArraySource`), replayed as a finite stream."""

    kind = "array"

    fps: float = _opt(15.0, "float", "frame rate that gives the frames their media time", above=0)
    color: str = _opt("RGB", "str", "channel order of the frames", choices=("RGB", "BGR"))
    repeat: int = _opt(1, "int", "times the frames are played", minimum=1)
    speed: float = _opt(0.0, "float", "pace as a multiple of real time; 0 = unpaced", minimum=0)


@dataclass(frozen=True)
class RosbagOptions(SourceOptions):
    """``rosbag2://BAG?topic=/camera/image_raw``: one image topic of a rosbag2 bag (MCAP or SQLite3), finite."""

    kind = "rosbag2"

    topic: Optional[str] = _opt(None, "str", "image topic (sensor_msgs/Image or CompressedImage; auto: the bag's "
                                             "only image topic)", optional=True)
    speed: float = _opt(0.0, "float", "pace as a multiple of the recorded time; 0 = unpaced", minimum=0)


OPTION_CLASSES: tuple[type[SourceOptions], ...] = (
    CameraOptions, CsiOptions, NetworkOptions, PipelineOptions, FileOptions, FolderOptions, SyntheticOptions,
    ArrayOptions, RosbagOptions)


# --------------------------------------------------------------------------- command lines


def parse_option_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["buffer_size=2", "speed=0"]`` (e.g. repeated ``--source-option KEY=VALUE``) as a dict of strings.

    Pass the result to :func:`open_source` (or a Recognizer's ``source_options``), which converts and
    checks the values for the source's kind. A later repeat of a key wins.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = str(pair).partition("=")
        if not eq or not key.strip():
            raise SourceOptionError(f"source option {pair!r}: expected KEY=VALUE (e.g. buffer_size=2)")
        out[key.strip()] = value.strip()
    return out


def usage() -> str:
    """Every source kind's options with their defaults and help, for ``--help`` texts."""
    lines = []
    for cls in OPTION_CLASSES:
        lines.append(f"{cls.kind}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for f in fields(cls):
            lines.append(f"  {f.name}={_show(f.default)}  {f.metadata['doc']} ({_expected(f.metadata)})")
    return "\n".join(lines)


__all__ = [
    "ArrayOptions", "CameraOptions", "CaptureOptions", "CsiOptions", "FileOptions", "FolderOptions", "LiveOptions",
    "NetworkOptions", "OPTION_CLASSES", "PipelineOptions", "RTSP_TRANSPORTS", "ReconnectPolicy", "RosbagOptions",
    "SourceOptionError", "SourceOptions", "SyntheticOptions", "parse_option_pairs", "usage",
]
