"""The ROS 2 node's parameters and lifecycle against real rclpy: described, checked at start (one ``error:`` line,
exit 2), thresholds changed live through the parameter service (bad ones refused with the reason); SIGTERM and
SIGINT end it cleanly (exit 0, the open event ended and published, nothing left running)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from ros2_peer import (NodeProcess, Peer, image_msg, rclpy_or_skip, run_node_once, video_frames,  # noqa: E402
                       wait_ready, write_video)

from conftest import one_error  # noqa: E402
from test_runtime_support import demo_package  # noqa: E402

rclpy_or_skip()
from sensor_msgs.msg import Image  # noqa: E402

from aknet_edge.runtime.ros2 import params as P  # noqa: E402

pytestmark = [pytest.mark.ros2, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # lark, under rosidl

BASE = 1000.0
QUEUES = {"reliable": True, "qos_depth": 2000, "queue_size": 2000}


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return video_frames(write_video(tmp_path_factory.mktemp("ros2_params") / "seed1.avi", 1, seconds=10.0))


@pytest.fixture
def peer():
    with Peer() as p:
        yield p


def _publish(pub, frames, rate: float = 60.0) -> None:
    t0 = time.monotonic()
    for i, (image, t) in enumerate(frames):
        pub.publish(image_msg(image, BASE + t))
        wait = t0 + (i + 1) / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def _action_events(lines):
    return [e for e in lines if e["type"] == "event"]


def test_parameters_are_described_and_thresholds_change_live(pkg, frames, peer, tmp_path):
    params = {"package": str(pkg), "image_topics": ["/cam/image_raw"], "min_duration_s": 1000.0, **QUEUES}
    with NodeProcess(params, tmp_path) as node:
        diag, results, events = peer.diagnostics(), peer.results(), peer.events()
        pub = peer.publisher("/cam/image_raw", Image)
        wait_ready(peer, diag, node)
        peer.wait_matched(pub)

        described = peer.describe([p.name for p in P.PARAMS])
        for p in P.PARAMS:
            d = described[p.name]
            assert d.description == p.description, p.name
            assert d.read_only == (not p.live), p.name
        assert described["enter"].floating_point_range[0].to_value == 1.0
        assert "exit <= enter" in described["enter"].additional_constraints

        half = len(frames) // 2
        _publish(pub, frames[:half])
        results.wait_for(lambda r: r and r[-1]["timestamp"] >= BASE + frames[half - 1][1] - 0.3, 30,
                         "the first half's windows")
        assert not _action_events(events.snapshot())  # a minimum duration of 1000 s: no event can start

        # refused, each with its reason; nothing changes
        refused = {"enter": 1.5, "exit": 0.9, "smoothing": "median", "package": "/elsewhere", "mean_windows": 0}
        for name, value in refused.items():
            [r] = peer.set_parameters({name: value})
            assert not r.successful and r.reason, (name, r)
        [r] = peer.set_parameters({"exit": 0.9})
        assert "exit=0.9, enter=0.5" in r.reason, r.reason
        [r] = peer.set_parameters({"smoothing": "median"})
        assert "one of ema, mean, none" in r.reason, r.reason
        assert peer.get_parameters(["enter", "exit", "smoothing", "package"]) == {
            "enter": 0.5, "exit": 0.35, "smoothing": "ema", "package": str(pkg)}

        # accepted: from the next window on
        [r] = peer.set_parameters({"min_duration_s": 0.25, "enter": 0.45}, atomically=True)
        assert r.successful, r.reason
        assert peer.get_parameters(["min_duration_s", "enter"]) == {"min_duration_s": 0.25, "enter": 0.45}
        changed_at = results.snapshot()[-1]["timestamp"]
        _publish(pub, frames[half:])
        got = events.wait_for(lambda e: len(_action_events(e)) >= 2, 30, "events after the change")
        assert all(e["start"] >= changed_at - 2.0 for e in _action_events(got))  # window centres after the change
        assert node.stop() == 0
    assert "event settings changed from the next window on: enter=0.45, min_duration_s=0.25" in node.log
    assert "Traceback" not in node.log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_node_cleanly(pkg, frames, peer, tmp_path, sig):
    params = {"package": str(pkg), "image_topics": ["/cam/image_raw"], **QUEUES}
    with NodeProcess(params, tmp_path) as node:
        diag, events = peer.diagnostics(), peer.events()
        pub = peer.publisher("/cam/image_raw", Image)
        wait_ready(peer, diag, node)
        peer.wait_matched(pub)
        # publish until an event is open, then stop the node with it open
        for i, (image, t) in enumerate(frames):
            pub.publish(image_msg(image, BASE + t))
            time.sleep(1 / 60)
            evs = _action_events(events.snapshot())
            if evs and evs[-1]["state"] == "started":
                break
        evs = events.wait_for(lambda e: _action_events(e), 20, "an event")
        assert _action_events(evs)[-1]["state"] == "started", evs
        children = _children(node.proc.pid)
        t0 = time.monotonic()
        assert node.stop(sig, timeout=30) == 0, node.log[-3000:]
        took = time.monotonic() - t0
        ended = events.wait_for(lambda e: _action_events(e)[-1]["state"] == "ended", 10, "the open event's end")
    last = _action_events(ended)[-1]
    assert last["reason"] == "stopped" and last["label"] == _action_events(evs)[-1]["label"], last
    assert took < 15, took
    assert "Traceback" not in node.log
    assert "signal %d: stopping" % sig in node.log
    for pid in children:  # nothing it started is left
        assert not Path(f"/proc/{pid}").exists(), pid


def _children(pid: int) -> list:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize("params, args, words", [
    ({"enter": 1.5}, [], "parameter enter"),
    ({"exit": 0.6, "enter": 0.5}, [], "exit=0.6, enter=0.5: expected 0 <= exit <= enter <= 1"),
    ({"entr": 0.4}, [], "unknown parameter 'entr' (did you mean 'enter'?)"),
    ({"image_topics": ["/a", "/a"]}, [], "(/a is given twice)"),
    ({"backend": "cuda"}, [], "parameter backend='cuda': expected one of auto, onnxruntime, tensorrt, triton"),
    ({"source_timeout_s": 0.0}, [], "parameter source_timeout_s=0.0: expected a finite number > 0"),
    ({"enter": "high"}, [], "parameter enter"),
    ({"backend": "triton"}, [], "backend triton needs triton_url"),
    ({}, ["-p", "image_topics:=[]"], "parameter image_topics has no value"),
    ({"image_topics": ["/cam/1st"]}, [], "'/cam/1st' is not a valid ROS topic name"),
    ({}, ["-p", "package:=/no/such/package"], "/no/such/package"),
    ({}, ["--params-file", "/no/such/site.yaml"], "--ros-args"),
], ids=["range", "exit-above-enter", "typo", "topic-twice", "backend", "timeout", "type", "triton", "no-topics",
        "topic-name", "package", "params-file"])
def test_bad_parameters_at_start_are_one_error_line(pkg, tmp_path, params, args, words):
    proc = run_node_once({"package": str(pkg), **params}, tmp_path, args)
    line = one_error(proc)
    assert words in line, line
