"""The pipeline's outputs as ROS 2 messages: results, events, diagnostics, annotated images.

Three sinks (:class:`~aknet_edge.runtime.sinks.Sink`), so one that fails (a topic name ROS refuses, say) is
switched off alone and the others go on:

* :class:`RecordsSink` -- ``~/results`` and ``~/events`` (``std_msgs/String``), one JSON Lines record per
  message, built by :mod:`..records` exactly as the JSON Lines output writes them: results on the first, events and
  the streams' lost/restored lines (and the Triton server's) on the second, whose publisher is reliable and
  transient-local with a deep history, so a late subscriber asking for transient-local gets the recent events;
* :class:`DiagnosticsSink` -- ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) about once a second (the
  pipeline's telemetry tick): one status per stream (OK while frames arrive, WARN when late or dropping, ERROR
  when lost past the timeout or in an unsupported encoding) and one for the backend;
* :class:`AnnotatedSink` -- each window's annotated frame on ``~/<topic>/annotated`` (``sensor_msgs/Image``
  bgr8), stamped with the window's time and the camera's ``frame_id``.

Every hook runs on the pipeline's head stage; rclpy publishers may be used from any thread.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .. import records
from ..sinks import Sink
from ..telemetry import ENDED, RECONNECTING

if TYPE_CHECKING:
    from ..events import ActionEvent
    from ..lane import Result
    from ..telemetry import PipelineStats, TelemetrySnapshot
    from .source import TopicSource

log = logging.getLogger(__name__)

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


def dumps(record: Dict[str, Any]) -> str:
    """One record as the JSON Lines output writes it (compact, one line)."""
    return json.dumps(record, separators=(",", ":"))


def stamp_of(seconds: float) -> Tuple[int, int]:
    """Seconds -> (sec, nanosec) of a ``builtin_interfaces/Time``."""
    ns = int(round(seconds * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


class RecordsSink(Sink):
    """Results on one topic, events and stream/server changes on another, as JSON Lines records."""

    name = "ros2 results"

    def __init__(self, results_pub: Any, events_pub: Any, string_type: Any) -> None:
        self._results, self._events, self._String = results_pub, events_pub, string_type

    def _send(self, pub: Any, record: Dict[str, Any]) -> None:
        msg = self._String()
        msg.data = dumps(record)
        pub.publish(msg)

    def result(self, result: "Result") -> None:
        self._send(self._results, records.result_record(result))

    def event(self, event: "ActionEvent") -> None:
        self._send(self._events, records.event_record(event))

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        self._send(self._events, records.stream_record(state, stream, **info))

    def server_state(self, state: str, info: Dict[str, Any]) -> None:
        self._send(self._events, records.server_record(state, info))


def stream_level(snap: "TelemetrySnapshot", source: "TopicSource", dropped_before: int) -> Tuple[int, str]:
    """One stream's diagnostic level and message from its telemetry and its source."""
    timeout = source.timeout_s
    if source.encoding_error is not None and (snap.source_state != "live" or snap.frame_age_s is None
                                              or snap.frame_age_s > timeout / 2):
        return ERROR, f"unsupported encoding: {source.encoding_error}"
    if snap.source_state == RECONNECTING:
        return ERROR, (f"lost: no frame for more than {timeout:g} s (source_timeout_s)" if snap.frames or
                       source.received else f"no frame since the start (source_timeout_s {timeout:g} s)")
    if snap.source_state == ENDED:
        return ERROR, "ended"
    age = snap.frame_age_s
    if age is None:
        return WARN, "waiting for the first frame"
    if age > timeout / 2:
        return WARN, f"late: no frame for {age:.1f} s (lost at {timeout:g} s)"
    if snap.dropped > dropped_before:
        return WARN, "dropping frames: recognition is slower than the topic (queue_size)"
    return OK, f"receiving {snap.capture_fps:.1f} fps"


