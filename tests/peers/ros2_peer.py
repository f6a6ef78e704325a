"""ROS 2 peers for the node's tests and bench: a test node in this process, and the node under test as a process.

* :func:`check_env` -- the network rule: rclpy starts only with discovery on localhost
  (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and a domain id of the run's own (tests/conftest.py sets both for
  the session; ``.ci/run`` for its stage). Without them Fast DDS multicasts discovery to 239.255.0.1 on the
  machine's network interface.
* :class:`Peer` -- a node of our own (its own rclpy context, its executor spinning on a thread): publishers,
  collectors of the node's topics, parameter service calls.
* :class:`NodeProcess` -- ``python -m aknet_edge.ros2 --ros-args --params-file FILE ...`` as a subprocess, its
  stderr in a file; stopped with SIGTERM, killed only if it does not stop.
* :func:`image_msg` -- a frame as ``sensor_msgs/Image`` in any encoding (optionally padded rows, big-endian
  16-bit) or as ``CompressedImage``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


class RosNetworkError(RuntimeError):
    """rclpy was about to start without the loopback-only settings."""


def check_env(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``env`` (default: this process's) if it keeps ROS on loopback in a domain of its own, else an error."""
    env = dict(os.environ if env is None else env)
    problems = []
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        problems.append(f"ROS_AUTOMATIC_DISCOVERY_RANGE={env.get('ROS_AUTOMATIC_DISCOVERY_RANGE')!r} (want LOCALHOST)")
    domain = env.get("ROS_DOMAIN_ID", "")
    if not (domain.isdigit() and 0 <= int(domain) <= 101):
        problems.append(f"ROS_DOMAIN_ID={domain!r} (want the run's own, 0-101)")
    if env.get("ROS_STATIC_PEERS"):
        problems.append(f"ROS_STATIC_PEERS={env['ROS_STATIC_PEERS']!r} (peers off loopback)")
    if problems:
        raise RosNetworkError("refusing to start ROS 2 off loopback: " + "; ".join(problems) +
                              " (tests/conftest.py sets them for pytest, .ci/run for its ros2 stage)")
    return env


def rclpy_or_skip() -> Any:
    import pytest

    return pytest.importorskip("rclpy", reason="rclpy is not installed: the ROS 2 tests run in .ci/run's ros2 stage "
                                               "(pip's ROS 2 Jazzy wheels on Python 3.12)")


# --------------------------------------------------------------------------- messages


def _packed(bgr: np.ndarray, enc: str) -> np.ndarray:
    sys.path.insert(0, str(REPO / "tests"))
    from test_image_encodings import _packed as packed  # every encoding's pixel bytes, one row per image row

    return packed(bgr, enc)


def image_msg(bgr: np.ndarray, stamp_s: float, encoding: str = "bgr8", frame_id: str = "camera",
              pad: int = 0, big_endian: bool = False) -> Any:
    """``bgr`` (H, W, 3 uint8) as a ``sensor_msgs/Image`` in ``encoding`` (rows padded by ``pad`` bytes), or as a
    ``CompressedImage`` for encoding ``jpeg`` or ``png``; stamped ``stamp_s`` seconds."""
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    sec, nsec = divmod(int(round(stamp_s * 1e9)), 1_000_000_000)
    if encoding in ("jpeg", "png"):
        msg = CompressedImage()
        ok, buf = cv2.imencode("." + ("jpg" if encoding == "jpeg" else "png"), bgr)
        assert ok
        msg.format = encoding
        msg.data = buf.tobytes()
    else:
        rows = _packed(bgr, encoding)
        if big_endian:
            rows = rows.reshape(rows.shape[0], -1, 2)[..., ::-1].reshape(rows.shape[0], -1)
        if pad:
            padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
            padded[:, :rows.shape[1]] = rows
            rows = padded
        msg = Image()
        msg.height, msg.width = bgr.shape[:2]
        msg.encoding = encoding
        msg.is_bigendian = int(big_endian)
        msg.step = rows.shape[1]
        msg.data = np.ascontiguousarray(rows).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
    msg.header.frame_id = frame_id
    return msg


# --------------------------------------------------------------------------- frames and references


