"""The ROS 2 node: image topics in, recognition results, events and diagnostics out (``python -m aknet_edge.ros2``).

One node, one model, one backend for every topic: each topic is a lane of a
:class:`~aknet_edge.runtime.pipeline.Pipeline` (its frames pushed into a :class:`.source.TopicSource` by the
subscription), so all cameras share batched backend calls exactly as ``python -m aknet_edge.run`` with several
sources. Outputs are sinks (:mod:`.sink`).

Threads: rclpy's executor spins on a thread of its own (subscriptions, the parameter services); the pipeline runs
its capture, inference and head threads; the main thread waits for a signal (SIGINT, SIGTERM), then stops in
order: subscriptions first, then the pipeline (open events end with reason "stopped", the last results and
events are published), then the executor, the node and rclpy. Exit 0.

Parameters (:mod:`.params`) are declared with descriptors; the event settings change live through
``ros2 param set`` (checked, then swapped in by the pipeline before its next window); a bad value is refused
with its reason. Nothing here sets ROS discovery: on a robot the user's environment decides it.
"""

from __future__ import annotations

import difflib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from aknet_edge.errors import AknetError, ConfigError, DependencyError

from ..pipeline import Pipeline, parse_options
from ..sources import EndOfStream
from . import params as P
from .sink import AnnotatedSink, DiagnosticsSink, RecordsSink
from .source import TopicSource, topic_source

log = logging.getLogger(__name__)

NODE_NAME = "aknet"
RESULTS_TOPIC, EVENTS_TOPIC, DIAGNOSTICS_TOPIC = "~/results", "~/events", "/diagnostics"
EVENTS_DEPTH = 100  # events a late transient-local subscriber gets
_SPIN_S = 0.1
_FLUSH_S = 2.0  # longest wait at shutdown for subscribers to acknowledge the last messages


def ros() -> Dict[str, Any]:
    """rclpy and the message types, or a :class:`DependencyError` that says how to get them."""
    try:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType,
                                        SetParametersResult)
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                               qos_profile_sensor_data)
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String
    except ImportError as exc:
        raise DependencyError(
            f"python -m aknet_edge.ros2 needs ROS 2's rclpy and the sensor_msgs, std_msgs and diagnostic_msgs "
            f"messages ({exc}): source your ROS 2 (source /opt/ros/humble/setup.bash) and run from a venv made "
            "with --system-site-packages after sourcing it (README: In a ROS 2 robot)") from exc
    return dict(rclpy=rclpy, DiagnosticArray=DiagnosticArray, DiagnosticStatus=DiagnosticStatus, KeyValue=KeyValue,
                FloatingPointRange=FloatingPointRange, IntegerRange=IntegerRange,
                ParameterDescriptor=ParameterDescriptor, ParameterType=ParameterType,
                SetParametersResult=SetParametersResult, SingleThreadedExecutor=SingleThreadedExecutor, Node=Node,
                DurabilityPolicy=DurabilityPolicy, HistoryPolicy=HistoryPolicy, QoSProfile=QoSProfile,
                ReliabilityPolicy=ReliabilityPolicy, qos_profile_sensor_data=qos_profile_sensor_data,
                CompressedImage=CompressedImage, Image=Image, String=String)


