"""ffmpeg as the camera: UDP MPEG-TS and HTTP MJPEG on loopback, killed and restarted mid-run.

The runtime must reconnect (counter increments, frames flow again), keep honest
counters, and leak no threads or file descriptors after close.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest

from aknet_edge.runtime import sources as S
from aknet_edge.synthetic import write_long_video

from test_runtime_support import open_fds

FFMPEG = shutil.which("ffmpeg")
pytestmark = [pytest.mark.camera,
              pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "cam.avi"
    write_long_video(path, seed=7, n_segments=2, fps=15, size=64, seg_seconds=(2.0, 2.0))
    return path


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ffmpeg(video, out_args: list[str]) -> subprocess.Popen:
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(video),
           *out_args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


def _read_n(src: S.Source, n: int, timeout: float) -> int:
    got, deadline = 0, time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        if src.read(timeout=0.5) is not None:
            got += 1
    return got


def _kill_and_restart(video, uri: str, out_args: list[str], start_delay: float) -> None:
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    proc = _ffmpeg(video, out_args)
    src: S.Source | None = None
    try:
        time.sleep(start_delay)
        deadline = time.monotonic() + 10
        while src is None:  # ffmpeg may take a moment to start listening on a loaded machine
            try:
                src = S.open_source(uri, reconnect_initial_s=0.2, reconnect_max_s=1.0, open_timeout_s=4.0,
                                    read_timeout_s=3.0)
            except S.SourceOpenError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert src.live
        read = _read_n(src, 10, 10)
        assert read == 10, f"only {read} frames from the first stream"
        before = src.stats()
        assert before.reconnects == 0 and before.connected

        _stop(proc)  # the camera goes away
        deadline = time.monotonic() + 10
        while src.stats().connected and time.monotonic() < deadline:
            src.read(timeout=0.2)
        assert not src.stats().connected, "loss of the stream was not noticed"
        lost = src.stats()

        proc = _ffmpeg(video, out_args)  # and comes back
        deadline = time.monotonic() + 20
        while src.stats().reconnects < 1 and time.monotonic() < deadline:
            src.read(timeout=0.2)
        assert src.stats().reconnects == 1
        read_after = _read_n(src, 10, 10)
        assert read_after == 10, f"only {read_after} frames after reconnecting"
        after = src.stats()
        assert after.connected and after.frames >= lost.frames + 10
        assert after.failed_reads >= 1
        assert after.fps > 0
    finally:
        if src is not None:
            src.close()
        _stop(proc)
    # nothing leaks: capture thread joined, sockets and decoders released
    _assert_no_leaks(threads_before, fds_before)


def _assert_no_leaks(threads_before, fds_before) -> None:
    """Threads joined and descriptors closed, allowing a few seconds for shutdown."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (set(threading.enumerate()) - threads_before or open_fds() > fds_before):
        time.sleep(0.1)
    assert not (set(threading.enumerate()) - threads_before)
    assert open_fds() <= fds_before


