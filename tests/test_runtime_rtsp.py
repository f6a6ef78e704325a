"""RTSP against a real server: GStreamer's RTSP server on 127.0.0.1 serving H.264, over TCP and UDP.

The server (tests/peers/rtsp_server.py) runs under the system Python, which has GStreamer's introspection
(python3-gi, gir1.2-gst-rtsp-server-1.0); it prints the Transport header of every SETUP, so the tests see
which transport the runtime asked for. The camera is killed (SIGKILL) mid-stream and restarted on the same
port: the source reconnects by itself, and the time from the server listening again to the first frame
(and, through the Recognizer, to the first result) is measured and bounded by the reconnect cap
(``reconnect_max_s``) + one window span + 1 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

from aknet_edge.runtime import sources as S

PEERS = Path(__file__).parent / "peers"
PKG_020 = Path(__file__).parent / "data" / "package-0.2.0"
KEY_INT = 5  # frames between the server's key frames (a third of a second at 15 fps)
FPS = 15
CAP_S = 1.0  # the reconnect cap the restart tests use
ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# The wall-clock bound on "camera back -> first frame" beyond the cap: a stuck or uncapped reconnect is far slower;
# a freshly started server, FFmpeg's open and probe and its first key frame take ~1 s idle, several on a busy runner.
# That the backoff honours its cap is checked from the delays the source logs, which no load can stretch.
SLACK_S = 8.0


def _reconnect_delays(caplog) -> List[float]:
    """The backoff delays the source logged ("... attempt N in D s")."""
    return [float(r.args[-1]) for r in caplog.records
            if isinstance(r.args, tuple) and r.args and "attempt %d in %.2f s" in str(r.msg)]

pytestmark = [pytest.mark.camera]


def _system_python() -> Optional[str]:
    """A Python with GStreamer's introspection: this one if it has gi, else the system's."""
    for exe in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if exe and Path(exe).exists():
            probe = subprocess.run([exe, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                                   capture_output=True, timeout=60)
            if probe.returncode == 0:
                return exe
    return None


class RtspServer:
    """tests/peers/rtsp_server.py as a subprocess: start, kill, restart on the same port; SETUP lines kept."""

    def __init__(self, python: str, port: int = 0) -> None:
        self.python, self.port = python, port
        self.setups: List[str] = []
        self.proc: Optional[subprocess.Popen] = None
        self.ready_at = 0.0

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 30.0) -> "RtspServer":
        self.proc = subprocess.Popen(
            [self.python, str(PEERS / "rtsp_server.py"), "--port", str(self.port), "--fps", str(FPS),
             "--key-int", str(KEY_INT)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = threading.Event()
        first: List[str] = []

        def pump(out) -> None:
            for line in out:
                line = line.strip()
                if line.startswith("SETUP "):
                    self.setups.append(line[6:])
                elif not first:
                    first.append(line)
                    self.ready_at = time.monotonic()
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        ready.wait(timeout)
        line = first[0] if first else ""
        if not line.startswith("READY "):
            self.kill()
            if line.startswith("ERROR"):
                pytest.skip(f"RTSP test server unavailable: {line[6:]}")
            raise RuntimeError(f"RTSP test server did not start: {line or 'no output'}")
        self.port = int(line.split()[1])
        return self

    def kill(self) -> None:
        """The camera dies: SIGKILL, no goodbye to the clients."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc = None


@pytest.fixture(scope="module")
def gst_python():
    exe = _system_python()
    if exe is None:
        pytest.skip("no Python with GStreamer's RTSP server introspection (apt-get install python3-gi "
                    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                    "gstreamer1.0-plugins-ugly)")
    return exe


@pytest.fixture
def server(gst_python):
    srv = RtspServer(gst_python).start()
    yield srv
    srv.kill()


def _frames(src: S.Source, n: int, timeout: float) -> int:
    got, deadline = 0, time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        if src.read(timeout=0.5) is not None:
            got += 1
    return got


# --------------------------------------------------------------------------- transport


