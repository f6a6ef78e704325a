"""A camera that is down when a run starts does not stop the others.

With several cameras, a live source that fails to open at start is retried in the background with its
reconnect policy, like a lost one: it is reported lost from the start (a ``stream`` lost line in JSON Lines,
"reconnecting" in telemetry, an outage in the stats) while the others are recognised, and "restored" and
recognised once it comes up. The start fails only when no camera opens, when one camera alone does not, or
with ``require_all_sources`` / ``--require-all-sources``; files and bad URIs stay immediate errors.

The late cameras are real peers on 127.0.0.1: ffmpeg streaming MPEG-TS over UDP, and GStreamer's RTSP server
(tests/peers/rtsp_server.py) started on a port that refused connections when the run began.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from aknet_edge.runtime import MultiRecognizer
from aknet_edge.runtime import sources as S
from aknet_edge.synthetic import write_long_video

from conftest import assert_valid_jsonl
from test_runtime_rtsp import gst_python  # noqa: F401 - the fixture (a Python with GStreamer's RTSP server)
from test_runtime_support import demo_package

REPO = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")
LIVE_A = "synthetic://?seed=1&fps=15&segments=30&size=112"  # paced like a camera; long enough for any test here


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


def _closed_port(kind: int = socket.SOCK_STREAM) -> int:
    """A local port nothing listens on (just released by the OS's pick)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # the last line may be half-written while the run goes on
            pass
    return out


def _wait(what: str, ok, timeout: float, proc: "subprocess.Popen | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:g} s")


# --------------------------------------------------------------------------- the source: start(retry=True)


def test_a_live_source_that_does_not_open_is_retried_and_gives_up_after_its_attempts():
    src = S.open_source(f"rtsp://127.0.0.1:{_closed_port()}/cam", start=False, open_timeout_s=1.0,
                        reconnect_initial_s=0.1, reconnect_max_s=0.2, reconnect_max_attempts=2)
    try:
        assert src.start(retry=True) is src  # no error here: the open is retried on the capture thread
        assert isinstance(src.open_error, S.SourceOpenError) and "cannot open" in str(src.open_error)
        assert not src.stats().connected
        deadline = time.monotonic() + 20
        with pytest.raises(S.SourceError, match="did not open after 2 attempts"):
            while time.monotonic() < deadline:
                assert src.read(timeout=0.2) is None
        assert src.stats().reconnects == 0
    finally:
        src.close()


def test_without_retry_and_for_files_a_failed_open_raises_at_once(tmp_path):
    src = S.open_source(f"rtsp://127.0.0.1:{_closed_port()}/cam", start=False, open_timeout_s=1.0)
    with pytest.raises(S.SourceOpenError, match="cannot open"):
        src.start()
    src.close()
    video = tmp_path / "gone.avi"
    write_long_video(video, seed=1, n_segments=1, fps=15, size=32, seg_seconds=(1.0, 1.0))
    src = S.open_source(str(video), start=False)
    video.unlink()  # the file went away between the check of the URI and the open
    with pytest.raises(S.SourceOpenError):
        src.start(retry=True)  # a file is not a camera: nothing to wait for
    src.close()


# --------------------------------------------------------------------------- the recogniser


def test_require_all_sources_and_no_source_at_all_fail_the_start(pkg):
    port = _closed_port()
    with pytest.raises(S.SourceOpenError, match=r"^stream b: cannot open rtsp://"):
        MultiRecognizer(pkg, {"a": LIVE_A, "b": f"rtsp://127.0.0.1:{port}/cam"}, require_all_sources=True).start()
    with pytest.raises(S.SourceOpenError, match=r"no source could be opened: stream b: .*; stream c: "):
        MultiRecognizer(pkg, {"b": f"rtsp://127.0.0.1:{port}/cam", "c": f"rtsp://127.0.0.1:{port}/x"}).start()


def test_a_camera_that_never_opens_ends_with_its_error_and_the_other_goes_on(pkg):
    late = S.open_source(f"rtsp://127.0.0.1:{_closed_port()}/cam", start=False, open_timeout_s=1.0,
                         reconnect_initial_s=2.0, reconnect_max_s=2.0, reconnect_max_attempts=2)  # ~4 s to give up:
    got: List[str] = []  # still reconnecting when the start returns, even on a runner that pauses this thread
    with MultiRecognizer(pkg, {"a": LIVE_A, "b": late}) as rec:
        assert rec.stats().streams["b"].source_state == "reconnecting"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (rec.stats().streams["b"].source_state == "ended" and got):
            r = rec.next_result(timeout=0.2)
            if r is not None:
                got.append(r.stream)
        assert rec.lanes["b"].end_reason == "error" and "did not open after 2 attempts" in str(rec.lanes["b"].error)
        assert rec.stats().streams["a"].source_state == "live"
    assert got and set(got) == {"a"}


@pytest.mark.camera
@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
def test_a_udp_camera_down_at_start_is_lost_then_restored_and_recognised(pkg, tmp_path):
    video = tmp_path / "cam.avi"
    write_long_video(video, seed=7, n_segments=2, fps=15, size=64, seg_seconds=(2.0, 2.0))
    port = _closed_port(socket.SOCK_DGRAM)
    late = S.open_source(f"udp://127.0.0.1:{port}", start=False, open_timeout_s=1.0, read_timeout_s=2.0,
                         reconnect_initial_s=0.2, reconnect_max_s=0.5)
    jsonl = tmp_path / "out.jsonl"
    ffmpeg = None
    by: Dict[str, int] = {"a": 0, "b": 0}
    try:
        with MultiRecognizer(pkg, {"a": LIVE_A, "b": late}, jsonl=str(jsonl)) as rec:
            st = rec.stats()
            assert st.streams["b"].source_state == "reconnecting" and st.streams["b"].outages == 1
            assert st.streams["a"].source_state == "live"
            deadline = time.monotonic() + 30
            while not by["a"] and time.monotonic() < deadline:  # the other camera is recognised meanwhile
                r = rec.next_result(timeout=0.2)
                if r is not None:
                    by[r.stream] += 1
            assert by["a"] and not by["b"]
            ffmpeg = subprocess.Popen(
                [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i",
                 str(video), "-c:v", "mpeg2video", "-q:v", "5", "-g", "5", "-f", "mpegts",
                 f"udp://127.0.0.1:{port}?pkt_size=1316"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 40
            while by["b"] < 3 and time.monotonic() < deadline:  # the camera comes up: restored and recognised
                r = rec.next_result(timeout=0.2)
                if r is not None:
                    by[r.stream] += 1
            assert by["b"] >= 3, f"no results from the late camera: {rec.stats().streams['b']}"
            st = rec.stats().streams["b"]
            assert st.source_state == "live" and st.reconnects == 1 and st.outages == 1 and st.outage_s > 0
    finally:
        if ffmpeg is not None:
            ffmpeg.kill()
            ffmpeg.wait(timeout=10)
    lines = _lines(jsonl)
    assert_valid_jsonl(lines)
    states = [x for x in lines if x["type"] == "stream"]
    assert [(x["stream"], x["state"]) for x in states] == [("b", "lost"), ("b", "restored")], states
    assert states[0]["timestamp"] is None and states[0]["frame"] is None  # lost before its first frame
    assert states[1]["reconnects"] == 1 and states[1]["outage_s"] > 0
    restored_at = lines.index(states[1])
    assert any(x["type"] == "result" and x["stream"] == "a" for x in lines[:restored_at])
    assert not any(x["type"] == "result" and x["stream"] == "b" for x in lines[:restored_at])
    assert any(x["type"] == "result" and x["stream"] == "b" for x in lines[restored_at:])


# --------------------------------------------------------------------------- python -m aknet_edge.run


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "aknet_edge.run", *args]


@pytest.mark.parametrize("sources,flags,words", [
    (["a=" + LIVE_A, "b=rtsp://127.0.0.1:{port}/cam"], ["--require-all-sources"], "stream b: cannot open rtsp://"),
    (["b=rtsp://127.0.0.1:{port}/cam", "c=rtsp://127.0.0.1:{port}/x"], [], "no source could be opened"),
    (["rtsp://127.0.0.1:{port}/cam"], [], "cannot open rtsp://"),  # one camera that cannot open: an error
    (["a=" + LIVE_A, "b=rtsp://127.0.0.1:{port}/cam", "c=/no/such/video.mp4"], [], "no such file"),
])
def test_cli_start_failures_are_one_error_line(pkg, tmp_path, sources, flags, words):
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    port = _closed_port()
    proc = subprocess.run(_cli(*[s.format(port=port) for s in sources], *flags, "--package", str(pkg), "--jsonl",
                               str(out), "--max-seconds", "5"), capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and words in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert out.read_text() == "precious\n"  # nothing written: it failed before any output opened


@pytest.mark.camera
def test_cli_runs_the_others_while_an_rtsp_camera_is_down_and_recognises_it_when_it_comes_up(pkg, tmp_path,
                                                                                              gst_python):
    from test_runtime_rtsp import RtspServer

    port = _closed_port()
    server = RtspServer(gst_python, port)
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.Popen(_cli("a=" + LIVE_A, f"b={server.url}", "--package", str(pkg), "--jsonl", str(jsonl),
                                 "--max-seconds", "90"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        # the run goes on without b: b is reported lost, a is recognised
        _wait("lost line for b and a result for a", lambda: any(
            x["type"] == "stream" and x["stream"] == "b" and x["state"] == "lost" for x in _lines(jsonl)) and any(
            x["type"] == "result" and x["stream"] == "a" for x in _lines(jsonl)), 60, proc)
        server.start()  # the camera comes up on the port that refused the run's first open
        _wait("result for b", lambda: any(x["type"] == "result" and x["stream"] == "b" for x in _lines(jsonl)),
              40, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "did not open at start" in err and "error:" not in err
    lines = _lines(jsonl)
    assert_valid_jsonl(lines)
    states = [(x["stream"], x["state"]) for x in lines if x["type"] == "stream"]
    assert states[:2] == [("b", "lost"), ("b", "restored")], states
    restored_at = next(i for i, x in enumerate(lines) if x["type"] == "stream" and x["state"] == "restored")
    assert not any(x["type"] == "result" and x["stream"] == "b" for x in lines[:restored_at])
    assert any(x["type"] == "result" and x["stream"] == "a" for x in lines[:restored_at])