def write_video(path: Path, seed: int, seconds: float = 6.0, fps: float = 15.0, size: int = 112) -> Path:
    """A synthetic action video (MJPG AVI) of ``seconds`` at ``fps``, for the node and ``aknet_edge.run`` alike."""
    import cv2

    from aknet_edge.runtime.sources import open_source

    src = open_source(f"synthetic://?seed={seed}&fps={fps}&segments=20&size={size}&speed=0")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    try:
        for i, frame in enumerate(src):
            if i >= int(round(seconds * fps)):
                break
            writer.write(frame.image if frame.color == "BGR" else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
        src.close()
    return path


def video_frames(path: Path) -> List[Any]:
    """(BGR image, media time) of every frame of ``path`` as ``python -m aknet_edge.run`` reads them."""
    from aknet_edge.runtime.sources import open_source

    src = open_source(str(path))
    try:
        return [(f.image, f.media_ts) for f in src]
    finally:
        src.close()


def run_reference(package: Path, video: Path, out: Path, *args: str) -> List[Dict[str, Any]]:
    """``python -m aknet_edge.run VIDEO --package PKG --jsonl OUT ARGS``: its JSON Lines records."""
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", str(video), "--package", str(package),
                           "--jsonl", str(out), *args], cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def same_results(got: List[Dict[str, Any]], want: List[Dict[str, Any]], offset: float, tol: float = 1e-3,
                 labels: bool = True) -> None:
    """Node results (stamps ``offset`` later) equal to reference ones: the same windows, labels and confidences."""
    assert len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want):
        assert abs(g["timestamp"] - offset - w["timestamp"]) < 2e-4, (g["timestamp"], w["timestamp"])
        assert abs(g["window_start"] - offset - w["window_start"]) < 2e-4, (g["window_start"], w["window_start"])
        if labels:
            assert g["label"] == w["label"], (g["timestamp"], g["label"], w["label"])
            assert abs(g["confidence"] - w["confidence"]) <= tol, (g["timestamp"], g["confidence"], w["confidence"])
            assert [n for n, _ in g["top_k"]] == [n for n, _ in w["top_k"]] or all(
                abs(a[1] - b[1]) <= tol for a, b in zip(g["top_k"], w["top_k"])), (g["top_k"], w["top_k"])


# --------------------------------------------------------------------------- a test node


class Collected:
    """Messages of one topic, as they arrive (thread-safe)."""

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        self.items: List[Any] = []
        self._convert = convert
        self._cond = threading.Condition()

    def add(self, msg: Any) -> None:
        item = self._convert(msg)
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> List[Any]:
        with self._cond:
            return list(self.items)

    def wait_for(self, pred: Callable[[List[Any]], bool], timeout: float, what: str = "") -> List[Any]:
        """The items once ``pred(items)`` holds; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or pred}; "
                                         f"got {len(self.items)}: {_brief(self.items[-5:])}")
                self._cond.wait(min(left, 0.2))
            return list(self.items)


def _brief(items: List[Any]) -> List[Any]:
    """Records without their keypoints (for messages)."""
    return [{k: v for k, v in i.items() if k != "keypoints"} if isinstance(i, dict) else i for i in items]


def records(msg: Any) -> Dict[str, Any]:
    return json.loads(msg.data)


class Peer:
    """A node of the test's own, spinning on a thread. ``close()`` (or ``with``) releases it."""

    def __init__(self, name: str = "aknet_test_peer") -> None:
        check_env()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.rclpy = rclpy
        self.context = rclpy.Context()
        try:
            from rclpy.signals import SignalHandlerOptions

            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        except ImportError:
            rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.context.ok():
                    return
                raise

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)

    # -- QoS
    @staticmethod
    def qos(reliable: bool = True, depth: int = 10, transient: bool = False) -> Any:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)

    # -- topics
    def publisher(self, topic: str, msg_type: Any, qos: Any = None) -> Any:
        return self.node.create_publisher(msg_type, topic, qos if qos is not None else self.qos(depth=1000))

    def collect(self, topic: str, msg_type: Any, qos: Any = None, convert: Callable[[Any], Any] = lambda m: m,
                ) -> Collected:
        box = Collected(convert)
        self.node.create_subscription(msg_type, topic, box.add, qos if qos is not None else self.qos(depth=1000))
        return box

    def results(self, node: str = "aknet") -> Collected:
        from std_msgs.msg import String

        return self.collect(f"/{node}/results", String, convert=records)

    def events(self, node: str = "aknet", transient: bool = True) -> Collected:
        from std_msgs.msg import String

        return self.collect(f"/{node}/events", String, self.qos(depth=100, transient=transient), convert=records)

    def diagnostics(self) -> Collected:
        from diagnostic_msgs.msg import DiagnosticArray

        def statuses(msg: Any) -> Dict[str, Any]:
            return {s.name: {"level": s.level[0] if isinstance(s.level, bytes) else int(s.level),
                             "message": s.message, "values": {kv.key: kv.value for kv in s.values}}
                    for s in msg.status}
        return self.collect("/diagnostics", DiagnosticArray, self.qos(depth=100), convert=statuses)

    @staticmethod
    def wait_matched(entity: Any, count: int = 1, timeout: float = 30.0) -> None:
        """A publisher (subscription) until ``count`` subscriptions (publishers) match it."""
        get = getattr(entity, "get_subscription_count", None) or getattr(entity, "get_publisher_count")
        deadline = time.monotonic() + timeout
        while get() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{entity.topic_name}: {get()} matched after {timeout:g} s, want {count}")
            time.sleep(0.05)

    # -- parameters
    def _call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} did not appear within {timeout:g} s")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > deadline:
                    raise AssertionError(f"service {name}: no answer within {timeout:g} s")
                time.sleep(0.02)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, values: Dict[str, Any], node: str = "aknet", atomically: bool = False) -> List[Any]:
        """``ros2 param set``: one SetParametersResult per value (one for all when ``atomically``)."""
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically
        from rclpy.parameter import Parameter

        params = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        if atomically:
            req = SetParametersAtomically.Request(parameters=params)
            return [self._call(SetParametersAtomically, f"/{node}/set_parameters_atomically", req).result]
        return list(self._call(SetParameters, f"/{node}/set_parameters",
                               SetParameters.Request(parameters=params)).results)

    def get_parameters(self, names: Sequence[str], node: str = "aknet") -> Dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        got = self._call(GetParameters, f"/{node}/get_parameters", GetParameters.Request(names=list(names)))
        return {n: parameter_value_to_python(v) for n, v in zip(names, got.values)}

    def describe(self, names: Sequence[str], node: str = "aknet") -> Dict[str, Any]:
        from rcl_interfaces.srv import DescribeParameters

        got = self._call(DescribeParameters, f"/{node}/describe_parameters",
                         DescribeParameters.Request(names=list(names)))
        return {d.name: d for d in got.descriptors}


