"""``python -m aknet_edge.run SRC SRC ...``: named streams in JSON Lines, stats per stream, a video per stream,
one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_runtime_support import demo_package

REPO = Path(__file__).resolve().parents[1]
A = "synthetic://?seed=1&segments=2&speed=0&size=112&block=1"
B = "synthetic://?seed=2&segments=2&speed=0&size=112&fps=10&block=1"


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aknet_edge.run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_two_streams_named_in_every_line_with_stats_and_a_video_each(pkg, tmp_path):
    out = tmp_path / "run.jsonl"
    video = tmp_path / "run.avi"
    proc = _run(f"front={A}", B, "--package", str(pkg), "--jsonl", str(out), "--stats", "100",
                "--output-video", str(video))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(x["stream"] in ("front", "1") for x in lines)
    for name in ("front", "1"):
        assert [x for x in lines if x["stream"] == name and x["type"] == "result"]
    assert [x for x in lines if x["type"] == "event"]
    stats = [x for x in proc.stderr.splitlines() if " | source " in x]
    assert any(x.startswith("stream front |") for x in stats) and any(x.startswith("stream 1 |") for x in stats)
    total = [x for x in stats if x.startswith("total (2 streams)")]
    per = {x.split(" |")[0]: int(x.rsplit("results", 1)[1]) for x in stats[-3:]}
    assert total and per["total (2 streams)"] == per["stream front"] + per["stream 1"]
    for name in ("front", "1"):
        assert (tmp_path / f"run-{name}.avi").stat().st_size > 0
    assert not video.exists()


@pytest.mark.parametrize("args,words", [
    (["a=" + A, "a=" + B], "given twice"),
    ([A, "/no/such/video.mp4"], "no such file"),
    (["bad name=" + A, B], "no such file"),
])
def test_bad_stream_lists_are_one_error_line(pkg, tmp_path, args, words):
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    proc = _run(*args, "--package", str(pkg), "--jsonl", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert out.read_text() == "precious\n"
