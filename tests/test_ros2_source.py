"""The ROS 2 node's parts that need no rclpy: the subscription-fed source (timeouts, backwards stamps, encodings it
cannot decode, a full inbox), the parameter table and its checks, live event settings on the pipeline, the help, and
the error a machine without rclpy gets. Run in the main suite and in .ci/run's ros2 stage alike."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from aknet_edge.errors import ConfigError
from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.ros2 import params as P
from aknet_edge.runtime.ros2.source import RESUME_S, TopicSource, stamp_seconds, topic_source
from aknet_edge.runtime.sources import ArraySource, EndOfStream
from aknet_edge.runtime.sources.image_encodings import COMPRESSED, IMAGE

from conftest import REPO, blocking_imports, one_error, run_py
from test_runtime_support import demo_package

pytestmark = pytest.mark.ros2


def _msg(stamp: float, value: int = 0, encoding: str = "bgr8", h: int = 8, w: int = 8) -> SimpleNamespace:
    sec, nsec = divmod(int(round(stamp * 1e9)), 10**9)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nsec), frame_id="cam")
    return SimpleNamespace(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=w * 3,
                           data=bytes([value]) * (h * w * 3))


def _read(src: TopicSource, timeout: float = 5.0):
    frame = src.read(timeout=timeout)
    assert frame is not None, "no frame"
    return frame


def test_frames_carry_their_header_stamp_or_the_receive_time():
    src = TopicSource("/cam", timeout_s=5.0, queue_size=8).start()
    try:
        src.put(_msg(1000.25, 7), received_s=5.0)
        src.put(_msg(0.0, 9), received_s=1000.5)  # a driver that never stamps: the node's clock
        a, b = _read(src), _read(src)
        assert a.media_ts == pytest.approx(1000.25) and int(a.image[0, 0, 0]) == 7 and a.color == "BGR"
        assert b.media_ts == pytest.approx(1000.5) and int(b.image[0, 0, 0]) == 9
        assert src.frame_id == "cam" and src.received == 2
    finally:
        src.close()


def test_a_silent_topic_is_lost_after_its_timeout_and_restored_by_the_next_message():
    src = TopicSource("/cam", timeout_s=0.4, queue_size=8).start()
    try:
        t0 = time.monotonic()  # the timeout counts from the last message
        src.put(_msg(1.0))
        _read(src)
        while src.stats().connected:
            assert time.monotonic() - t0 < 5, "never lost"
            time.sleep(0.02)
        lost_after = time.monotonic() - t0
        assert 0.35 < lost_after < 3 and src.stats().failed_reads == 1
        assert src.read(timeout=0.5) is None  # nothing until the topic speaks again
        src.put(_msg(9.0))
        frame = _read(src)
        assert frame.media_ts == pytest.approx(9.0)
        s = src.stats()
        assert s.connected and s.reconnects == 1
    finally:
        src.close()
    assert RESUME_S > 0.25  # longer than the lane's poll: it sees the loss before the frames after it


def test_a_full_inbox_drops_its_oldest_messages_and_counts_them():
    src = TopicSource("/cam", timeout_s=5.0, queue_size=3)  # not started: nothing reads the inbox
    for i in range(10):
        src.put(_msg(1.0 + i, i))
    assert src.stats().dropped == 7
    src.start()
    try:
        assert [int(_read(src).image[0, 0, 0]) for _ in range(3)] == [7, 8, 9]
    finally:
        src.close()


def test_an_unsupported_encoding_is_said_once_and_its_frames_are_dropped(caplog):
    src = TopicSource("/depth", timeout_s=5.0, queue_size=50).start()
    try:
        with caplog.at_level(logging.ERROR, logger="aknet_edge.runtime.ros2.source"):
            for i in range(5):
                src.put(_msg(1.0 + i, encoding="32FC1"))
            src.put(_msg(9.0, 3))
            frame = _read(src)
        assert frame.media_ts == pytest.approx(9.0) and int(frame.image[0, 0, 0]) == 3
        errors = [r.getMessage() for r in caplog.records if "not supported" in r.getMessage()]
        assert len(errors) == 1 and "'32FC1'" in errors[0] and "/depth" in errors[0], errors
        assert src.stats().dropped == 5 and "32FC1" in (src.encoding_error or "")
    finally:
        src.close()


def test_a_stamp_going_back_is_warned_once(caplog):
    src = TopicSource("/cam", timeout_s=5.0, queue_size=50).start()
    try:
        with caplog.at_level(logging.WARNING, logger="aknet_edge.runtime.ros2.source"):
            for t in (10.0, 11.0, 2.0, 3.0, 1.0):
                src.put(_msg(t))
            got = [_read(src).media_ts for _ in range(5)]
        assert got == pytest.approx([10.0, 11.0, 2.0, 3.0, 1.0])
        warned = [r for r in caplog.records if "went back" in r.getMessage()]
        assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    finally:
        src.close()


def test_compressed_topics_and_stamps():
    assert topic_source("/cam/image_raw/compressed", timeout_s=1, queue_size=1).msgtype == COMPRESSED
    assert topic_source("/cam/image_raw", timeout_s=1, queue_size=1).msgtype == IMAGE
    assert stamp_seconds(SimpleNamespace()) == 0.0
    assert stamp_seconds(_msg(12.5)) == pytest.approx(12.5)


# --------------------------------------------------------------------------- parameters


def test_the_defaults_check_and_make_the_recognisers_options():
    s = P.check({})
    assert s.image_topics == ["image"] and s.package == "" and not s.reliable and s.queue_size == 4
    assert s.options["backend"] == "auto" and s.options["incremental"] is None and s.options["stride_s"] is None
    assert s.options["enter"] == 0.5 and s.event.min_duration_s == 0.25
    assert P.check({"incremental": False}).options["incremental"] is False
    assert P.check({"incremental": "true", "threads": 2}).options == {**s.options, "incremental": True, "threads": 2}
    assert set(P.LIVE) == set(P.EVENT_PARAMS)
    for p in P.PARAMS:
        assert p.description and p.name in P.help_text()


@pytest.mark.parametrize("values, words", [
    ({"enter": 0.3}, "exit=0.35, enter=0.3: expected 0 <= exit <= enter <= 1"),
    ({"image_topics": []}, "parameter image_topics=[]: expected a non-empty list"),
    ({"image_topics": ["/a", " /a"]}, "(/a is given twice)"),
    ({"stride_s": -1.0}, "parameter stride_s=-1.0: expected a finite number >= 0"),
    ({"queue_size": 0}, "parameter queue_size=0: expected a whole number >= 1"),
    ({"incremental": "maybe"}, "parameter incremental='maybe': expected auto, true or false"),
    ({"triton_url": "x:1"}, "triton_url needs backend triton"),
    ({"backend": "triton", "triton_url": "nohost"}, "parameter triton_url='nohost': expected HOST:PORT"),
    ({"smoothing": "median"}, "expected one of ema, mean, none"),
    ({"entr": 1}, "unknown parameter 'entr'"),
])
def test_bad_values_name_the_parameter(values, words):
    with pytest.raises(ConfigError) as err:
        P.check(values)
    assert words in str(err.value), str(err.value)


# --------------------------------------------------------------------------- live event settings


def test_event_settings_change_from_the_next_window_and_bad_ones_change_nothing(tmp_path_factory):
    from aknet_edge.runtime.sources import open_source

    src = open_source("synthetic://?seed=1&fps=15&segments=6&size=112&speed=0", start=False)
    frames = [(f.image, f.media_ts) for f in _take(src, 150)]
    pkg = demo_package(tmp_path_factory)
    seen = []

    def on_result(r):
        seen.append(r)
        if len(seen) == 10:  # from the 11th window on, events may start
            rec.set_event_config(min_duration_s=0.25, enter=0.45)

    rec = Recognizer(pkg, ArraySource([f for f, _ in frames], fps=15.0, color=src.color), min_duration_s=1e6,
                     on_result=on_result)
    with rec:
        with pytest.raises(ConfigError, match="exit=0.9, enter=0.5"):
            rec.set_event_config(exit=0.9)
        with pytest.raises(ConfigError, match="unknown settings"):
            rec.set_event_config(threshold=0.9)
        assert rec.event_config.enter == 0.5  # nothing changed
        for _ in rec:
            pass
    events = list(rec.events)
    assert len(seen) > 20 and events, "events after the change"
    assert all(ev.start >= seen[9].timestamp - 2.0 for ev in events)  # centres of windows after the change
    assert rec.event_config.min_duration_s == 0.25 and rec.lane.detector.cfg.enter == 0.45


def _take(src, n):
    src.start()
    out = []
    try:
        while len(out) < n:
            try:
                f = src.read(timeout=5)
            except EndOfStream:
                break
            if f is not None:
                out.append(f)
    finally:
        src.close()
    return out


# --------------------------------------------------------------------------- the command line without ROS


def test_help_lists_every_parameter_without_ros():
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.ros2", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    for p in P.PARAMS:
        assert f"  {p.name} (" in proc.stdout
    for flag in ("--ros-args", "--params-file", "-p NAME:=VALUE", "-r FROM:=TO"):
        assert flag in proc.stdout


def test_a_machine_without_rclpy_is_told_how_to_get_it():
    proc = run_py(blocking_imports("rclpy") + "sys.argv = ['aknet_edge.ros2', '--ros-args']\n"
                  "from aknet_edge.cli_common import run_cli\nfrom aknet_edge.ros2 import main\n"
                  "sys.exit(run_cli(main))\n", env=dict(os.environ))
    line = one_error(proc)
    assert "needs ROS 2's rclpy" in line and "--system-site-packages" in line, line


def test_arguments_before_ros_args_are_one_error_line():
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.ros2", "--enter", "0.4"], capture_output=True,
                          text=True, timeout=120, cwd=str(REPO))
    assert "--ros-args" in one_error(proc)


def test_decoded_frames_do_not_copy_a_buffer_they_can_share():
    from aknet_edge.runtime.sources.image_encodings import decode_image

    import array

    data = array.array("B", bytes(range(48)) * 4)  # rclpy's uint8[]: an array.array
    msg = SimpleNamespace(height=8, width=8, encoding="bgr8", is_bigendian=0, step=24, data=data)
    img = decode_image(msg)
    assert img.shape == (8, 8, 3) and np.shares_memory(img, np.frombuffer(data, np.uint8))


def test_the_time_grid_resolves_nothing_ahead_of_epoch_stamps():
    """ROS header stamps are seconds since 1970 (~1.8e9): the grid must not take a sample due later than the frame
    that resolves it (a tolerance relative to the stamp's size once resolved 1.8 s ahead)."""
    from aknet_edge.sampling import TimeGrid

    for t0 in (0.0, 1000.0, 1_796_438_203.3333):
        grid: TimeGrid = TimeGrid(2.0 / 7)
        resolved = []
        for i in range(90):
            t = t0 + i / 30
            got = grid.push(t, i)
            assert all(r.time <= t + 1e-5 for r in got), (t0, i, [r.time - t for r in got])
            resolved += got
        assert [r.k for r in resolved] == list(range(len(resolved))) and len(resolved) == 11  # 0..2.967 s
