"""GStreamer sources: opening never hangs, a missing element is named with what installs it, finite pipelines end.

OpenCV's GStreamer open has no timeout of its own: ``csi://0`` where nvarguscamerasrc does not exist (any
non-Jetson) or a misspelled element blocked ``cv2.VideoCapture`` for minutes, and a pipeline with
``num-buffers=`` was restarted forever as a lost camera. The scenarios run in a subprocess
(tests/peers/gst_source.py), so that a hang fails by the subprocess's timeout instead of hanging the run: this
interpreter when its OpenCV has GStreamer (JetPack's, Debian's python3-opencv in a --system-site-packages
venv), else the system Python if its OpenCV has it; otherwise they skip, saying so. The element look-up itself
(through gst-inspect-1.0) needs no OpenCV.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from aknet_edge.runtime import sources as S
from aknet_edge.runtime.sources import gstreamer as G

PEER = Path(__file__).parent / "peers" / "gst_source.py"
GST_INSPECT = shutil.which("gst-inspect-1.0")
GST_LAUNCH = shutil.which("gst-launch-1.0")
BGR = "videoconvert ! video/x-raw,format=BGR ! appsink"

pytestmark = [pytest.mark.camera]


# --------------------------------------------------------------------------- parsing (no GStreamer needed)


def test_elements_of_a_pipeline():
    assert G.elements(G.csi_pipeline(0)) == ["nvarguscamerasrc", "nvvidconv", "videoconvert", "appsink"]
    assert G.elements("filesrc location=a.mp4 ! qtdemux name=d d.video_0 ! h264parse ! avdec_h264 ! appsink") == \
        ["filesrc", "qtdemux", "h264parse", "avdec_h264", "appsink"]
    assert G.elements("videotestsrc ! tee name=t t. ! queue ! appsink t. ! queue ! fakesink") == \
        ["videotestsrc", "tee", "queue", "appsink", "fakesink"]
    assert G.elements("( videotestsrc is-live=true ! x264enc ! rtph264pay name=pay0 pt=96 )") == \
        ["videotestsrc", "x264enc", "rtph264pay"]


@pytest.mark.parametrize("pipeline, finite", [
    ("videotestsrc num-buffers=30 ! appsink", True),
    ("videotestsrc num-buffers=-1 ! appsink", False),
    ("filesrc location=/x.avi ! avidemux ! jpegdec ! appsink", True),
    ("uridecodebin uri=file:///x.mp4 ! videoconvert ! appsink", True),
    ("multifilesrc location=img%05d.jpg ! jpegdec ! appsink", True),
    ("multifilesrc location=img%05d.jpg loop=true ! jpegdec ! appsink", False),
    ("videotestsrc is-live=true ! appsink", False),
    ("rtspsrc location=rtsp://cam/1 ! rtph264depay ! avdec_h264 ! appsink", False),
    (G.csi_pipeline(0), False),
])
def test_finite_pipelines_are_recognised(pipeline, finite):
    assert G.finite(pipeline) is finite


# --------------------------------------------------------------------------- the element look-up (gst-inspect-1.0)


@pytest.fixture
def inspect_registry(monkeypatch):
    """The registry as gst-inspect-1.0 lists it (the path a venv without gi takes)."""
    if GST_INSPECT is None:
        pytest.skip("gst-inspect-1.0 is not installed (apt-get install gstreamer1.0-tools)")
    reg = G._ask_gst_inspect(30)
    assert reg is not None and "videotestsrc" in reg[0], "gst-inspect-1.0 listed no elements"
    monkeypatch.setattr(G, "_REGISTRY", reg)
    return reg[0]


def test_missing_jetson_element_is_named_with_what_installs_it(inspect_registry):
    if "nvarguscamerasrc" in inspect_registry:
        pytest.skip("this machine has nvarguscamerasrc (a Jetson)")
    with pytest.raises(S.GStreamerElementError) as info:
        G.check_elements("csi://0", G.csi_pipeline(0))
    msg = str(info.value)
    assert isinstance(info.value, S.GStreamerUnavailableError) and "nvarguscamerasrc" in info.value.elements
    assert msg.startswith("csi://0: GStreamer has no element")
    assert "'nvarguscamerasrc'" in msg and "JetPack" in msg and "nvidia-l4t-gstreamer" in msg
    assert "/dev/video" in msg  # what to do instead on this machine
    assert "gst-inspect-1.0" in msg  # how it was found out


def test_misspelled_element_is_named_with_the_closest_one(inspect_registry):
    with pytest.raises(S.GStreamerElementError, match=r"'videotestsrcc'.*did you mean 'videotestsrc'"):
        G.check_elements("pipeline", "videotestsrcc ! videoconvert ! appsink")
    G.check_elements("pipeline", "videotestsrc ! videoconvert ! appsink")  # all there: no error


def test_known_element_names_its_package():
    msg = G.hints(["x264enc", "avdec_h264", "rtspsrc"])
    assert "gstreamer1.0-plugins-ugly" in msg and "gstreamer1.0-libav" in msg and "gstreamer1.0-plugins-good" in msg


def test_without_a_registry_nothing_is_checked(monkeypatch):
    monkeypatch.setattr(G, "_REGISTRY", ())  # neither gi nor gst-inspect-1.0: the open's deadline bounds it
    G.check_elements("pipeline", "videotestsrcc ! appsink")


# --------------------------------------------------------------------------- through OpenCV with GStreamer


def _opencv_gstreamer(python: str) -> bool:
    code = ("import cv2, sys\n"
            "lines = [l for l in cv2.getBuildInformation().splitlines() if l.strip().startswith('GStreamer:')]\n"
            "sys.exit(0 if lines and 'YES' in lines[0].split(':', 1)[1] else 1)\n")
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _gst_python() -> Optional[str]:
    if S._has_gstreamer():
        return sys.executable
    for exe in ("/usr/bin/python3", shutil.which("python3")):
        if exe and Path(exe).exists() and _opencv_gstreamer(exe):
            return exe
    return None


@pytest.fixture(scope="module")
def run_source():
    python = _gst_python()
    if python is None:
        pytest.skip("no OpenCV with GStreamer here (pip's wheels never have it; JetPack's OpenCV and Debian's "
                    "python3-opencv do: apt-get install python3-opencv gstreamer1.0-plugins-base "
                    "gstreamer1.0-plugins-good gstreamer1.0-tools)")

    def run(spec: Dict[str, Any], timeout: float = 60) -> Dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": ""}
        proc = subprocess.run([python, str(PEER), json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


def test_csi_where_nvarguscamerasrc_is_missing_fails_at_once(run_source):
    out = run_source({"uri": "csi://0"}, timeout=60)  # hung for minutes before
    if "error" not in out:
        pytest.skip("csi://0 opened: this machine is a Jetson with a camera")
    assert out["error"] == "GStreamerElementError", out
    assert "nvarguscamerasrc" in out["message"] and "JetPack" in out["message"]
    assert out["open_s"] < 15  # minutes before the fix; a first registry scan on a busy runner takes seconds


def test_misspelled_element_fails_at_once_naming_it(run_source):
    out = run_source({"uri": f"videotestsrcc ! {BGR}"})
    assert out["error"] == "GStreamerElementError", out
    assert "'videotestsrcc'" in out["message"] and "did you mean 'videotestsrc'" in out["message"]
    assert out["open_s"] < 15  # minutes before the fix; a first registry scan on a busy runner takes seconds


def test_unchecked_missing_element_is_bounded_by_the_open_deadline(run_source):
    # where the registry cannot be asked, the open itself is given up on at open_timeout_s
    out = run_source({"uri": f"videotestsrcc ! {BGR}", "options": {"open_timeout_s": 2}, "no_registry": True})
    assert out["error"] == "SourceOpenError", out
    assert "open_timeout_s" in out["message"] and "within 2 s" in out["message"]
    assert 1.9 <= out["open_s"] < 10  # the 2 s deadline, not the minutes an unbounded open hangs


def test_pipeline_that_never_starts_is_bounded_by_the_open_deadline(run_source, tmp_path):
    fifo = tmp_path / "never"
    os.mkfifo(fifo)  # filesrc blocks opening a FIFO that nobody writes
    out = run_source({"uri": f"filesrc location={fifo} ! decodebin ! {BGR}", "options": {"open_timeout_s": 2}})
    assert out["error"] == "SourceOpenError", out
    assert 1.9 <= out["open_s"] < 10  # the 2 s deadline, not the minutes an unbounded open hangs


def test_num_buffers_pipeline_ends_like_a_file(run_source):
    out = run_source({"uri": f"videotestsrc num-buffers=30 ! video/x-raw,width=64,height=48,framerate=30/1 ! {BGR}",
                      "seconds": 20})
    assert out["end"] == "EndOfStream", out  # restarted forever as a lost camera before
    assert out["frames"] == 30 and out["stats"]["reconnects"] == 0 and out["stats"]["dropped"] == 0
    assert out["live"] is False and "finite=true" in out["options"].split() and "block=true" in out["options"]
    assert out["media_ts"] == pytest.approx([0.0, 29 / 30])


def test_filesrc_pipeline_reads_the_whole_file(run_source, tmp_path):
    from aknet_edge.synthetic import write_long_video

    video = tmp_path / "clip.avi"
    segs = write_long_video(video, seed=3, n_segments=1, fps=15, size=64, seg_seconds=(1.0, 1.0))
    n = round(segs[-1].end * 15)
    out = run_source({"uri": f"filesrc location={video} ! avidemux ! jpegdec ! {BGR}"})
    assert out["end"] == "EndOfStream" and out["frames"] == n, out
    assert out["stats"]["reconnects"] == 0


def test_finite_false_keeps_a_pipeline_live(run_source):
    out = run_source({"uri": f"videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48,framerate=30/1 ! {BGR}",
                      "options": {"finite": "0", "reconnect_initial_s": 0.1, "reconnect_max_s": 0.2},
                      "frames": 12})
    assert out["end"] == "frames" and out["live"] is True, out  # the user's word wins: restarted as a live one
    assert out["stats"]["reconnects"] >= 2


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_pipeline_that_stalls_is_lost_and_comes_back(run_source):
    """A udpsrc pipeline whose sender dies: the read is given up on at read_timeout_s (it would block forever),
    the reopen at open_timeout_s while nothing arrives, and frames flow again once the sender is back."""
    if GST_LAUNCH is None:
        pytest.skip("gst-launch-1.0 is not installed (apt-get install gstreamer1.0-tools)")
    port = _free_udp_port()
    sender = [GST_LAUNCH, "-q", "videotestsrc", "is-live=true", "!",
              "video/x-raw,width=64,height=48,framerate=15/1,format=I420", "!", "jpegenc", "!", "rtpjpegpay", "!",
              "udpsink", "host=127.0.0.1", f"port={port}"]
    caps = "application/x-rtp,media=video,encoding-name=JPEG,payload=26,clock-rate=90000"
    out = run_source({"uri": f"udpsrc port={port} caps={caps} ! rtpjpegdepay ! jpegdec ! {BGR}",
                      "options": {"open_timeout_s": 2, "read_timeout_s": 1, "reconnect_initial_s": 0.2,
                                  "reconnect_max_s": 1},
                      "frames": 10, "restart": sender, "outage_s": 3, "frames_after": 10}, timeout=120)
    assert out["end"] == "restored", out
    assert out["stats"]["reconnects"] >= 1 and out["stats"]["failed_reads"] >= 1
    print(f"\ngstreamer udpsrc: sender back -> first frame {out['restore_to_frame_s']:.2f} s")
    # cap + one open deadline + the new sender's start (plugin loading) and first frame: ~1 s idle, more when busy
    assert 0 < out["restore_to_frame_s"] <= 1.0 + 2.0 + 6.0