# --------------------------------------------------------------------------- the node under test


class NodeProcess:
    """``python -m aknet_edge.ros2`` with ``params`` in a parameter file (``/**:`` section) and ``ros_args``."""

    def __init__(self, params: Dict[str, Any], workdir: Path, ros_args: Sequence[str] = (),
                 python: str = sys.executable) -> None:
        env = check_env()
        workdir.mkdir(parents=True, exist_ok=True)
        self.params_file = workdir / "site.yaml"
        # JSON is YAML: the params file ROS reads
        self.params_file.write_text(json.dumps({"/**": {"ros__parameters": params}}, indent=1))
        self.log_path = workdir / "node.log"
        self._log = open(self.log_path, "w")
        self.cmd = [python, "-m", "aknet_edge.ros2", "--ros-args", "--params-file", str(self.params_file),
                    *ros_args]
        self.proc = subprocess.Popen(self.cmd, cwd=str(REPO), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``; its exit status (killed, and an AssertionError, if it does not end within ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._log.close()
                raise AssertionError(f"the node did not stop within {timeout:g} s of signal {sig}:\n{self.log[-3000:]}")
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


def run_node_once(params: Dict[str, Any], workdir: Path, ros_args: Sequence[str] = (),
                  timeout: float = 120.0) -> subprocess.CompletedProcess:
    """The node started with ``params`` and waited for (for starts that must fail)."""
    env = check_env()
    workdir.mkdir(parents=True, exist_ok=True)
    params_file = workdir / "site.yaml"
    params_file.write_text(json.dumps({"/**": {"ros__parameters": params}}, indent=1))
    cmd = [sys.executable, "-m", "aknet_edge.ros2", "--ros-args", "--params-file", str(params_file), *ros_args]
    return subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def wait_ready(peer: Peer, diagnostics: Collected, node: NodeProcess, timeout: float = 60.0) -> None:
    """Until the node publishes diagnostics (its pipeline runs); its log if it died first."""
    deadline = time.monotonic() + timeout
    while not diagnostics.snapshot():
        if not node.alive():
            raise AssertionError(f"the node exited with {node.proc.returncode}:\n{node.log[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the node published no diagnostics within {timeout:g} s:\n{node.log[-4000:]}")
        time.sleep(0.05)


__all__ = ["Collected", "NodeProcess", "Peer", "RosNetworkError", "check_env", "image_msg", "rclpy_or_skip",
           "records", "run_node_once", "run_reference", "same_results", "video_frames", "wait_ready", "write_video"]
