"""The build command end to end (portable package here: no TensorRT), the package contract, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from aknet_edge import package
from aknet_edge.build import BuildOptions, build
from aknet_edge.engine import engine_cache_key
from aknet_edge.evaluate import grid_positions, keypoint_iou
from aknet_edge.export.check import check, errors
from aknet_edge.export.targets import TENSORRT_TARGETS

REPO_PKG = Path(__file__).parent / "data" / "package-0.2.0"
FAST = dict(calib_clips=8, eval_clips_per_class=2, compare_methods=False, progress=False)


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "pkg"
    res = build(BuildOptions(out=out, **FAST))
    return out, res


def test_package_contents_and_manifest(pkg):
    out, res = pkg
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema_version"] == package.SCHEMA_VERSION
    assert m["labels"] == (out / "labels.txt").read_text().split()
    assert m["preprocessing"]["frames"] == 8 and m["preprocessing"]["sampling"] == "time"
    assert m["preprocessing"]["color"] == "RGB" and len(m["preprocessing"]["mean"]) == 3
    assert m["io"]["clip"]["inputs"][0] == {"name": "clip", "dtype": "float32", "shape": ["batch", 8, 3, 112, 112]}
    kinds = {(v["precision"], v.get("role")) for v in m["variants"]}
    assert {("fp32", "clip"), ("fp16", "clip"), ("int8", "clip"), ("fp32", "frame_encoder"), ("fp32", "clip_head")} <= kinds
    assert m["calibration"]["clips"] == 8 and m["calibration"]["method"] == "percentile"
    assert m["engine"] is None and "TensorRT not found" in res.next_step and "--from" in res.next_step
    assert not list(out.parent.glob(".pkg.building-*"))
    p = package.load(out)
    assert p.labels[0] == "no_action"


def test_precision_graphs_pass_every_tensorrt_check(pkg):
    out, _ = pkg
    p = package.load(out)
    for v in p.variants:
        g = onnx.load(str(p.path(v)))
        for t in TENSORRT_TARGETS:
            assert not errors(check(g, t)), (v.file, t)
    int8 = onnx.load(str(p.path(p.variant("int8"))))
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    # the keypoint path stays float: no Q/DQ feeds the scorer, TopK or the coordinate projection
    producers = {o: n for n in int8.graph.node for o in n.output}
    for n in int8.graph.node:
        if n.name.startswith(("/scorer", "/coord_proj", "/KeypointSelect")):
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in n.input), n.name
    # and so do the stem and the stage that feeds the scorer (INT8 keypoint overlap; README, INT8 section)
    for n in int8.graph.node:
        if n.op_type == "Conv" and n.name.startswith(("/encoder/conv1", "/encoder/layer2/")):
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in n.input), n.name
        if n.op_type == "Conv" and n.name.startswith("/encoder/layer1/"):
            assert any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)


def test_both_int8_forms_are_shipped_recorded_and_evaluated(pkg):
    """Issue 13, section 3: the Q -> DQ-on-FP32 form for TensorRT 8.x beside the INT8-initializer form for 10.x/11.x."""
    from aknet_edge.calibration import int8_weight_form
    from aknet_edge.evaluate import format_accuracy, run_onnx

    out, res = pkg
    p = package.load(out)
    forms = {v.weights: v for v in p.variants if (v.kind, v.precision) == ("onnx", "int8")}
    assert set(forms) == {"int8", "qdq"} and p.variant("int8") is forms["int8"]
    assert forms["qdq"].serves == ((8, 5), (10, 0)) and forms["int8"].serves == ((10, 0), None)
    for form, v in forms.items():
        assert int8_weight_form(onnx.load(str(p.path(v)))) == form
    m = p.manifest
    assert m.int8_graph_for((8, 6, 2)) is forms["qdq"] and m.int8_graph_for((10, 3, 0)) is forms["int8"]
    assert m.float_modules["fp16"] == ("scorer", "coord_proj") and "encoder.conv1" in m.float_modules["int8"]
    rows = {r.weights: r for r in res.variants if r.precision == "int8"}
    assert set(rows) == {"int8", "qdq"} and rows["qdq"].file == forms["qdq"].file
    assert "Q->DQ on FP32 (TensorRT 8.5 to 9.x)" in format_accuracy(res.variants)
    x = np.random.default_rng(5).standard_normal((2, 8, 3, 112, 112)).astype(np.float32)
    (la, ka), (lb, kb) = (run_onnx(p.path(forms[f]), x) for f in ("int8", "qdq"))
    assert np.abs(la - lb).max() <= 1e-4 and keypoint_iou(ka, kb, p.config.grid) == 1.0  # the same computation


def test_accuracy_report_per_variant(pkg):
    _, res = pkg
    by = {r.precision: r for r in res.variants}
    assert by["fp32"].agreement == 1.0 and by["fp32"].keypoint_iou == 1.0
    assert by["fp16"].keypoint_iou > 0.8 and by["int8"].keypoint_iou > 0.5
    assert all(r.clips == 22 for r in res.variants)


def test_tampered_package_is_refused(pkg, tmp_path):
    import shutil

    out, _ = pkg
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.int8.onnx", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(package.PackageError, match="SHA-256"):
        package.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(package.PackageError, match="not a model package"):
        package.load(copy)


def test_engine_mismatch_message(pkg):
    out, _ = pkg
    p = package.load(out)
    entry = package.Variant("model.int8.engine", "int8", "tensorrt", "0" * 64,
                            engine=package.EngineInfo(tensorrt_version="10.3.0", gpu="Orin"))
    with pytest.raises(package.PackageError, match=r"built for TensorRT 10.3.0 on Orin; this is 11.4.0 on RTX 4090: rebuild"):
        p.check_engine(entry, "11.4.0", "RTX 4090")
    p.check_engine(entry, "10.3.1", "Orin")  # same major.minor and GPU: fine


def test_engine_cache_key_covers_every_input():
    base = ("abc", "int8", {"input": [1]}, "10.3.0", "Orin", "8.7")
    keys = {engine_cache_key(*base)}
    for i, changed in enumerate(["abd", "fp16", {"input": [2]}, "10.4.0", "Thor", "9.0"]):
        args = list(base)
        args[i] = changed
        keys.add(engine_cache_key(*args))
    assert len(keys) == 7


def test_keypoint_iou_uses_grid_cells():
    grid = (8, 14, 14)
    cells = np.array([[[0, 0, 0], [7, 13, 13], [3, 5, 6]]], np.float32)
    coords = np.stack([cells[..., 0] / 7, (cells[..., 1] + 0.5) / 14, (cells[..., 2] + 0.5) / 14], -1)
    assert (grid_positions(coords, grid) == cells).all()
    noisy = coords.astype(np.float16).astype(np.float32)
    assert keypoint_iou(noisy, coords, grid) == 1.0
    half = coords.copy()
    half[0, 0] = coords[0, 2] * 0 + np.array([1 / 7, 0.5 / 14, 0.5 / 14])
    assert keypoint_iou(half, coords, grid) == pytest.approx(2 / 4)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "aknet_edge.build", "--no-progress", *args], capture_output=True,
                          text=True, timeout=900, cwd=cwd)


def test_cli_require_engine_and_bad_inputs(tmp_path):
    r = _cli("--out", str(tmp_path / "a"), "--require-engine", "--precision", "fp32", "--eval-clips-per-class", "1")
    assert r.returncode == 2 and "--require-engine" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "a").exists()
    r = _cli("--out", str(tmp_path / "b"), "--calib", str(tmp_path / "nowhere"), "--precision", "int8")
    assert r.returncode == 2 and "does not exist" in r.stderr and not (tmp_path / "b").exists()
    (tmp_path / "empty").mkdir()
    r = _cli("--out", str(tmp_path / "c"), "--calib", str(tmp_path / "empty"), "--precision", "int8")
    assert r.returncode == 2 and "no videos" in r.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.avi").write_bytes(b"garbage")
    r = _cli("--out", str(tmp_path / "d"), "--calib", str(bad), "--precision", "int8")
    assert r.returncode == 2 and "unreadable" in r.stderr
    corrupt = tmp_path / "m.safetensors"
    corrupt.write_bytes(b"\x00" * 10)
    r = _cli("--out", str(tmp_path / "e"), "--checkpoint", str(corrupt))
    assert r.returncode == 2 and "not a readable safetensors" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _cli("--out", str(blocker / "pkg"), "--precision", "fp32")
    assert r.returncode == 2 and "cannot write" in r.stderr
    r = _cli("--batch", "4,1,2")
    assert r.returncode == 2 and "MIN,OPT,MAX" in r.stderr
    r = _cli("--calib-percentile", "100")
    assert r.returncode == 2 and "[90, 100)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "empty", "file", "m.safetensors"]


def test_existing_output_needs_force(pkg):
    out, _ = pkg
    with pytest.raises(Exception, match="--force"):
        build(BuildOptions(out=out, **FAST))


def test_interrupt_leaves_no_package(tmp_path, monkeypatch):
    import aknet_edge.calibration as cal

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cal, "quantize_int8", boom)
    with pytest.raises(KeyboardInterrupt):
        build(BuildOptions(out=tmp_path / "pkg", **FAST))
    assert list(tmp_path.iterdir()) == []


def test_from_package_needs_tensorrt(pkg):
    out, _ = pkg
    pytest.importorskip  # noqa: B018
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: the --from path is exercised by the GPU tests")
    except ImportError:
        pass
    r = _cli("--from", str(out), "--out", str(out) + "-engine")
    assert r.returncode == 2 and "pip install tensorrt" in r.stderr


def test_check_only_reports_every_target_clean():
    r = _cli("--check-only")
    assert r.returncode == 0, r.stderr
    for t in TENSORRT_TARGETS:
        assert f"{t}: clean" in r.stdout


@pytest.mark.parametrize("field,value,words,flag", [
    ("calib_percentile", 100.0, "expected a value in [90, 100)", ["--calib-percentile", "100"]),
    ("batch", (4, 1, 2), "MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX", ["--batch", "4,1,2"]),
    ("calib_clips", 0, "--calib-clips 0: expected at least 1", ["--calib-clips", "0"]),
    ("workspace_mb", 0, "--workspace 0: expected at least 1 MiB", ["--workspace", "0"]),
    ("dla", -1, "--dla -1: expected a DLA core number", ["--dla", "-1"]),
    ("eval_clips_per_class", 0, "--eval-clips-per-class 0: expected at least 1", ["--eval-clips-per-class", "0"]),
])
def test_api_and_cli_reject_the_same_mistakes_with_the_same_words(tmp_path, field, value, words, flag):
    from aknet_edge.errors import AknetError

    with pytest.raises(AknetError) as info:
        BuildOptions(out=tmp_path / "x", **{field: value})
    assert words in str(info.value)
    r = _cli("--out", str(tmp_path / "y"), *flag)
    assert r.returncode == 2 and f"error: {info.value}" in r.stderr and not (tmp_path / "y").exists()


def test_cli_defaults_come_from_build_options():
    from dataclasses import fields

    from aknet_edge.build import options_from_args, parser

    assert options_from_args(parser().parse_args([])) == BuildOptions()
    assert {f.name for f in fields(BuildOptions)} >= {"calib_method", "calib_percentile", "batch"}


def test_option_combinations_the_era_table_rules_out(tmp_path):
    from aknet_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="TensorRT 11.0 has no implicit calibration"):
        BuildOptions(out=tmp_path / "x", calib_mode="implicit", target="tensorrt-11")
    BuildOptions(out=tmp_path / "x", calib_mode="implicit", target="tensorrt-10.3")  # 10.x still has it
    with pytest.raises(ConfigError, match="--workspace 1024.0"):
        BuildOptions(out=tmp_path / "x", workspace_mb=1024.0)
    with pytest.raises(ConfigError, match="force='no': expected True or False"):
        BuildOptions(out=tmp_path / "x", force="no")


def test_engine_precision_follows_the_package_and_the_calibration_mode():
    from aknet_edge.engine import engine_precision

    assert engine_precision("best", ["fp32", "fp16", "int8"]) == "int8"
    assert engine_precision("fp16", ["fp32", "fp16"]) == "fp16"
    assert engine_precision("int8", ["fp32"]) == "fp32"  # logged: the package has no INT8 graph
    assert engine_precision("int8", ["fp32"], "implicit") == "int8"  # TensorRT calibrates the FP32 graph itself


def test_from_package_for_onnxruntime_is_refused_before_anything_runs(tmp_path):
    r = _cli("--from", str(REPO_PKG), "--out", str(tmp_path / "o"), "--target", "onnxruntime")
    assert r.returncode == 2 and "nothing to build" in r.stderr and not (tmp_path / "o").exists()


# -- issue 12: --force replaces only a package; one build per --out; SIGTERM and a full disk leave nothing ----

def _one_error(r, words=""):
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert words in errors[0], errors[0]


FP32 = ("--precision", "fp32", "--eval-clips-per-class", "1", "--no-compare")


def test_force_never_deletes_the_current_folder_or_a_non_package(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep")
    r = _cli("--out", ".", "--force", *FP32, cwd=tmp_path)
    _one_error(r, "is the current folder or a parent of it")
    r = _cli("--out", "..", "--force", *FP32, cwd=tmp_path / "notes")
    _one_error(r, "is the current folder or a parent of it")
    r = _cli("--out", "notes", "--force", *FP32, cwd=tmp_path)
    _one_error(r, "is a folder but not a model package")
    r = _cli("--out", "mine.txt", "--force", *FP32, cwd=tmp_path)
    _one_error(r, "is a file, not a model package")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt", "notes"]
    assert (tmp_path / "mine.txt").read_text() == "precious" and (tmp_path / "notes" / "a.txt").read_text() == "keep"


def test_force_refuses_a_symlink_and_a_broken_manifest(tmp_path):
    from aknet_edge.errors import ConfigError

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    (tmp_path / "link").symlink_to(REPO_PKG)
    for name, words in (("broken", "not a model package"), ("link", "symbolic link")):
        with pytest.raises(ConfigError, match=words):
            build(BuildOptions(out=tmp_path / name, force=True, **FAST))
    assert (broken / "manifest.json").read_text() == "{not json" and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "link"]


def test_a_second_build_into_the_same_out_is_refused(tmp_path):
    from aknet_edge.staging import BuildLock

    lock = BuildLock(tmp_path / "pkg").acquire()  # another build holds --out
    try:
        r = _cli("--out", str(tmp_path / "pkg"), *FP32)
        _one_error(r, f"another build (pid {os.getpid()}) is writing")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".pkg.lock"]
    finally:
        lock.release()
    assert list(tmp_path.iterdir()) == []


def test_something_created_at_out_during_the_build_is_not_replaced(tmp_path):
    from aknet_edge.staging import Staging
    from aknet_edge.errors import ConfigError

    staging = Staging(tmp_path / "pkg", force=False)
    staging.tmp.mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "theirs.txt").write_text("keep")
    with pytest.raises(ConfigError, match="already exists"):
        staging.commit()
    staging.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"] and (tmp_path / "pkg" / "theirs.txt").is_file()


def test_force_replaces_a_package_and_clears_what_killed_builds_left(tmp_path):
    import shutil

    out = tmp_path / "pkg"
    shutil.copytree(REPO_PKG, out)
    (tmp_path / ".pkg.lock").write_text("999999\n")  # a killed build's lock: nobody holds it
    (tmp_path / ".pkg.building-999999").mkdir()  # and its temporary folder
    (tmp_path / ".pkg.building-999999" / "model.fp32.onnx").write_bytes(b"half")
    r = _cli("--out", str(out), "--force", *FP32)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]  # no lock, no temporaries, no old package aside
    m = package.load(out).manifest
    from aknet_edge import __version__

    assert m.created_by == f"aknet_edge {__version__}"


def test_sigterm_during_a_build_leaves_nothing(tmp_path):
    """SIGTERM mid-build: exit 143, no traceback, nothing beside --out. The build is frozen (SIGSTOP) where its
    temporary folder has no manifest yet, so the signal lands before the package is written whatever the machine's
    load (a build of this size finishes ~2 s after its folder appears; a busy CI runner once slept past that)."""
    import signal

    from test_runtime_support import wait_for

    for attempt in range(3):
        out = tmp_path / f"try{attempt}" / "pkg"
        out.parent.mkdir()
        proc = subprocess.Popen([sys.executable, "-m", "aknet_edge.build", "--no-progress", "--out", str(out), *FP32],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            started = wait_for(lambda: proc.poll() is not None or list(out.parent.glob(".pkg.building-*")), 120, 0.02)
            assert started, "the build never started"
            mid_build = []
            if proc.poll() is None:  # not yet reaped: its pid is still this build's
                os.kill(proc.pid, signal.SIGSTOP)
                mid_build = [p for p in out.parent.glob(".pkg.building-*") if not (p / package.MANIFEST).exists()]
                if mid_build:
                    proc.send_signal(signal.SIGTERM)
                os.kill(proc.pid, signal.SIGCONT)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if mid_build:
            break
    else:
        pytest.fail("three builds passed the point of writing their manifest before they could be frozen")
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "terminated"
    assert list(out.parent.iterdir()) == []


def test_a_full_disk_during_a_build_leaves_nothing(tmp_path):
    import resource

    def limit():  # writes past 100 kB fail with EFBIG, as ENOSPC on a full disk (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = subprocess.run([sys.executable, "-m", "aknet_edge.build", "--no-progress", "--out", str(tmp_path / "pkg"),
                        *FP32], capture_output=True, text=True, timeout=600, preexec_fn=limit)
    _one_error(r, f"cannot write the package to {tmp_path / 'pkg'}: file too large")
    assert list(tmp_path.iterdir()) == []
