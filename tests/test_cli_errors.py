"""Bad input, a refusing filesystem or network: every CLI ends in one ``error:`` line and exit 2, with nothing
half-written and nothing of the user's destroyed (issue 12). Build-specific cases are in test_build.py."""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aknet_edge.cli_common import run_cli
from conftest import REPO

OLD_PKG = REPO / "tests" / "data" / "package-0.2.0"  # a package that runs without building anything


def _run(module: str, *args: str, cwd=None, fsize: int | None = None, timeout: float = 300):
    def limit():  # a tiny file size limit: writes fail with EFBIG like a full disk (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd or REPO), preexec_fn=limit if fsize else None)


def _one_error(stderr: str, rc: int, words: str = "") -> str:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert words in errors[0], errors[0]
    return errors[0]


def _in_process(main, argv, capsys, words):
    """The same run_cli path as the subprocess tests, without an interpreter start per case."""
    rc = run_cli(main, argv)
    err = capsys.readouterr().err
    return _one_error(err, rc, words)


# -- numeric options, range-checked in every CLI ------------------------------------------------------

def _mains():
    from aknet_edge import build, evaluate, flops, run, train
    from aknet_edge.export import __main__ as export

    return {"build": build.main, "train": train.main, "evaluate": evaluate.main, "flops": flops.main,
            "run": run.main, "export": export.main}


