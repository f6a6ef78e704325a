"""Parity checked by an independent runner: Polygraphy's ``run --onnxrt`` against PyTorch's outputs."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

polygraphy = pytest.importorskip("polygraphy", reason="polygraphy is in the dev extra")

from aknet_edge.config import preset
from aknet_edge.export.lower import lower
from aknet_edge.export.onnx_export import to_onnx
from aknet_edge.model import build_model


@pytest.mark.parametrize("target", [None, "tensorrt-8.5"])
def test_polygraphy_onnxrt_matches_pytorch(tmp_path, target):
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json

    torch.manual_seed(0)
    m = build_model(preset("demo-tiny")).eval()
    g = to_onnx(m)
    if target:
        g = lower(g, target)
    path = tmp_path / "m.onnx"
    onnx.save(g, path)
    x = np.random.default_rng(0).normal(size=(1, 8, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        logits, coords, scores = (t.numpy() for t in m(torch.from_numpy(x)))
    save_json([{"clip": x}], tmp_path / "inputs.json")
    results = RunResults()
    outs = {"logits": logits, "keypoints": coords, "keypoint_scores": scores}
    results.append(("pytorch", [IterationResult(outputs=outs, runner_name="pytorch")]))
    results.save(str(tmp_path / "torch.json"))
    bad = RunResults()
    bad.append(("pytorch", [IterationResult(outputs={**outs, "logits": logits + 1e-3}, runner_name="pytorch")]))
    bad.save(str(tmp_path / "bad.json"))
    exe = shutil.which("polygraphy", path=str(Path(sys.executable).parent)) or "polygraphy"
    def run(expected):
        return subprocess.run([exe, "run", str(path), "--onnxrt", "--load-inputs", str(tmp_path / "inputs.json"),
                               "--load-outputs", str(tmp_path / expected), "--atol", "1e-4", "--rtol", "0",
                               "--check-error-stat", "max"], capture_output=True, text=True, timeout=300)

    proc = run("torch.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASSED" in proc.stdout + proc.stderr
    assert run("bad.json").returncode != 0  # the comparison really compares
