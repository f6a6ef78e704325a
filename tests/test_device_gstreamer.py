"""A raw GStreamer pipeline (``videotestsrc ... ! appsink``) end to end through ``python -m aknet_edge.run``.

It needs an OpenCV built with GStreamer: JetPack's, or Debian's python3-opencv, which .ci/run uses in a
``--system-site-packages`` venv (the README's Jetson install path). pip's OpenCV wheels have no GStreamer: the test
skips there with that reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PKG_020 = Path(__file__).parent / "data" / "package-0.2.0"
PIPELINE = "videotestsrc num-buffers=90 ! video/x-raw,width=112,height=112,framerate=15/1 ! videoconvert ! appsink"


def _opencv_has_gstreamer() -> bool:
    cv2 = pytest.importorskip("cv2")
    return any(line.split(":", 1)[1].strip().startswith("YES") for line in cv2.getBuildInformation().splitlines()
               if line.strip().startswith("GStreamer:"))


pytestmark = [pytest.mark.camera,
              pytest.mark.skipif(not _opencv_has_gstreamer(),
                                 reason="this OpenCV has no GStreamer (pip's wheels never do; JetPack's and Debian's "
                                        "python3-opencv do: see .ci/run's system-OpenCV venv)")]


def test_a_gstreamer_pipeline_runs_end_to_end():
    # 90 frames at 15 fps is 6 s of video: windows of 2 s give results. --max-seconds bounds the run whether the
    # pipeline's end stops the run or the source treats it as a lost stream and restarts it.
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", PIPELINE, "--package", str(PKG_020), "--jsonl", "-",
                           "--max-seconds", "20"], capture_output=True, text=True, timeout=90, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    results = [o for o in lines if o["type"] == "result"]
    assert len(results) >= 3, proc.stderr[-3000:]
    labels = set((PKG_020 / "labels.txt").read_text().split())
    assert all(r["label"] in labels and r["keypoints"] for r in results)
    assert "(gstreamer)" in proc.stderr  # opened as a GStreamer pipeline, not by another backend
