"""The network rule of the ROS 2 tests: every process that starts rclpy talks to loopback only, in a DDS domain of
the run's own (Fast DDS otherwise multicasts discovery to 239.255.0.1 on the machine's interface). These fail when a
ROS test would run without it; none of them needs rclpy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, ros_test_env

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from ros2_peer import RosNetworkError, check_env  # noqa: E402

pytestmark = pytest.mark.ros2


def test_this_session_runs_on_loopback_in_its_own_domain():
    want = ros_test_env()
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["ROS_DOMAIN_ID"] == want["ROS_DOMAIN_ID"] == str(1 + os.getpid() % 100)
    assert not os.environ.get("ROS_STATIC_PEERS")
    check_env()  # what every peer and node process of the tests is started with


@pytest.mark.parametrize("env, words", [
    ({}, "ROS_AUTOMATIC_DISCOVERY_RANGE=None"),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": "7"}, "'SUBNET' (want LOCALHOST)"),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, "ROS_DOMAIN_ID=''"),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": "250"}, "ROS_DOMAIN_ID='250'"),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": "3", "ROS_STATIC_PEERS": "10.0.0.2"},
     "ROS_STATIC_PEERS"),
])
def test_a_ros_peer_refuses_to_start_off_loopback(env, words):
    with pytest.raises(RosNetworkError, match=re.escape(words)):
        check_env(env)


def test_a_ros_test_process_without_the_settings_fails_before_rclpy_starts():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROS_")}
    code = ("import sys; sys.path.insert(0, 'tests/peers'); from ros2_peer import Peer; Peer(); "
            "print('rclpy started')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "rclpy started" not in proc.stdout
    assert "refusing to start ROS 2 off loopback" in proc.stderr, proc.stderr[-2000:]


def test_every_ros_test_starts_rclpy_only_through_the_checked_peers():
    """Tests and the bench start rclpy only through tests/peers/ros2_peer.py (Peer, NodeProcess, run_node_once),
    which check the settings first."""
    files = [p for p in sorted((REPO / "tests").glob("test_ros2_*.py")) if p.name != Path(__file__).name]
    files.append(REPO / "bench" / "ros2_bench.py")
    assert len(files) >= 4
    for path in files:
        text = path.read_text()
        assert "rclpy.init(" not in text, f"{path.name} starts rclpy itself: use tests/peers/ros2_peer.py"
    peer = (REPO / "tests" / "peers" / "ros2_peer.py").read_text()
    assert peer.count("rclpy.init(") == 2 and peer.count("check_env()") >= 3  # Peer, NodeProcess, run_node_once


def test_the_ci_stage_sets_the_rule_too():
    text = (REPO / ".ci" / "run").read_text()
    stage = text[text.index("ros2_stage()"):]
    stage = stage[:stage.index("\n}\n")]
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in stage and "ROS_DOMAIN_ID=" in stage
