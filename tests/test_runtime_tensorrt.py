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
    from aknet_edge.runtime.backend_choice import open_backend

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


@pytest.mark.skipif(not (_have("tensorrt") and _have("pycuda") and _have("torch")),
                    reason="needs TensorRT, pycuda and an NVIDIA GPU (and torch to export the FP16 graph)")
def test_weakly_typed_fp16_engine_pins_the_fp32_islands(tmp_path, caplog):
    """Issue 13, section 2, on a real TensorRT 8.x/10.x: the FP16 graph built weakly typed (builder FP16 flag) with
    the islands pinned keeps the keypoints FP32 computes, and the build log says how many layers were pinned."""
    import logging

    from aknet_edge.build import BASE_LOWERING
    from aknet_edge.calibration import convert_fp16
    from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
    from aknet_edge.engine import fp32_islands
    from aknet_edge.evaluate import keypoint_iou, run_onnx
    from aknet_edge.export.lower import lower
    from aknet_edge.export.module_nodes import nodes_of_modules
    from aknet_edge.export.onnx_export import save, to_onnx
    from aknet_edge.runtime import trt as rt

    from aknet_edge import trt_eras

    version = rt.trt_version()
    if not trt_eras.available("weakly_typed", version):
        pytest.skip(f"TensorRT {rt.format_version(version)} builds strongly typed only: the graph's types hold")
    model = load_checkpoint(DEMO_WEIGHTS)
    graph = lower(to_onnx(model), BASE_LOWERING)
    fp32_path = save(graph, tmp_path / "model.fp32.onnx")
    fp16_path = save(convert_fp16(graph, nodes_of_modules(graph, model.float_modules("fp16"))),
                     tmp_path / "model.fp16.onnx")
    islands = fp32_islands(fp16_path, "fp16", {"fp16": model.float_modules("fp16")})
    settings = rt.BuildSettings("fp16", "clip", (8, 3, 112, 112), strongly_typed=False if version[0] >= 9 else None,
                                fp32_nodes=tuple(islands))
    with caplog.at_level(logging.INFO, logger="aknet_edge.runtime.trt.build"):
        plan = rt.build_serialized_engine(fp16_path, settings)
    import re

    pinned = re.search(r"FP32 islands: (\d+) of (\d+) layers pinned", caplog.text)
    assert pinned and 0 < int(pinned.group(1)) < int(pinned.group(2)), caplog.text[-2000:]
    clips = np.random.default_rng(0).standard_normal((4, 8, 3, 112, 112)).astype(np.float32)
    _, ref_kp = run_onnx(fp32_path, clips)
    with rt.EngineRunner(plan) as runner:
        kps = np.concatenate([runner.infer({"clip": c[None]})["keypoints"] for c in clips])
    assert keypoint_iou(kps, ref_kp, model.cfg.grid) >= 0.9
