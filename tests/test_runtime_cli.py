"""``python -m aknet_edge.run``: JSON Lines out, clean stop on SIGINT, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from test_runtime_support import demo_package


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aknet_edge.run", *args]


@pytest.mark.parametrize("overlap", ["--overlap", "--no-overlap"])
def test_jsonl_to_stdout(pkg, overlap):
    uri = "synthetic://?seed=1&segments=3&speed=2&block=1"  # block: a busy runner's pause drops no frame
    proc = subprocess.run(_cli(uri, "--package", str(pkg), "--max-seconds", "3", "--jsonl", "-", overlap),
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    results = [o for o in lines if o["type"] == "result"]
    assert results and all(o["type"] in ("result", "event") for o in lines)
    r = results[0]
    assert {"timestamp", "window_start", "label", "confidence", "top_k", "keypoints", "latency_ms", "fps"} <= set(r)
    assert r["timestamp"] == pytest.approx(2.0)


def test_sigint_stops_cleanly_and_flushes(pkg, tmp_path):
    out = tmp_path / "run.jsonl"
    video = tmp_path / "run.avi"
    proc = subprocess.Popen(_cli("synthetic://?seed=1&segments=20", "--package", str(pkg), "--jsonl", str(out),
                                 "--output-video", str(video)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(line)["type"] in ("result", "event") for line in lines)
    assert video.is_file() and video.stat().st_size > 0  # renamed into place at close
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries left


def test_bad_source_is_one_line_error(pkg):
    proc = subprocess.run(_cli("/no/such/video.mp4", "--package", str(pkg)), capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no such file" in errors[0]
    assert "Traceback" not in proc.stderr


def test_no_package_without_torch_says_how_to_get_one(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from aknet_edge.cli_common import run_cli\n"
            "from aknet_edge.run import main\n"
            "sys.exit(run_cli(main, ['--max-seconds', '1']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "--package" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,words", [
    (["synthetic://?seed=1&sped=0"], "unknown synthetic source option 'sped' (did you mean 'speed'?)"),
    (["synthetic://?seed=1", "--source-option", "buffer_sise=1"], "'buffer_sise'"),
    (["synthetic://?seed=1", "--source-option", "fps"], "expected KEY=VALUE"),
    (["synthetic://?seed=1", "--buffer", "0"], "buffer_size"),
])
def test_source_option_mistakes_are_one_error_line(pkg, args, words):
    proc = subprocess.run(_cli(*args, "--package", str(pkg), "--max-seconds", "2"), capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and words in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_source_options_from_the_cli_reach_the_source(pkg):
    proc = subprocess.run(_cli("synthetic://?seed=1&segments=1", "--source-option", "speed=0", "--source-option",
                               "block=true", "--buffer", "2", "--package", str(pkg), "--max-seconds", "20",
                               "--jsonl", "-"), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    opened = [ln for ln in proc.stderr.splitlines() if "opened synthetic://" in ln]
    assert opened and "speed=0.0" in opened[0] and "block=true" in opened[0] and "buffer_size=2" in opened[0]


def test_rtsp_transport_is_refused_by_a_non_rtsp_source(pkg):
    proc = subprocess.run(_cli("synthetic://?seed=1", "--rtsp-transport", "udp", "--package", str(pkg),
                               "--max-seconds", "2"), capture_output=True, text=True, timeout=60, cwd=REPO)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "rtsp_transport" in errors[0], proc.stderr[-2000:]


def test_help_sources_lists_every_kinds_options():
    proc = subprocess.run(_cli("--help-sources"), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0
    for needle in ("network:", "rtsp_transport=", "reconnect_max_s=", "open_timeout_s=", "synthetic:", "folder:"):
        assert needle in proc.stdout