def _values(snap: "TelemetrySnapshot", source: Optional["TopicSource"] = None) -> List[Tuple[str, str]]:
    keys = ("source_state", "frames", "results", "capture_fps", "inference_fps", "latency_p50_ms", "latency_p95_ms",
            "dropped", "corrupt", "skipped_windows", "reconnects", "outages", "outage_s", "frame_age_s", "state_s")
    out = []
    for k in keys:
        v = getattr(snap, k)
        out.append((k, "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)))
    if source is not None:
        out.append(("topic", source.topic))
        out.append(("received", str(source.received)))
    return out


class DiagnosticsSink(Sink):
    """``/diagnostics`` from the pipeline's telemetry: a status per stream and one for the backend."""

    name = "ros2 diagnostics"
    wants_stats = True

    def __init__(self, publisher: Any, msg_types: Mapping[str, Any], node_name: str,
                 sources: Mapping[str, "TopicSource"], backend: Callable[[], Tuple[str, str]],
                 now: Callable[[], Tuple[int, int]]) -> None:
        self._pub = publisher
        self._types = msg_types  # DiagnosticArray, DiagnosticStatus, KeyValue
        self._node = node_name
        self._sources = sources
        self._backend = backend  # () -> (what runs, its mode) for the backend's status
        self._now = now  # the node's clock as (sec, nanosec)
        self._dropped: Dict[str, int] = {}
        self.levels: Dict[str, int] = {}  # the last level of each status (by stream, and "backend")

    def _status(self, level: int, name: str, message: str, values: List[Tuple[str, str]]) -> Any:
        Status, KeyValue = self._types["DiagnosticStatus"], self._types["KeyValue"]
        st = Status()
        st.level = bytes([level])
        st.name = name
        st.message = message
        st.hardware_id = self._node
        st.values = [KeyValue(key=k, value=v) for k, v in values]
        return st

    def stats(self, stats: "PipelineStats") -> None:
        array = self._types["DiagnosticArray"]()
        array.header.stamp.sec, array.header.stamp.nanosec = self._now()
        statuses = []
        for stream, snap in stats.streams.items():
            source = self._sources.get(stream)
            if source is None:
                continue
            level, message = stream_level(snap, source, self._dropped.get(stream, snap.dropped))
            self._dropped[stream] = snap.dropped
            self.levels[stream] = level
            statuses.append(self._status(level, f"{self._node}: stream {stream}", message, _values(snap, source)))
        what, mode = self._backend()
        level, message = OK, f"{what}, {mode}"
        if stats.server is not None and str(stats.server.get("state", "live")) != "live":
            level, message = ERROR, f"{what}: server {stats.server.get('state')}"
        values = _values(stats) + [("backend", what), ("mode", mode)]
        if stats.server is not None:
            values += [(f"server_{k}", str(v)) for k, v in stats.server.items()]
        self.levels["backend"] = level
        statuses.append(self._status(level, f"{self._node}: backend", message, values))
        array.status = statuses
        self._pub.publish(array)


class AnnotatedSink(Sink):
    """Each window's annotated frame as ``sensor_msgs/Image`` bgr8 on ``~/<stream>/annotated``.

    The pipeline draws the frame just before it hands over the window's result: the frame is kept until that
    result comes, whose time stamps it.
    """

    name = "ros2 annotated images"
    wants_frames = True

    def __init__(self, make_publisher: Callable[[str], Any], image_type: Any,
                 sources: Mapping[str, "TopicSource"]) -> None:
        self._make = make_publisher
        self._Image = image_type
        self._sources = sources
        self._pubs: Dict[str, Any] = {}
        self._pending: Dict[Optional[str], np.ndarray] = {}
        self._refused: Dict[str, str] = {}

    def frame(self, stream: Optional[str], image_bgr: np.ndarray) -> None:
        self._pending[stream] = image_bgr

    def result(self, result: "Result") -> None:
        image = self._pending.pop(result.lane, None)
        if image is None or result.lane is None or result.lane in self._refused:
            return
        pub = self._pubs.get(result.lane)
        if pub is None:
            try:
                pub = self._pubs[result.lane] = self._make(result.lane)
            except Exception as exc:  # this stream's topic name: the others go on
                self._refused[result.lane] = str(exc)
                log.warning("no annotated images for stream %s: %s", result.lane, exc)
                return
        source = self._sources.get(str(result.stream))
        msg = self._Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_of(result.timestamp)
        msg.header.frame_id = source.frame_id if source is not None else ""
        image = np.ascontiguousarray(image)
        msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
        msg.encoding = "bgr8"
        msg.is_bigendian = 0
        msg.step = int(image.shape[1]) * 3
        msg.data = image.tobytes()
        pub.publish(msg)


__all__ = ["AnnotatedSink", "DiagnosticsSink", "ERROR", "OK", "RecordsSink", "WARN", "dumps", "stamp_of",
           "stream_level"]
