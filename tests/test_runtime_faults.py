"""Faults that must not stop recognition: outputs failing at run time, frames changing size, several readers,
and a package without keypoints (the TSM baseline)."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from aknet_edge.runtime import Recognizer
from aknet_edge.runtime import jsonl as jsonl_mod
from aknet_edge.runtime import video_out as video_mod
from aknet_edge.runtime.jsonl import LineWriter
from aknet_edge.runtime.sources import EndOfStream
from aknet_edge.runtime.sources.memory import ArraySource

from conftest import REPO

PKG = Path(__file__).parent / "data" / "package-0.2.0"


def _frames(n: int, h: int = 64, w: int = 64, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), np.uint8) for _ in range(n)]


def _expected_results(n_frames: int) -> int:
    """Results of the committed package (2 s windows, one every sample period 2/7 s) over n frames at 15 fps."""
    with Recognizer(PKG, ArraySource(_frames(n_frames))) as rec:
        return len(list(rec))


@pytest.fixture(scope="module")
def n45():
    return _expected_results(45)


def _warnings(caplog, words: str) -> list:
    return [r for r in caplog.records if r.levelno == logging.WARNING and words in r.getMessage()]


# --------------------------------------------------------------------------- JSON Lines


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_jsonl_on_a_full_disk_warns_once_and_recognition_goes_on(caplog, n45):
    caplog.set_level(logging.WARNING)
    with Recognizer(PKG, ArraySource(_frames(45)), jsonl="/dev/full") as rec:
        results = list(rec)
        assert rec.jsonl.failed is not None
    assert len(results) == n45
    assert len(_warnings(caplog, "No space left")) == 1


class _FillingStream(io.StringIO):
    """A text stream whose disk fills during the ``fail_at``-th write: half of that line gets out, then ENOSPC."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.writes = 0
        self.fail_at = fail_at

    def write(self, s: str) -> int:
        self.writes += 1
        if self.writes >= self.fail_at:
            if self.writes == self.fail_at:
                super().write(s[: len(s) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(s)


def test_a_stream_filling_up_never_keeps_half_a_line(caplog, n45):
    caplog.set_level(logging.WARNING)
    out = _FillingStream(fail_at=4)
    with Recognizer(PKG, ArraySource(_frames(45)), jsonl=out) as rec:
        results = list(rec)
    assert len(results) == n45
    text = out.getvalue()
    assert text.endswith("\n") and len(text.splitlines()) == 3
    assert all(json.loads(ln)["type"] in ("result", "event") for ln in text.splitlines())
    assert out.writes == 4  # nothing tried after the failure
    assert len(_warnings(caplog, "No space left")) == 1


def test_a_file_filling_up_is_cut_back_to_the_last_whole_line(tmp_path, monkeypatch, caplog):
    """The kernel writes part of a line, then the disk is full: the part is taken back."""
    path = tmp_path / "out.jsonl"
    w = LineWriter(path)
    real_write = os.write
    calls = {"n": 0}

    def write(fd, data):
        if fd != w._fd:
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] == 3:
            return real_write(fd, bytes(data[:7]))  # a short write...
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... and then no space for the rest
        return real_write(fd, data)

    monkeypatch.setattr(jsonl_mod.os, "write", write)
    caplog.set_level(logging.WARNING)
    assert w.write_line('{"a":1}') and w.write_line('{"b":2}')
    assert not w.write_line('{"c":"a longer line"}')
    assert not w.write_line('{"d":4}')
    w.close()
    monkeypatch.undo()
    assert path.read_text() == '{"a":1}\n{"b":2}\n'
    assert w.failed and len(_warnings(caplog, "writing failed")) == 1


def test_a_closed_pipe_warns_once(caplog):
    caplog.set_level(logging.WARNING)
    r, wfd = os.pipe()
    os.close(r)  # the reader went away
    with os.fdopen(wfd, "w") as fh:
        w = LineWriter(fh)
        assert not w.write_line("x") and not w.write_line("y")
        assert w.failed == "the reader went away"
    assert len(_warnings(caplog, "writing failed")) == 1


def test_a_compressed_stream_is_written_through_its_own_layers(tmp_path):
    import gzip

    path = tmp_path / "out.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        w = LineWriter(fh)
        assert w.write_line('{"a":1}') and w.write_line('{"b":2}')
    assert gzip.decompress(path.read_bytes()) == b'{"a":1}\n{"b":2}\n'


def _cli(*args: str) -> list:
    return [sys.executable, "-m", "aknet_edge.run", "synthetic://?seed=1&segments=20&speed=3&size=112",
            "--package", str(PKG), "--max-seconds", "6", "--stats", "100", *args]


def _head(cmd: list, n: int) -> tuple:
    """``cmd | head -n n``: read n lines, then close the pipe while the run goes on."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        got = [proc.stdout.readline() for _ in range(n)]
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, got, err.decode(errors="replace")


def _final_results(stderr: str) -> int:
    stats = [ln for ln in stderr.splitlines() if "results" in ln and "capture" in ln]
    return int(stats[-1].rsplit("results", 1)[1])


def test_jsonl_to_stdout_piped_into_head_keeps_recognising():
    rc, got, err = _head(_cli("--jsonl", "-"), 3)
    assert all(json.loads(ln)["type"] in ("result", "event") for ln in got)
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.count("writing failed") == 1
    assert _final_results(err) > 3  # recognition went on after the reader left


def test_printed_events_piped_into_head_keep_recognising():
    rc, got, err = _head(_cli("--min-duration", "0"), 1)
    assert got[0].strip()
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err
    assert _final_results(err) > 3


# --------------------------------------------------------------------------- the output video


def _count_frames(path: Path) -> tuple:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n, size = n + 1, img.shape
    cap.release()
    return n, size


def test_frames_of_another_size_reach_every_output(tmp_path):
    video = tmp_path / "out.avi"
    out = io.StringIO()
    frames = _frames(45, 64, 64) + _frames(45, 96, 128, seed=1)  # the camera changes resolution mid-stream
    with Recognizer(PKG, ArraySource(frames), output_video=str(video), jsonl=out, keep_images=True,
                    preview_port=0) as rec:
        results = list(rec)
        served = rec.preview.wait_frame(-1, 1.0)[1]
    sizes = {r.image.shape[:2] for r in results}
    assert sizes == {(64, 64), (96, 128)}
    n, shape = _count_frames(video)
    assert n == len(results) and shape[:2] == (64, 64)  # every window's frame, fitted to the first size
    assert len([ln for ln in out.getvalue().splitlines() if json.loads(ln)["type"] == "result"]) == len(results)
    # the page shows the newest size, scaled for display as the run CLI's page does (x5: 96 x 128 -> 480 x 640)
    assert cv2.imdecode(np.frombuffer(served, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (480, 640)


def test_fit_frame_keeps_the_aspect_ratio():
    img = np.full((96, 128, 3), 255, np.uint8)
    fitted = video_mod.fit_frame(img, (64, 64))
    assert fitted.shape == (64, 64, 3)
    assert fitted[:8].max() == 0 and fitted[-8:].max() == 0 and fitted[32].min() == 255  # bars above and below
    assert video_mod.fit_frame(img, (128, 96)) is img


def test_output_video_on_a_full_disk_warns_once_and_recognition_goes_on(tmp_path, monkeypatch, caplog, n45):
    """OpenCV's writer does not report a full disk; the output checks the space left and stops before it."""
    free = {"calls": 0}

    def free_bytes(folder):
        free["calls"] += 1
        return 10 << 20 if free["calls"] <= 3 else 0

    monkeypatch.setattr(video_mod, "free_bytes", free_bytes)
    caplog.set_level(logging.WARNING)
    video = tmp_path / "out.avi"
    with Recognizer(PKG, ArraySource(_frames(45)), output_video=str(video)) as rec:
        results = list(rec)
        assert rec.video.failed
    assert len(results) == n45
    assert len(_warnings(caplog, "output video")) == 1
    assert not video.exists() and not list(tmp_path.iterdir())  # nothing broken left under the name, no temporary


def test_an_output_that_raises_is_switched_off_once(monkeypatch, caplog, n45):
    from aknet_edge.runtime import preview as preview_mod

    def broken(self, stream, render):
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(preview_mod.MjpegServer, "publish_render", broken)  # the page's frame path
    caplog.set_level(logging.WARNING)
    with Recognizer(PKG, ArraySource(_frames(45)), preview_port=0) as rec:
        assert len(list(rec)) == n45
    assert len(_warnings(caplog, "encoder broke")) == 1


# --------------------------------------------------------------------------- the preview server


def _hang_up(port: int, path: str, read_first: bool) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    if read_first:
        s.recv(4096)  # mid-stream
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # hang up hard (RST)
    s.close()


def test_preview_clients_hanging_up_are_not_errors(capfd):
    frames = _frames(75)
    with Recognizer(PKG, ArraySource(frames, speed=1.0), preview_port=0) as rec:
        port = rec.preview.port
        results = []
        it = iter(rec)
        results.append(next(it))
        for path, read_first in (("/", True), ("/frame.jpg", False), ("/", False)):
            _hang_up(port, path, read_first)
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # the server still serves
            s.sendall(f"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.0 200")
        results += list(it)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err[-2000:]
    assert len(results) == _expected_results(75)


# --------------------------------------------------------------------------- readers


def test_every_reader_thread_sees_the_end():
    rec = Recognizer(PKG, ArraySource(_frames(60)))
    ends: list = []
    got: list = []

    def next_until_end():
        try:
            while True:
                got.append(rec.next_result())
        except EndOfStream:
            ends.append("next_result")

    def iterate():
        got.extend(rec)
        ends.append("iter")

    threads = [threading.Thread(target=f, daemon=True) for f in (next_until_end, next_until_end, iterate)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not [t for t in threads if t.is_alive()], "a reader never saw the end"
        assert sorted(ends) == ["iter", "next_result", "next_result"]
        assert got and rec.stats().results == len(got)
        with pytest.raises(EndOfStream):  # and a late reader too
            rec.next_result(timeout=1)
    finally:
        rec.close()


# --------------------------------------------------------------------------- a package without keypoints


def test_a_graph_without_keypoints_gives_none():
    from aknet_edge.runtime.backends import Backend

    out = Backend._outputs({"logits": np.zeros((2, 11), np.float32)})
    assert out.keypoints.shape == (2, 0, 3) and out.keypoint_scores.shape == (2, 0)


@pytest.fixture(scope="module")
def tsm_package(tmp_path_factory):
    pytest.importorskip("torch", reason="building the TSM package needs torch")
    import aknet_edge.config
    from aknet_edge.build import BuildOptions, build

    out = tmp_path_factory.mktemp("tsm") / "pkg"
    build(BuildOptions(out=out, checkpoint=aknet_edge.config.WEIGHTS_DIR / "demo-tiny-tsm.safetensors",
                       precision="fp32", eval_clips_per_class=1, compare_methods=False, progress=False))
    return out


@pytest.mark.slow
def test_a_tsm_package_runs_without_keypoints(tsm_package, tmp_path):
    out = io.StringIO()
    video = tmp_path / "tsm.avi"
    with Recognizer(tsm_package, "synthetic://?seed=3&segments=2&speed=0&block=true&size=112", jsonl=out,
                    output_video=str(video), preview_port=0) as rec:
        assert not rec.incremental  # the TSM package has the whole-clip graph only
        results = list(rec)
    assert results and all(r.keypoints == [] for r in results)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert [o["keypoints"] for o in lines if o["type"] == "result"] == [[]] * len(results)
    assert _count_frames(video)[0] == len(results)
