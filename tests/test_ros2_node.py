"""``python -m aknet_edge.ros2`` against real ROS 2 (rclpy, Fast DDS on loopback): a video's frames published as
``sensor_msgs/Image`` give the results ``python -m aknet_edge.run`` gives on the file; two topics each their own;
every camera encoding and the compressed form the same windows; a topic that goes silent is a lost camera.

The node runs as a subprocess; a test node in this process publishes and listens (tests/peers/ros2_peer.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from ros2_peer import (NodeProcess, Peer, image_msg, rclpy_or_skip, run_reference, same_results,  # noqa: E402
                       video_frames, wait_ready, write_video)

from test_runtime_support import demo_package  # noqa: E402

rclpy_or_skip()
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

pytestmark = [pytest.mark.ros2, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # lark, under rosidl

BASE = 1000.0  # header stamps are the file's media time plus this (a stamp of zero means "unset" in ROS)
RATE = 60.0  # frames per second published (4x the video's 15 fps; reliable QoS, deep queues: nothing drops)
NODE_QUEUES = {"reliable": True, "qos_depth": 2000, "queue_size": 2000}


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("ros2_videos")
    return [write_video(d / f"seed{seed}.avi", seed, seconds=6.0) for seed in (1, 2)]


@pytest.fixture(scope="module")
def references(pkg, videos, tmp_path_factory):
    d = tmp_path_factory.mktemp("ros2_refs")
    out = []
    for i, v in enumerate(videos):
        lines = run_reference(pkg, v, d / f"ref{i}.jsonl")
        out.append(lines)
    return out


@pytest.fixture
def peer():
    with Peer() as p:
        yield p


def _results(lines, stream=None):
    return [r for r in lines if r["type"] == "result" and (stream is None or r.get("stream") == stream)]


def _events(lines, stream=None):
    return [r for r in lines if r["type"] == "event" and (stream is None or r.get("stream") == stream)]


def _windows(frames, samples: int = 8, span_s: float = 2.0) -> int:
    """Windows of the demo package (8 samples over 2 s, stride one sample) in frames at these media times."""
    period = span_s / (samples - 1)
    last = frames[-1][1] - frames[0][1]
    return max(0, sum(1 for k in range(10_000) if k * period <= last + 1e-9) - (samples - 1))


def _publish(pubs_frames, rate: float = RATE) -> float:
    """Publish frame i of every (publisher, frames, encoding) together, ``rate`` frames a second; the monotonic
    time of the last publish."""
    n = max(len(frames) for _, frames, _ in pubs_frames)
    t0 = last = time.monotonic()
    for i in range(n):
        for pub, frames, enc in pubs_frames:
            if i < len(frames):
                image, t = frames[i]
                pub.publish(image_msg(image, BASE + t, **enc))
        last = time.monotonic()
        wait = t0 + (i + 1) / rate - last
        if wait > 0:
            time.sleep(wait)
    return last


def test_one_topic_gives_what_run_gives_on_the_file(pkg, videos, references, peer, tmp_path):
    frames = video_frames(videos[0])
    want = _results(references[0])
    assert len(want) >= 10
    params = {"package": str(pkg), "image_topics": ["/cam/image_raw"], **NODE_QUEUES}
    with NodeProcess(params, tmp_path) as node:
        diag, results = peer.diagnostics(), peer.results()
        pub = peer.publisher("/cam/image_raw", Image)
        wait_ready(peer, diag, node)
        peer.wait_matched(pub)
        _publish([(pub, frames, {})])
        got = results.wait_for(lambda r: len(r) >= len(want), 60, f"{len(want)} results")
        time.sleep(0.5)  # nothing more must come
        got = results.snapshot()
        assert all(r["stream"] == "/cam/image_raw" for r in got)
        same_results(got, want, BASE)
        # the events of the same frames, and a late subscriber (transient local) still gets them
        late = peer.events()
        want_events = [e for e in _events(references[0]) if e.get("reason") is None]
        got_events = late.wait_for(lambda e: len(_events(e)) >= len(want_events), 20, "the events so far")
        assert [(e["state"], e["label"], round(e["start"] - BASE, 3)) for e in _events(got_events)] == \
               [(e["state"], e["label"], round(e["start"], 3)) for e in want_events]
        assert node.stop() == 0, node.log[-3000:]
    assert "Traceback" not in node.log


def test_two_topics_give_each_its_own_results(pkg, videos, references, peer, tmp_path):
    a, b = video_frames(videos[0]), video_frames(videos[1])
    # use_sim_time with no /clock: windows follow the header stamps, not the node's clock
    params = {"package": str(pkg), "image_topics": ["/front/image_raw", "rear/image_raw"], "use_sim_time": True,
              "annotated": True, **NODE_QUEUES}
    with NodeProcess(params, tmp_path) as node:
        diag, results = peer.diagnostics(), peer.results()
        annotated = peer.collect("/aknet/front/image_raw/annotated", Image, convert=lambda m: (
            m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, m.header.frame_id, m.encoding, m.height, m.width,
            len(m.data)))
        pa, pb = peer.publisher("/front/image_raw", Image), peer.publisher("/rear/image_raw", Image)
        wait_ready(peer, diag, node)
        peer.wait_matched(pa)
        peer.wait_matched(pb)
        _publish([(pa, a, {}), (pb, b, {})])
        n = len(_results(references[0])) + len(_results(references[1]))
        results.wait_for(lambda r: len(r) >= n, 60, f"{n} results")
        time.sleep(0.5)
        got = results.snapshot()
        assert node.stop() == 0, node.log[-3000:]
    same_results(_results(got, "/front/image_raw"), _results(references[0]), BASE)
    same_results(_results(got, "/rear/image_raw"), _results(references[1]), BASE)  # relative name, resolved
    # each window's annotated frame, stamped with the window's time and the camera's frame
    images = annotated.snapshot()
    want = [r["timestamp"] for r in _results(got, "/front/image_raw")]
    assert [round(t, 4) for t, *_ in images] == want
    h, w = a[0][0].shape[:2]
    assert all(tuple(rest) == ("camera", "bgr8", h, w, h * w * 3) for _, *rest in images), images[:2]


# (topic, image_msg options, lossless): every encoding camera drivers publish, padded rows, big-endian 16 bits
ENCODINGS = [
    ("/enc/bgr8", {}, True),
    ("/enc/bgr8_padded", {"pad": 13}, True),
    ("/enc/rgb8", {"encoding": "rgb8"}, True),
    ("/enc/rgba8", {"encoding": "rgba8", "pad": 4}, True),
    ("/enc/bgra8", {"encoding": "bgra8"}, True),
    ("/enc/mono8", {"encoding": "mono8", "pad": 3}, False),
    ("/enc/mono16", {"encoding": "mono16"}, False),
    ("/enc/mono16_be", {"encoding": "mono16", "big_endian": True}, False),
    ("/enc/yuv422_yuy2", {"encoding": "yuv422_yuy2"}, False),
    ("/enc/yuyv", {"encoding": "yuyv", "pad": 8}, False),
    ("/enc/uyvy", {"encoding": "uyvy"}, False),
    ("/enc/yuv422", {"encoding": "yuv422"}, False),
    ("/enc/nv12", {"encoding": "nv12"}, False),
    ("/enc/png/compressed", {"encoding": "png"}, True),
    ("/enc/jpeg/compressed", {"encoding": "jpeg"}, False),
]


def test_every_encoding_and_the_compressed_form_give_the_windows_of_bgr8(pkg, videos, peer, tmp_path):
    frames = video_frames(videos[0])[:60]  # 4 s: 7 windows per topic
    topics = [t for t, _, _ in ENCODINGS] + ["/enc/unsupported"]
    params = {"package": str(pkg), "image_topics": topics, **NODE_QUEUES}
    with NodeProcess(params, tmp_path) as node:
        diag, results = peer.diagnostics(), peer.results()
        pubs = [(peer.publisher(t, CompressedImage if t.endswith("/compressed") else Image), frames, opts)
                for t, opts, _ in ENCODINGS]
        bad = peer.publisher("/enc/unsupported", Image)
        wait_ready(peer, diag, node)
        for pub, _, _ in pubs:
            peer.wait_matched(pub)
        peer.wait_matched(bad)
        _publish(pubs, rate=30.0)
        # the 32-bit float depth image no camera driver sends as colour: refused, counted, said once
        for img, t in frames[:20]:
            msg = image_msg(img, BASE + t)
            msg.encoding = "32FC1"
            bad.publish(msg)
        n = _windows(frames)
        results.wait_for(lambda r: len(r) >= len(ENCODINGS) * n, 120, f"{n} windows on every topic")
        time.sleep(1.0)
        got = results.snapshot()
        bad_status = "/aknet: stream /enc/unsupported"
        states = diag.wait_for(lambda d: any("32FC1" in s.get(bad_status, {}).get("message", "") for s in d), 20,
                               "ERROR for the unsupported topic")
        assert node.alive()
        assert node.stop() == 0
    ref = _results(got, "/enc/bgr8")
    assert len(ref) == n
    for topic, _, lossless in ENCODINGS[1:]:
        per = _results(got, topic)
        same_results(per, ref, 0.0, labels=lossless)
    assert not _results(got, "/enc/unsupported")
    status = [s[bad_status] for s in states if "32FC1" in s.get(bad_status, {}).get("message", "")][-1]
    assert "32FC1" in status["message"] and status["level"] == 2, status
    assert int(status["values"]["dropped"]) == 20, status
    log = node.log
    assert log.count("'32FC1' is not supported") == 1, log[-3000:]
    assert "Traceback" not in log


def test_a_silent_topic_is_a_lost_camera_and_comes_back(pkg, videos, peer, tmp_path):
    frames = video_frames(videos[0])
    name = "/aknet: stream /cam/image_raw"
    params = {"package": str(pkg), "image_topics": ["/cam/image_raw"], "source_timeout_s": 3.0, **NODE_QUEUES}
    with NodeProcess(params, tmp_path) as node:
        diag, results, events = peer.diagnostics(), peer.results(), peer.events()
        pub = peer.publisher("/cam/image_raw", Image)
        wait_ready(peer, diag, node)
        peer.wait_matched(pub)
        t_stop = _publish([(pub, frames[:45], {})], rate=15.0)  # 3 s live, then silence
        results.wait_for(lambda r: len(r) >= 1, 20, "a result before the outage")
        events.wait_for(lambda e: any(r["type"] == "stream" and r["state"] == "lost" and r["frame"] is not None
                                      for r in e), 15, "stream lost")
        lost_after = time.monotonic() - t_stop
        n_before = len(results.snapshot())
        time.sleep(1.5)
        _publish([(pub, frames[45:], {})], rate=15.0)  # the camera is back: its media time jumped ahead
        events.wait_for(lambda e: any(r["type"] == "stream" and r["state"] == "restored" for r in e), 15,
                        "stream restored")
        results.wait_for(lambda r: len(r) > n_before + 3, 20, "results after the outage")
        time.sleep(1.5)
        levels = [d[name]["level"] for d in diag.snapshot() if name in d]
        assert node.stop() == 0
    assert 2.9 < lost_after < 8.0, lost_after  # source_timeout_s after the last message, and the time to notice
    # diagnostics: OK while frames arrive, WARN when late, ERROR once lost, OK again after it
    first_ok = levels.index(0)
    warn = levels.index(1, first_ok)
    error = levels.index(2, warn)
    assert 0 in levels[error:], levels
    lines = [r for r in events.snapshot() if r["type"] == "stream"]
    assert [r["state"] for r in lines][-2:] == ["lost", "restored"], lines
    assert lines[-2]["timestamp"] == pytest.approx(BASE + frames[44][1], abs=1e-3)
    assert lines[-1]["timestamp"] == pytest.approx(BASE + frames[45][1], abs=1e-3)
    after = [r for r in results.snapshot() if r["timestamp"] > BASE + frames[45][1]]
    assert after and all(r["window_start"] >= BASE + frames[45][1] - 1e-3 for r in after)  # a fresh window
