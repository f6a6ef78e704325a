"""The ROS 2 node's parameters: one table, checked the same way at start and at run time.

Why a table apart from rclpy: ``python -m aknet_edge.ros2 --help`` lists the parameters on a machine without ROS,
the node declares each one from it with a descriptor (``ros2 param describe /aknet enter`` explains it), and one
checker (:func:`check`) turns the values into the recogniser's options or a :class:`ConfigError` naming the
parameter, what it got and what it expected. The node calls it at start (one ``error:`` line, exit 2) and for
every ``ros2 param set`` (a failed ``SetParametersResult`` carrying the same reason).

Only the event settings (thresholds, minimum duration, smoothing) change while running (``live``); the others
are read only and need a restart: they shape the subscriptions, the backend or the lanes.

Imports no rclpy (the help is printed without it) and no torch.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from aknet_edge.errors import ConfigError
from aknet_edge.package import AUTO, PRECISIONS

from ..backend_choice import BACKENDS
from ..events import SMOOTHING, EventConfig

_EV = EventConfig()
COMPRESSED_SUFFIX = "/compressed"  # image_transport's name for a topic's CompressedImage form


@dataclass(frozen=True)
class Param:
    """One parameter: its name, default (its type too), description and the range a descriptor declares."""

    name: str
    default: Any
    description: str
    live: bool = False  # may change while the node runs (ros2 param set); else read only
    choices: Tuple[str, ...] = ()
    range: Optional[Tuple[float, float]] = None  # inclusive bounds ROS checks itself (descriptor range)
    constraints: str = ""  # what else is checked, in words (descriptor additional_constraints)
    dynamic: bool = False  # several types accepted (incremental: auto, true or false)

    @property
    def kind(self) -> str:
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, int):
            return "integer"
        if isinstance(d, float):
            return "double"
        if isinstance(d, (list, tuple)):
            return "string array"
        return "string"


PARAMS: Tuple[Param, ...] = (
    Param("package", "", "model package folder (python -m aknet_edge.build --out DIR); empty: the bundled demo "
          "package, found or built as python -m aknet_edge.run does"),
    Param("image_topics", ["image"], "image topics, one stream each, named by the topic as resolved (after "
          "remapping); sensor_msgs/Image, or sensor_msgs/CompressedImage (JPEG, PNG) for a topic ending in "
          "/compressed", constraints="at least one topic, each once"),
    Param("backend", "auto", "inference backend (auto: TensorRT engines when the package has them and TensorRT is "
          "installed, else ONNX Runtime)", choices=BACKENDS),
    Param("precision", AUTO, "package variant to run (auto: the package's preference for the backend)",
          choices=(AUTO, *PRECISIONS)),
    Param("triton_url", "", "with backend triton: HOST:PORT of the Triton server's gRPC endpoint"),
    Param("threads", 0, "ONNX Runtime intra-op threads (0: every core, shared by all topics)", range=(0, 1024)),
    Param("incremental", "auto", "per-frame encoder and head (auto: when the package has the split graphs; true or "
          "false)", choices=("auto", "true", "false"), dynamic=True),
    Param("exact_incremental", True, "incremental mode: every window equals whole-clip inference (false: carried "
          "state only, cheaper)"),
    Param("stride_s", 0.0, "seconds between windows on the camera's clock (0: one sample period)",
          constraints=">= 0"),
    Param("smoothing", _EV.smoothing, "score smoothing before events", live=True, choices=SMOOTHING),
    Param("ema_alpha", _EV.ema_alpha, "smoothing ema: weight of the newest window", live=True, range=(0.0, 1.0),
          constraints="> 0"),
    Param("mean_windows", _EV.mean_windows, "smoothing mean: windows averaged", live=True, range=(1, 1000)),
    Param("enter", _EV.enter, "smoothed probability that starts an event", live=True, range=(0.0, 1.0),
          constraints="exit <= enter"),
    Param("exit", _EV.exit, "smoothed probability below which an event ends", live=True, range=(0.0, 1.0),
          constraints="exit <= enter"),
    Param("min_duration_s", _EV.min_duration_s, "seconds a start or an end must last before it counts",
          live=True, constraints=">= 0"),
    Param("source_timeout_s", 3.0, "seconds without a frame after which a topic counts as lost (its open event "
          "ends, diagnostics ERROR, a stream lost record); diagnostics say WARN from half of it", constraints="> 0"),
    Param("reliable", False, "subscribe with reliable QoS (false: sensor data QoS, best effort, which also "
          "receives reliable publishers)"),
    Param("qos_depth", 5, "subscription history depth (keep last)", range=(1, 100000)),
    Param("queue_size", 4, "images per topic waiting for recognition; when full the oldest is dropped and counted",
          range=(1, 100000)),
    Param("annotated", False, "publish each window's annotated image on ~/<topic>/annotated (sensor_msgs/Image "
          "bgr8)"),
)
BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMS}
LIVE = tuple(p.name for p in PARAMS if p.live)
EVENT_PARAMS = ("smoothing", "ema_alpha", "mean_windows", "enter", "exit", "min_duration_s")


@dataclass
class NodeSettings:
    """The checked parameters: what the node subscribes to and the recogniser's options."""

    package: str
    image_topics: List[str]
    source_timeout_s: float
    reliable: bool
    qos_depth: int
    queue_size: int
    annotated: bool
    options: Dict[str, Any] = field(default_factory=dict)  # RecognizerOptions fields
    event: EventConfig = field(default_factory=EventConfig)


