"""``python -m aknet_edge.build --from PACKAGE`` as the device runs it: torch-free, one ``error:`` line per mistake.

Each run blocks torch, so the main suite (which has torch) proves the same thing the device-side venvs do.
Compiling the engine itself needs TensorRT and a GPU: tests/test_trt_runtime.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import one_error, run_build_cli

PKG_020 = Path(__file__).parent / "data" / "package-0.2.0"


def _build_from(*args: str):
    """``python -m aknet_edge.build --no-progress ARGS`` in a fresh interpreter where torch cannot be imported."""
    return run_build_cli(*args)




def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def test_from_without_tensorrt_says_how_to_install_it(tmp_path):
    if _has_tensorrt():
        pytest.skip("TensorRT is installed: --from compiles an engine (tests/test_trt_runtime.py)")
    out = tmp_path / "engine-pkg"
    error = one_error(_build_from("--from", str(PKG_020), "--out", str(out)))
    assert "TensorRT cannot be imported" in error and "pip install tensorrt" in error and "JetPack" in error
    assert not out.exists()


def test_from_a_folder_that_is_not_a_package(tmp_path):
    error = one_error(_build_from("--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")))
    assert "is not a model package" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_from_a_tampered_package_is_refused_before_tensorrt(tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(PKG_020, pkg)
    with open(pkg / "model.fp32.onnx", "ab") as fh:
        fh.write(b"x")
    error = one_error(_build_from("--from", str(pkg), "--out", str(tmp_path / "o")))
    assert "model.fp32.onnx does not match its SHA-256" in error
    assert not (tmp_path / "o").exists()


def test_from_rejects_bad_engine_options_in_the_build_words(tmp_path):
    error = one_error(_build_from("--from", str(PKG_020), "--out", str(tmp_path / "o"), "--batch", "4,1,2"))
    assert "--batch 4,1,2" in error and "MIN,OPT,MAX" in error
    assert not (tmp_path / "o").exists()
