"""Camera credentials never reach a log, telemetry, the page, JSON Lines or an error message."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from aknet_edge.redact import MASK, redact
from aknet_edge.runtime import MultiRecognizer
from aknet_edge.runtime import sources as S

REPO = Path(__file__).resolve().parents[1]
PKG = Path(__file__).parent / "data" / "package-0.2.0"
SECRET = "s3cr3tPW"
CAM = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream?open_timeout_s=1"  # a closed port: never opens


@pytest.mark.parametrize("text, want", [
    (f"rtsp://admin:{SECRET}@cam/s", f"rtsp://admin:{MASK}@cam/s"),
    (f"opened http://u:{SECRET}@h:80/x?a=1", f"opened http://u:{MASK}@h:80/x?a=1"),
    (f"udp://h:5000?token={SECRET}&fifo_size=1", f"udp://h:5000?token={MASK}&fifo_size=1"),
    (f"x?Password={SECRET}", f"x?Password={MASK}"),
    ("rtsp://cam/stream?transport=tcp", "rtsp://cam/stream?transport=tcp"),  # nothing secret: unchanged
    ("user@example.com a=b", "user@example.com a=b"),
])
def test_redact(text, want):
    assert redact(text) == want and SECRET not in redact(text)


def test_a_source_shows_only_its_redacted_uri():
    src = S.open_source(CAM, start=False)
    assert SECRET not in src.uri and "admin" in src.uri
    assert SECRET in str(src._target)  # the real one still opens the device


def test_the_run_cli_keeps_the_password_out_of_every_output(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", f"cam={CAM}",
                           "a=synthetic://?seed=1&segments=2&speed=2&size=112", "--package", str(PKG),
                           "--jsonl", str(out), "--stats", "1", "--max-seconds", "4"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr + out.read_text()
    assert "cam" in proc.stderr and MASK in proc.stderr  # the camera is named, its secret masked
    assert SECRET not in text, [ln for ln in text.splitlines() if SECRET in ln]


def test_the_run_cli_error_line_is_redacted(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", CAM, "--package", str(PKG)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert SECRET not in proc.stdout + proc.stderr


def test_the_library_keeps_the_password_out_of_logs_telemetry_page_and_jsonl(caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    with MultiRecognizer(PKG, {"cam": CAM, "a": "synthetic://?seed=1&segments=2&speed=2&size=112"}, jsonl=out,
                         preview_port=0, max_seconds=3) as rec:
        results = list(rec)
        stats = rec.stats()
        page = urllib.request.urlopen(rec.preview.url + "state.json", timeout=5).read().decode()
    assert results
    seen = "\n".join(r.getMessage() for r in caplog.records) + out.getvalue() + page + json.dumps(stats.to_dict()) \
        + json.dumps({k: v.to_dict() for k, v in stats.streams.items()})
    assert SECRET not in seen, [ln for ln in seen.splitlines() if SECRET in ln][:3]