def _bad(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"parameter {name}={value!r}: expected {expected}")


def _number(name: str, value: Any, *, minimum: Optional[float] = None, above: Optional[float] = None,
            whole: bool = False) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (not whole or isinstance(value, int))
    ok = ok and math.isfinite(value) and (minimum is None or value >= minimum) and (above is None or value > above)
    if not ok:
        bounds = [f">= {minimum:g}"] if minimum is not None else []
        bounds += [f"> {above:g}"] if above is not None else []
        raise _bad(name, value, f"{'a whole number' if whole else 'a finite number'} {' and '.join(bounds)}".strip())
    return value


def _choice(name: str, value: Any) -> str:
    choices = BY_NAME[name].choices
    if not isinstance(value, str) or value not in choices:
        raise _bad(name, value, "one of " + ", ".join(choices))
    return value


def incremental_value(value: Any) -> Optional[bool]:
    """The ``incremental`` parameter (bool, or the strings auto/true/false) as RecognizerOptions takes it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("auto", ""):
        return None
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad("incremental", value, "auto, true or false")


def check(values: Mapping[str, Any]) -> NodeSettings:
    """Every parameter's value (``values``: name -> value, the defaults filling what is missing) checked; the
    first mistake is a :class:`ConfigError` naming the parameter."""
    v = {p.name: values.get(p.name, p.default) for p in PARAMS}
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}; this node's parameters: {', '.join(BY_NAME)}")
    if not isinstance(v["package"], str):
        raise _bad("package", v["package"], "a folder path (a string; empty: the demo package)")
    topics = v["image_topics"]
    if not isinstance(topics, (list, tuple)) or not topics or not all(isinstance(t, str) and t.strip()
                                                                      for t in topics):
        raise _bad("image_topics", list(topics) if isinstance(topics, tuple) else topics,
                   "a non-empty list of topic names, e.g. ['/camera/image_raw']")
    topics = [t.strip() for t in topics]
    twice = sorted({t for t in topics if topics.count(t) > 1})
    if twice:
        raise _bad("image_topics", topics, f"each topic once ({twice[0]} is given twice)")
    backend, precision = _choice("backend", v["backend"]), _choice("precision", v["precision"])
    url = v["triton_url"]
    if not isinstance(url, str):
        raise _bad("triton_url", url, "HOST:PORT (a string)")
    if (backend == "triton") != bool(url.strip()):
        raise ConfigError(f"parameters backend={backend!r} and triton_url={url!r}: backend triton needs triton_url "
                          "HOST:PORT, and triton_url needs backend triton")
    if url.strip():
        from ..triton_client import parse_url

        try:
            parse_url(url)
        except ConfigError:
            raise _bad("triton_url", url, "HOST:PORT of Triton's gRPC endpoint (e.g. 127.0.0.1:8001)") from None
    threads = _number("threads", v["threads"], minimum=0, whole=True)
    incremental = incremental_value(v["incremental"])
    if not isinstance(v["exact_incremental"], bool):
        raise _bad("exact_incremental", v["exact_incremental"], "true or false")
    stride = _number("stride_s", v["stride_s"], minimum=0)
    event = event_config(v)
    timeout = _number("source_timeout_s", v["source_timeout_s"], above=0)
    for name in ("reliable", "annotated"):
        if not isinstance(v[name], bool):
            raise _bad(name, v[name], "true or false")
    depth = _number("qos_depth", v["qos_depth"], minimum=1, whole=True)
    queue = _number("queue_size", v["queue_size"], minimum=1, whole=True)
    options: Dict[str, Any] = dict(backend=backend, precision=precision, threads=threads or None,
                                   incremental=incremental, exact_incremental=v["exact_incremental"],
                                   stride_s=stride or None, triton_url=url.strip() or None,
                                   **{f: getattr(event, f) for f in EVENT_PARAMS})
    return NodeSettings(v["package"], topics, float(timeout), v["reliable"], depth, queue, v["annotated"], options,
                        event)


def event_config(values: Mapping[str, Any]) -> EventConfig:
    """The event settings among ``values`` (defaults for the missing ones), checked."""
    v = {name: values.get(name, BY_NAME[name].default) for name in EVENT_PARAMS}
    _choice("smoothing", v["smoothing"])
    for name in ("ema_alpha", "enter", "exit", "min_duration_s"):
        _number(name, v[name], minimum=0)
    _number("mean_windows", v["mean_windows"], minimum=1, whole=True)
    try:
        return EventConfig(**{**asdict(EventConfig()), **v})
    except ConfigError as exc:  # EventConfig's words: "exit=0.6, enter=0.5: expected 0 <= exit <= enter <= 1"
        raise ConfigError(f"parameters {exc}") from None


def help_text() -> str:
    """The parameters as ``--help`` lists them."""
    lines = []
    for p in PARAMS:
        default = p.default if not isinstance(p.default, bool) else str(p.default).lower()
        what = p.description + (f" ({', '.join(p.choices)})" if p.choices and not p.dynamic else "")
        lines.append(f"  {p.name} ({p.kind}, default {default!r}{', live' if p.live else ''})")
        lines += textwrap.wrap(what, 100, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


__all__ = ["BY_NAME", "COMPRESSED_SUFFIX", "EVENT_PARAMS", "LIVE", "NodeSettings", "PARAMS", "Param", "check",
           "event_config", "help_text", "incremental_value"]