@pytest.mark.parametrize("cli,argv,words", [
    ("train", ["--epochs", "0"], "--epochs 0: expected a whole number >= 1"),
    ("train", ["--batch", "-2"], "--batch -2: expected a whole number >= 1"),
    ("train", ["--clips-per-class", "0"], "--clips-per-class 0: expected a whole number >= 1"),
    ("train", ["--lr", "nan"], "--lr nan: expected a finite number > 0"),
    ("train", ["--lr", "-0.1"], "--lr -0.1: expected a finite number > 0"),
    ("train", ["--threads", "0"], "--threads 0: expected a whole number >= 1"),
    ("train", ["--seed", "-1"], "--seed -1: expected a whole number >= 0 and <= 4294967295"),
    ("train", ["--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
    ("evaluate", ["--clips-per-class", "0"], "--clips-per-class 0: expected a whole number >= 1"),
    ("evaluate", ["--seed", "-3"], "--seed -3: expected a whole number >= 0"),
    ("flops", ["--set", "keep_ratio=nan"], "--set keep_ratio=nan: expected a finite number"),
    ("flops", ["--set", "queries=2.5"], "--set queries=2.5: expected a whole number"),
    ("export", ["--out", "x.onnx", "--set", "keep_ratio=abc"], "--set keep_ratio=abc: expected a finite number"),
    ("build", ["--workspace", "-5"], "--workspace -5: expected at least 1 MiB"),
    ("build", ["--dla", "-1"], "--dla -1: expected a DLA core number"),
    ("build", ["--calib-clips", "-3"], "--calib-clips -3: expected at least 1"),
    ("build", ["--calib-percentile", "nan"], "--calib-percentile nan: expected a value in [90, 100)"),
    ("build", ["--eval-clips-per-class", "-1"], "--eval-clips-per-class -1: expected at least 1"),
    ("build", ["--bogus"], "unrecognized arguments: --bogus"),
    ("run", ["--stride", "nan"], "--stride nan: expected a finite number > 0 seconds"),
    ("run", ["--stride", "0"], "--stride 0.0: expected a finite number > 0 seconds"),
    ("run", ["--threads", "-1"], "--threads -1: expected a whole number >= 1"),
    ("run", ["--stats", "0"], "--stats 0.0: expected a finite number > 0 seconds"),
    ("run", ["--max-seconds", "-1"], "--max-seconds -1.0: expected a finite number > 0 seconds"),
    ("run", ["--min-duration", "nan"], "--min-duration nan: expected a finite number >= 0 seconds"),
    ("run", ["--enter", "inf"], "--enter inf: expected a finite number >= 0 and <= 1"),
    ("run", ["--preview-port", "70000"], "--preview-port 70000: expected a whole number >= 0 and <= 65535"),
    ("run", ["--preview-port", "-1"], "--preview-port -1: expected a whole number >= 0 and <= 65535"),
    ("run", ["--threads", "two"], "argument --threads: invalid int value: 'two'"),
])
def test_numeric_options_are_range_checked(cli, argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = {"train": ["--out", "m.safetensors"], "build": ["--out", "pkg"], "run": ["--package", "none"]}
    _in_process(_mains()[cli], [*argv, *extra.get(cli, [])], capsys, words)
    assert list(tmp_path.iterdir()) == []  # nothing written, no lock, no temporary


@pytest.mark.parametrize("module,argv,words", [
    ("aknet_edge.train", ["--out", "m.safetensors", "--lr", "nan"], "--lr nan"),
    ("aknet_edge.evaluate", ["--seed", "-3"], "--seed -3"),
    ("aknet_edge.flops", ["--set", "keep_ratio=nan"], "keep_ratio=nan"),
    ("aknet_edge.export", ["--out", "x.onnx", "--set", "queries=x"], "queries=x"),
    ("aknet_edge.run", ["--stride", "nan"], "--stride nan"),
    ("aknet_edge.build", ["--out", "pkg", "--workspace", "-1"], "--workspace -1"),
])
def test_each_cli_prints_one_error_line(module, argv, words, tmp_path):
    r = _run(module, *argv, cwd=tmp_path)
    _one_error(r.stderr, r.returncode, words)
    assert list(tmp_path.iterdir()) == []


# -- outputs refused before any work ------------------------------------------------------------------

def test_unwritable_outputs_are_refused_before_the_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "adir").mkdir()
    m = _mains()
    _in_process(m["train"], ["--out", "adir"], capsys, "cannot write --out adir: it is a folder")
    _in_process(m["train"], ["--out", "afile/m.safetensors"], capsys, "afile is a file, not a folder")
    _in_process(m["evaluate"], ["--json", "adir"], capsys, "cannot write --json adir: it is a folder")
    _in_process(m["flops"], ["--json", "afile/x.json"], capsys, "afile is a file, not a folder")
    _in_process(m["export"], ["--out", "adir"], capsys, "cannot write --out adir: it is a folder")
    _in_process(m["export"], ["--split", "afile"], capsys, "--split afile: is a file")
    _in_process(m["run"], ["--package", "none", "--jsonl", "nodir/x.jsonl"], capsys,
                "cannot write --jsonl nodir/x.jsonl: folder nodir does not exist")
    _in_process(m["run"], ["--package", "none", "--jsonl", "adir"], capsys, "--jsonl adir: it is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
    assert (tmp_path / "afile").read_text() == "mine" and list((tmp_path / "adir").iterdir()) == []


def test_disk_full_leaves_no_partial_file(tmp_path):
    """A write the filesystem refuses (EFBIG here, as ENOSPC on a full disk): one error line, no temporary file."""
    r = _run("aknet_edge.flops", "--json", str(tmp_path / "cost.json"), cwd=tmp_path, fsize=200)
    _one_error(r.stderr, r.returncode, "cannot write")
    assert list(tmp_path.iterdir()) == []


# -- the run CLI: a run that fails to start keeps the user's log --------------------------------------

def test_a_run_that_fails_to_start_keeps_the_jsonl_file(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text('{"type": "event", "kept": true}\n')
    r = _run("aknet_edge.run", "/no/such/video.mp4", "--package", str(OLD_PKG), "--jsonl", str(log), timeout=60)
    _one_error(r.stderr, r.returncode, "no such file")
    assert log.read_text() == '{"type": "event", "kept": true}\n'
    r = _run("aknet_edge.run", "synthetic://?seed=1&segments=2&speed=0&block=true", "--package", str(OLD_PKG),
             "--jsonl", str(log), "--max-seconds", "20", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]  # a run that started replaced it
    assert lines and all(o["type"] in ("result", "event") and "kept" not in o for o in lines)


def test_busy_preview_port_is_an_error_and_keeps_the_jsonl_file(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text("old\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _run("aknet_edge.run", "--package", str(OLD_PKG), "--jsonl", str(log), "--preview-port", str(port),
                 timeout=60)
    _one_error(r.stderr, r.returncode, f"--preview-port {port}: cannot serve the preview on 127.0.0.1:{port}: "
                                       "already in use")
    assert log.read_text() == "old\n"


# -- the shared pieces --------------------------------------------------------------------------------

@pytest.mark.parametrize("code,words", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"),
])
def test_atomic_writes_map_filesystem_errors_and_leave_nothing(tmp_path, monkeypatch, code, words):
    from aknet_edge import io_utils
    from aknet_edge.errors import AknetError

    target = tmp_path / "out.json"
    target.write_text("previous")

    def refuse(src, dst):
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(io_utils.os, "replace", refuse)
    with pytest.raises(io_utils.WriteError) as info:
        io_utils.atomic_write_text(target, "new")
    assert isinstance(info.value, AknetError) and isinstance(info.value, OSError) and info.value.errno == code
    assert str(info.value).startswith(f"cannot write {target}: {words}")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and target.read_text() == "previous"


def test_an_os_error_anywhere_is_one_line(capsys):
    def main(argv):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused", "rtsp://cam")

    rc = run_cli(main, [])
    _one_error(capsys.readouterr().err, rc, "error: rtsp://cam: Connection refused")


def test_sigterm_raises_in_the_main_thread_like_ctrl_c(capsys):
    import signal

    def main(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(main, []) == 143
    assert "terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before  # restored


# -- calibration cache --------------------------------------------------------------------------------

def _clips_folder(path: Path) -> Path:
    import cv2

    path.mkdir()
    for k in range(3):
        frames = path / f"clip{k}"
        frames.mkdir()
        for i in range(8):
            img = np.full((64, 64, 3), 40 + 30 * k, np.uint8)
            cv2.rectangle(img, (4 + 5 * i, 20), (20 + 5 * i, 40), (200, 30, 30), -1)
            cv2.imwrite(str(frames / f"{i:04d}.png"), img)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "pickled", "wrong-shape"])
def test_a_corrupt_calibration_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    from aknet_edge.calibration import load_calibration_set
    from aknet_edge.config import preset

    spec = preset("demo-tiny").clip
    data = _clips_folder(tmp_path / "clips")
    cache = tmp_path / "cache"
    first = load_calibration_set(str(data), spec, n_clips=3, seed=0, cache_dir=cache)
    (npz,) = cache.glob("calib-*.npz")
    if damage == "truncated":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "garbage":
        npz.write_bytes(b"not a numpy archive at all")
    elif damage == "pickled":  # an object array would need unpickling: refused, never loaded
        with open(npz, "wb") as fh:
            np.savez(fh, clips=np.array([{"x": 1}], dtype=object), skipped=np.array(0))
    else:
        with open(npz, "wb") as fh:
            np.savez(fh, clips=np.zeros((3, 2, 2), np.float32), skipped=np.array(0))
    again = load_calibration_set(str(data), spec, n_clips=3, seed=0, cache_dir=cache)
    assert not again.from_cache and np.array_equal(first.clips, again.clips)
    assert any("corrupt" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    third = load_calibration_set(str(data), spec, n_clips=3, seed=0, cache_dir=cache)  # the rebuilt cache is good
    assert third.from_cache and np.array_equal(first.clips, third.clips)
    assert [p.name for p in cache.iterdir()] == [npz.name]


def test_a_closed_stdout_is_not_an_error(tmp_path):
    """``python -m aknet_edge.flops | head -1``: the reader leaving is the shell's SIGPIPE exit, quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "aknet_edge.flops"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=str(tmp_path))
    proc.stdout.close()  # gone before the first line is printed
    proc.stdout = None
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err and "error:" not in err