@pytest.mark.parametrize("transport, header", [(None, "RTP/AVP/TCP"), ("tcp", "RTP/AVP/TCP"), ("udp", "RTP/AVP/UDP")])
def test_rtsp_transport_is_the_users_choice_tcp_by_default(server, transport, header, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    opts = {} if transport is None else {"rtsp_transport": transport}
    with S.open_source(server.url, **opts) as src:
        assert _frames(src, 5, 15) == 5
        described = src.options.describe().split()
    # what the server saw (before, the runtime's own FFmpeg options silently switched OpenCV's TCP to UDP)
    assert server.setups and all(s.startswith(header) for s in server.setups), server.setups
    assert f"rtsp_transport={transport or 'tcp'}" in described  # logged as resolved when it opened
    assert ENV not in os.environ  # set only while OpenCV opened, then as it was


def test_users_ffmpeg_environment_is_merged_not_replaced(server, monkeypatch):
    # the user asks FFmpeg for TCP and a small probe in the environment; the runtime's own options join them
    monkeypatch.setenv(ENV, "rtsp_transport;tcp|probesize;65536")
    with S.open_source(server.url) as src:
        assert _frames(src, 3, 15) == 3
        given = dict(src.options.ffmpeg_options)
    assert server.setups[-1].startswith("RTP/AVP/TCP"), server.setups  # UDP before: the variable was replaced
    assert given["probesize"] == "65536" and given["rtsp_transport"] == "tcp"
    assert given["fflags"] == "nobuffer"  # the low-latency default is still there
    assert os.environ[ENV] == "rtsp_transport;tcp|probesize;65536"  # untouched

    # the user's environment chooses UDP; an explicit source option wins over it
    monkeypatch.setenv(ENV, "rtsp_transport;udp")
    with S.open_source(server.url) as src:
        assert _frames(src, 3, 15) == 3
        assert src.options.rtsp_transport == "udp"
    assert server.setups[-1].startswith("RTP/AVP/UDP"), server.setups
    with S.open_source(server.url, rtsp_transport="tcp") as src:
        assert _frames(src, 3, 15) == 3
    assert server.setups[-1].startswith("RTP/AVP/TCP"), server.setups
    assert os.environ[ENV] == "rtsp_transport;udp"


# --------------------------------------------------------------------------- the camera dies and comes back


def _restart_and_time(server: RtspServer, src: S.Source, outage_s: float) -> float:
    """Kill the server, keep it down ``outage_s`` (the backoff reaches its cap), restart it on the same port;
    seconds from the server listening again to the first new frame."""
    server.kill()
    deadline = time.monotonic() + 15
    while src.stats().connected and time.monotonic() < deadline:
        src.read(timeout=0.2)
    assert not src.stats().connected, "the loss of the stream was not noticed"
    end = time.monotonic() + outage_s
    while time.monotonic() < end:
        src.read(timeout=0.2)  # drain what was captured before the loss
    server.start()
    restored = server.ready_at
    deadline = restored + 30
    while time.monotonic() < deadline:
        frame = src.read(timeout=0.2)
        if frame is not None and frame.capture_ts > restored:
            return frame.capture_ts - restored
    raise AssertionError("no frame within 30 s of the camera coming back")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_camera_killed_and_restarted_reconnects_by_itself(server, transport, caplog):
    caplog.set_level("WARNING", logger="aknet_edge.runtime.sources")
    src = S.open_source(server.url, rtsp_transport=transport, reconnect_initial_s=0.2, reconnect_max_s=CAP_S,
                        read_timeout_s=4.0, open_timeout_s=4.0)
    try:
        assert _frames(src, 10, 15) == 10
        took = _restart_and_time(server, src, outage_s=3.0)
        print(f"\nrtsp/{transport}: camera back -> first frame {took:.2f} s (reconnect cap {CAP_S:g} s, "
              f"key frame every {KEY_INT / FPS:.2f} s)")
        st = src.stats()
        assert st.reconnects == 1 and st.connected and st.corrupt == 0
        assert _frames(src, 10, 10) == 10
        delays = _reconnect_delays(caplog)
        assert delays and max(delays) <= CAP_S + 1e-9, delays  # never longer than the cap, however long it was down
        assert took <= CAP_S + SLACK_S, took  # the cap, the open and the first key frame
        assert all(s.startswith("RTP/AVP/TCP" if transport == "tcp" else "RTP/AVP/UDP") for s in server.setups)
    finally:
        src.close()


def test_recognizer_resumes_after_the_rtsp_camera_restarts(server, caplog):
    """Through the Recognizer: results come back by themselves, the backoff never longer than its cap (first result
    about cap + one window span after the camera is back, on an idle machine)."""
    pytest.importorskip("onnxruntime")
    from aknet_edge.runtime import Recognizer

    caplog.set_level("WARNING", logger="aknet_edge.runtime.sources")
    arrivals: List[tuple] = []
    opts = {"reconnect_initial_s": 0.2, "reconnect_max_s": CAP_S, "read_timeout_s": 4.0, "open_timeout_s": 4.0}
    with Recognizer(PKG_020, server.url, backend="onnxruntime", source_options=opts,
                    on_result=lambda r: arrivals.append((time.monotonic(), r.timestamp))) as rec:
        span = rec.spec.span_s
        deadline = time.monotonic() + 30
        while len(arrivals) < 2 and time.monotonic() < deadline:
            rec.next_result(timeout=0.2)
        assert len(arrivals) >= 2, "no results from the first stream"
        server.kill()
        deadline = time.monotonic() + 15
        while rec.source.stats().connected and time.monotonic() < deadline:
            rec.next_result(timeout=0.2)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            rec.next_result(timeout=0.2)
        server.start()
        restored = server.ready_at
        deadline = restored + 30
        while time.monotonic() < deadline and not any(ts > restored for _, ts in arrivals):
            rec.next_result(timeout=0.2)
        after = [at for at, ts in arrivals if ts > restored]
        assert after, "no results after the camera came back"
        took = after[0] - restored
        print(f"\nrecognizer over rtsp/tcp: camera back -> first result {took:.2f} s (reconnect cap {CAP_S:g} s, "
              f"window span {span:g} s, key frame every {KEY_INT / FPS:.2f} s)")
        assert rec.source.stats().reconnects == 1
        delays = _reconnect_delays(caplog)
        assert delays and max(delays) <= CAP_S + 1e-9, delays
        assert took <= CAP_S + span + SLACK_S, took
