"""docs/fastdds_large_images.xml, the Fast DDS profile the README gives for raw camera images between processes:
with it, best-effort 640x480 ``bgr8`` images from a publisher process reach the node (with Fast DDS's defaults they
travel as UDP fragments and most are lost: bench/results/ros2_best_effort.json). Runs bench/ros2_bench.py briefly
(its publisher, node and subscriber processes start rclpy through tests/peers/ros2_peer.py, loopback only; the
bench keeps the profile's UDP transport on 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO

pytestmark = [pytest.mark.ros2, pytest.mark.slow]
PROFILE = REPO / "docs" / "fastdds_large_images.xml"
NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_the_profile_is_a_default_participant_profile_with_a_large_shared_memory_segment():
    root = ET.parse(PROFILE).getroot()
    shm = [d for d in root.iterfind("f:transport_descriptors/f:transport_descriptor", NS) if d.findtext("f:type", "", NS) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("f:segment_size", "0", NS)) >= 8 * 640 * 480 * 3
    participant = root.find("f:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind("f:rtps/f:userTransports/f:transport_id", NS)]
    assert shm[0].findtext("f:transport_id", "", NS) in used and len(used) == 2  # shared memory and UDPv4
    assert participant.findtext("f:rtps/f:useBuiltinTransports", "", NS) == "false"


def test_with_the_profile_best_effort_raw_images_reach_the_node(tmp_path):
    pytest.importorskip("rclpy", reason="no rclpy here (.ci/run's ros2 stage has pip's ROS 2 Jazzy wheels)")
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "ros2_bench.py"), "--best-effort",
                           "--large-image-profile", "--topics", "2", "--seconds", "8", "--loop-frames", "20",
                           "--out", str(out)], cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    node = json.loads(out.read_text())["node"]
    sent, received = node["published"]["sent"], node["received"]
    assert sent >= 400 and received >= 0.95 * sent, node  # 2 topics x 30 fps x 8 s
    assert node["results_per_s"] > 0