def test_udp_mpegts_reconnects(video):
    port = _free_port(socket.SOCK_DGRAM)
    out = ["-c:v", "mpeg2video", "-q:v", "5", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    _kill_and_restart(video, f"udp://127.0.0.1:{port}", out, start_delay=0.0)


def test_http_mjpeg_reconnects(video):
    port = _free_port(socket.SOCK_STREAM)
    out = ["-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/cam.mjpg"]
    _kill_and_restart(video, f"http://127.0.0.1:{port}/cam.mjpg", out, start_delay=0.3)


def test_recognizer_over_udp_survives_a_camera_restart(video, tmp_path_factory):
    """The whole runtime, not just the source: results resume after the stream comes back."""
    from aknet_edge.runtime import Recognizer

    from test_runtime_support import demo_package

    pkg = demo_package(tmp_path_factory)
    port = _free_port(socket.SOCK_DGRAM)
    out = ["-c:v", "mpeg2video", "-q:v", "5", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    import aknet_edge.runtime.recognizer  # noqa: F401 - import (and its one-time costs) before counting
    import onnxruntime  # noqa: F401

    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    proc = _ffmpeg(video, out)
    results: list = []
    try:
        opts = {"reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "open_timeout_s": 4.0, "read_timeout_s": 3.0}
        with Recognizer(pkg, f"udp://127.0.0.1:{port}", on_result=results.append, source_options=opts) as rec:
            deadline = time.monotonic() + 15
            while len(results) < 3 and time.monotonic() < deadline:
                rec.next_result(timeout=0.2)
            assert len(results) >= 3
            _stop(proc)
            deadline = time.monotonic() + 10
            while rec.source.stats().connected and time.monotonic() < deadline:
                rec.next_result(timeout=0.2)
            n_before = len(results)
            proc = _ffmpeg(video, out)
            deadline = time.monotonic() + 25
            while len(results) < n_before + 3 and time.monotonic() < deadline:
                rec.next_result(timeout=0.2)
            assert len(results) >= n_before + 3, "no results after the camera came back"
            for _ in range(100):  # the recogniser's stats read while the source captured nothing new
                src, tel, src_after = rec.source.stats(), rec.stats(), rec.source.stats()
                if src_after.frames == src.frames:
                    break
            assert src_after.frames == src.frames, "the source never paused between frames for 100 readings"
            assert tel.reconnects == src.reconnects == 1
            assert tel.results == len(results)
            # every captured frame was either consumed, dropped, or is still buffered
            assert 0 <= src.frames - tel.frames - src.dropped <= 4
            assert tel.latency_p50_ms > 0 and tel.capture_fps > 0
    finally:
        _stop(proc)
    _assert_no_leaks(threads_before, fds_before)


def test_recognizer_over_udp_reports_the_outage(video, tmp_path_factory):
    """A real camera restart as the runtime reports it: telemetry state and rates, JSON Lines stream records."""
    import io
    import json

    from aknet_edge.runtime import Recognizer

    from test_runtime_support import demo_package

    pkg = demo_package(tmp_path_factory)
    port = _free_port(socket.SOCK_DGRAM)
    out_args = ["-c:v", "mpeg2video", "-q:v", "5", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    proc = _ffmpeg(video, out_args)
    results: list = []
    lines = io.StringIO()
    try:
        opts = {"reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "open_timeout_s": 4.0, "read_timeout_s": 3.0}
        with Recognizer(pkg, f"udp://127.0.0.1:{port}", on_result=results.append, source_options=opts,
                        jsonl=lines) as rec:
            deadline = time.monotonic() + 15
            while len(results) < 3 and time.monotonic() < deadline:
                rec.next_result(timeout=0.2)
            assert len(results) >= 3 and rec.stats().source_state == "live"
            _stop(proc)
            deadline = time.monotonic() + 10
            while rec.stats().source_state != "reconnecting" and time.monotonic() < deadline:
                rec.next_result(timeout=0.2)
            time.sleep(1.0)
            down = rec.stats()
            assert down.source_state == "reconnecting" and down.capture_fps == 0 and down.inference_fps == 0
            n_before = len(results)
            proc = _ffmpeg(video, out_args)
            deadline = time.monotonic() + 25
            while len(results) < n_before + 3 and time.monotonic() < deadline:
                rec.next_result(timeout=0.2)
            assert len(results) >= n_before + 3, "no results after the camera came back"
            up = rec.stats()
            assert up.source_state == "live" and up.outages == 1 and up.outage_s >= 1.0 and up.capture_fps > 0
    finally:
        _stop(proc)
    records = [json.loads(ln) for ln in lines.getvalue().splitlines()]
    stream = [o for o in records if o["type"] == "stream"]
    assert [o["state"] for o in stream] == ["lost", "restored"]
    assert stream[1]["reconnects"] == 1 and stream[1]["outage_s"] >= 1.0
    i, j = records.index(stream[0]), records.index(stream[1])
    assert not [o for o in records[i:j] if o["type"] == "result"]
    assert all(o.get("reason") == "source lost" for o in records[i:j] if o["type"] == "event")