def _descriptor(R: Dict[str, Any], p: P.Param) -> Any:
    T = R["ParameterType"]
    kind = {"bool": T.PARAMETER_BOOL, "integer": T.PARAMETER_INTEGER, "double": T.PARAMETER_DOUBLE,
            "string": T.PARAMETER_STRING, "string array": T.PARAMETER_STRING_ARRAY}[p.kind]
    d = R["ParameterDescriptor"](name=p.name, type=kind, description=p.description, read_only=not p.live)
    extra = [f"one of {', '.join(p.choices)}"] if p.choices else []
    extra += [p.constraints] if p.constraints else []
    if not p.live:
        extra.append("read only: set it at start (--ros-args -p, --params-file)")
    d.additional_constraints = "; ".join(extra)
    if p.dynamic:
        d.type = T.PARAMETER_NOT_SET
        d.dynamic_typing = True
    elif p.range is not None and p.kind == "double":
        d.floating_point_range = [R["FloatingPointRange"](from_value=float(p.range[0]), to_value=float(p.range[1]),
                                                          step=0.0)]
    elif p.range is not None and p.kind == "integer":
        d.integer_range = [R["IntegerRange"](from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d


class _RosLogHandler(logging.Handler):
    """The toolkit's log lines through the node's logger (stderr and /rosout, ROS's format and --log-level)."""

    def __init__(self, logger: Any) -> None:
        super().__init__(logging.INFO)
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = f"{record.name}: {self.format(record)}" if record.name.startswith("aknet_edge") else \
                self.format(record)
            # one call site per severity: rclpy's logger refuses a call site whose severity changes
            if record.levelno >= logging.ERROR:
                self._logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(msg)
            elif record.levelno >= logging.INFO:
                self._logger.info(msg)
            else:
                self._logger.debug(msg)
        except Exception:  # a log line must never break recognition
            self.handleError(record)


class AknetNode:
    """The node's parts: parameters, pipeline, subscriptions, publishers (see the module docstring).

    ``default_package``: called when the ``package`` parameter is empty (the CLI's demo package).
    """

    def __init__(self, R: Dict[str, Any], context: Any, default_package: Callable[[], Path]) -> None:
        self.R = R
        self.node = R["Node"](NODE_NAME, context=context)
        self.settings = self._declare()
        self.name = self.node.get_fully_qualified_name()
        s = self.settings
        self.pipeline: Optional[Pipeline] = None
        self.sources: Dict[str, TopicSource] = {}
        self.subscriptions: List[Any] = []
        self._subscribe_qos = self._sensor_qos()
        pkg = Path(s.package).expanduser() if s.package else default_package()
        # the publishers first: the sinks open with the pipeline
        self.results_pub = self.node.create_publisher(R["String"], RESULTS_TOPIC, R["QoSProfile"](
            depth=50, reliability=R["ReliabilityPolicy"].RELIABLE))
        self.events_pub = self.node.create_publisher(R["String"], EVENTS_TOPIC, R["QoSProfile"](
            depth=EVENTS_DEPTH, reliability=R["ReliabilityPolicy"].RELIABLE,
            durability=R["DurabilityPolicy"].TRANSIENT_LOCAL, history=R["HistoryPolicy"].KEEP_LAST))
        self.diagnostics_pub = self.node.create_publisher(R["DiagnosticArray"], DIAGNOSTICS_TOPIC, 10)
        # subscriptions give the topics their resolved names (after remapping), which name the streams
        pending: List[Tuple[str, Any]] = []
        for topic in s.image_topics:
            compressed = topic.rstrip("/").endswith(P.COMPRESSED_SUFFIX)
            box: List[Optional[TopicSource]] = [None]
            try:
                sub = self.node.create_subscription(R["CompressedImage"] if compressed else R["Image"], topic,
                                                    self._callback(box), self._subscribe_qos)
            except Exception as exc:  # rclpy's InvalidTopicNameException and the like
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"parameter image_topics: {topic!r} is not a valid ROS topic name ({first})") \
                    from None
            name = sub.topic_name
            if name in self.sources:
                raise ConfigError(f"parameter image_topics: {topic!r} resolves to {name}, which another entry "
                                  "names too; give each topic once")
            box[0] = self.sources[name] = topic_source(name, timeout_s=s.source_timeout_s, queue_size=s.queue_size)
            self.subscriptions.append(sub)
            pending.append((name, box[0]))
        sinks: List[Any] = [RecordsSink(self.results_pub, self.events_pub, R["String"]),
                            DiagnosticsSink(self.diagnostics_pub, R, self.name, self.sources, self._backend_info,
                                            self._now)]
        if s.annotated:
            sinks.append(AnnotatedSink(self._annotated_publisher, R["Image"], self.sources))
        opts = parse_options("the ROS 2 node", dict(s.options, sinks=sinks))
        self.pipeline = Pipeline(pkg, pending, opts)
        self.pipeline.several = True  # every line names its topic, the backend gets every core
        self.node.add_on_set_parameters_callback(self._on_set)

    # -- parameters
    def _declare(self) -> P.NodeSettings:
        node = self.node
        for p in P.PARAMS:
            try:
                node.declare_parameter(p.name, p.default, _descriptor(self.R, p))
            except Exception as exc:  # rclpy's InvalidParameterValueException, InvalidParameterTypeException...
                raise ConfigError(f"parameter {p.name}: {exc}") from None
        overrides = getattr(node, "_parameter_overrides", {}) or {}  # what --ros-args and params files gave
        unknown = sorted(n for n in overrides if not node.has_parameter(n) and not n.startswith("qos_overrides."))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(P.BY_NAME), n=1)
            raise ConfigError(f"unknown parameter {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; this node's parameters: {', '.join(P.BY_NAME)}")
        values = {}
        for p in P.PARAMS:
            try:
                values[p.name] = node.get_parameter(p.name).value
            except Exception as exc:  # ParameterUninitializedException: an empty list has no type in ROS
                raise ConfigError(f"parameter {p.name} has no value ({type(exc).__name__}); expected a {p.kind}"
                                  + (" with at least one entry" if p.kind.endswith("array") else "")) from None
        return P.check(values)

    def _on_set(self, changes: List[Any]) -> Any:
        """``ros2 param set``: the event settings change from the next window on; anything else is refused."""
        result = self.R["SetParametersResult"](successful=True)
        mine = [c for c in changes if c.name in P.BY_NAME]
        if not mine:
            return result
        try:
            fixed = [c.name for c in mine if c.name not in P.LIVE]
            if fixed:
                raise ConfigError(f"parameter {fixed[0]} is read only while the node runs (live: "
                                  f"{', '.join(P.LIVE)}); restart the node with the new value")
            values = {n: self.node.get_parameter(n).value for n in P.EVENT_PARAMS}
            values.update({c.name: c.value for c in mine})
            cfg = P.event_config(values)
            assert self.pipeline is not None
            self.pipeline.set_event_config(**{n: getattr(cfg, n) for n in P.EVENT_PARAMS})
        except AknetError as exc:
            result.successful = False
            result.reason = str(exc)
            log.warning("refused: %s", exc)
            return result
        log.info("parameters set: %s (from the next window)", ", ".join(f"{c.name}={c.value!r}" for c in mine))
        return result

    # -- helpers the sinks call
    def _sensor_qos(self) -> Any:
        R, s = self.R, self.settings
        if s.reliable:
            return R["QoSProfile"](depth=s.qos_depth, reliability=R["ReliabilityPolicy"].RELIABLE,
                                   history=R["HistoryPolicy"].KEEP_LAST)
        base = R["qos_profile_sensor_data"]
        return R["QoSProfile"](depth=s.qos_depth, reliability=base.reliability, history=base.history,
                               durability=base.durability)

    def _callback(self, box: List[Optional[TopicSource]]) -> Callable[[Any], None]:
        clock = self.node.get_clock()

        def on_image(msg: Any) -> None:
            src = box[0]
            if src is not None:
                src.put(msg, clock.now().nanoseconds * 1e-9)
        return on_image

    def _now(self) -> Tuple[int, int]:
        ns = self.node.get_clock().now().nanoseconds
        return ns // 1_000_000_000, ns % 1_000_000_000

    def _backend_info(self) -> Tuple[str, str]:
        pipe = self.pipeline
        if pipe is None or pipe.backend is None:
            return "not open", ""
        return f"{pipe.backend.name} {pipe.backend.precision}", "incremental" if pipe.incremental else "whole clips"

    def _annotated_publisher(self, stream: str) -> Any:
        return self.node.create_publisher(self.R["Image"], f"~/{stream.strip('/')}/annotated", self.R["QoSProfile"](
            depth=2, reliability=self.R["ReliabilityPolicy"].RELIABLE))

    # -- lifecycle
    def stop_inputs(self) -> None:
        """No more frames: the subscriptions go first, so the pipeline's last results are of frames it has."""
        for sub in self.subscriptions:
            try:
                self.node.destroy_subscription(sub)
            except Exception as exc:
                log.debug("destroying a subscription failed: %s", exc)
        self.subscriptions = []

    def flush(self, timeout_s: float = _FLUSH_S) -> None:
        """Wait (bounded) until reliable subscribers acknowledged the last results and events."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        for pub in (self.results_pub, self.events_pub):
            wait = getattr(pub, "wait_for_all_acked", None)
            left = deadline - time.monotonic()
            if wait is None or left <= 0:
                continue
            try:
                wait(Duration(nanoseconds=int(left * 1e9)))
            except Exception as exc:
                log.debug("waiting for acknowledgements failed: %s", exc)


def run_node(argv: List[str], default_package: Callable[[], Path]) -> int:
    """Run the node until SIGINT or SIGTERM (then 0); ``argv``: the arguments after the program name (ROS's
    ``--ros-args ...``). Bad parameters and a missing package are a :class:`ConfigError` (the CLI's one error
    line, exit 2)."""
    R = ros()
    rclpy = R["rclpy"]
    context = rclpy.Context()
    try:
        _init(rclpy, context, argv)
    except Exception as exc:  # rclpy's RCLError on a malformed --ros-args or a params file it cannot read
        raise ConfigError(f"--ros-args: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r} (see "
                          "python -m aknet_edge.ros2 --help)") from None
    stop = threading.Event()
    aknet: Optional[AknetNode] = None
    executor = None
    spinner: Optional[threading.Thread] = None
    handler: Optional[_RosLogHandler] = None
    root = logging.getLogger()
    saved = list(root.handlers)
    old: Dict[int, Any] = {}
    try:
        leftover = rclpy.utilities.remove_ros_args(args=["aknet_edge.ros2", *argv])[1:]
        if leftover:
            raise ConfigError(f"unexpected arguments {' '.join(leftover)}: give parameters after --ros-args as "
                              "-p NAME:=VALUE or --params-file FILE (see python -m aknet_edge.ros2 --help)")
        aknet = AknetNode(R, context, default_package)
        handler = _RosLogHandler(aknet.node.get_logger())
        root.handlers = [handler]  # from here on the toolkit logs as the node
        executor = R["SingleThreadedExecutor"](context=context)
        executor.add_node(aknet.node)

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        assert aknet.pipeline is not None
        aknet.pipeline.start()

        def spin() -> None:
            while not stop.is_set() and context.ok():
                try:
                    executor.spin_once(timeout_sec=_SPIN_S)
                except Exception as exc:  # a callback's error: logged, the node goes on
                    if not context.ok():
                        return
                    log.error("executor: %s", exc)

        spinner = threading.Thread(target=spin, name="aknet-ros2-executor", daemon=True)
        spinner.start()
        log.info("recognising %s on %s; results on %s, events on %s", ", ".join(aknet.sources), aknet.name,
                 aknet.results_pub.topic_name, aknet.events_pub.topic_name)
        pipe = aknet.pipeline
        while not stop.is_set():
            try:
                pipe.next_result(timeout=0.2)  # the sinks publish; this keeps the result queue drained
            except EndOfStream:
                break
        return 0
    finally:
        stop.set()
        if aknet is not None:
            aknet.stop_inputs()
            if aknet.pipeline is not None:
                aknet.pipeline.close()  # open events end ("stopped"), the last results go out, the backend closes
            aknet.flush()
        if spinner is not None:
            spinner.join(5.0)
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if aknet is not None:
            aknet.node.destroy_node()
        root.handlers = saved
        for s, h in old.items():
            signal.signal(s, h)
        try:
            rclpy.shutdown(context=context)
        except Exception as exc:  # already shut down
            log.debug("rclpy shutdown: %s", exc)


def _init(rclpy: Any, context: Any, argv: List[str]) -> None:
    """rclpy.init without rclpy's own signal handlers (the node stops in order on SIGINT and SIGTERM)."""
    args = ["aknet_edge.ros2", *argv]
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # an rclpy without signal options installs its handlers; ours replace them below
        rclpy.init(args=args, context=context)

__all__ = ["AknetNode", "NODE_NAME", "ros", "run_node"]
