"""The TensorRT backend agrees with ONNX Runtime on the same clip (needs TensorRT, pycuda and a GPU)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from aknet_edge import package as packaging

from test_runtime_support import demo_package

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


def _have(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.mark.skipif(not (_have("tensorrt") and _have("pycuda")),
                    reason="TensorRT and pycuda are not installed (no NVIDIA GPU stack here)")
def test_tensorrt_backend_matches_onnxruntime(tmp_path_factory):
    from aknet_edge.runtime.backends import open_backend

    pkg = demo_package(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "runtime_demo_package_engine"
    if not (out / "manifest.json").is_file():
        proc = subprocess.run([sys.executable, "-m", "aknet_edge.build", "--from", str(pkg), "--out", str(out),
                               "--precision", "fp32"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    p = packaging.load(out)
    clip = np.random.default_rng(0).standard_normal((8, 3, 112, 112)).astype(np.float32)
    with open_backend(p, "tensorrt", "fp32") as trt_b, open_backend(p, "onnxruntime", "fp32") as ort_b:
        assert trt_b.name == "tensorrt"
        a, b = trt_b.infer_clip(clip).logits, ort_b.infer_clip(clip).logits
    assert np.abs(a - b).max() <= 1e-2
    auto = open_backend(p, "auto")
    assert auto.name == "tensorrt"
    auto.close()
