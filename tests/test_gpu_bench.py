"""bench/gpu_bench.py runs on the CPU at tiny sizes, so the GPU benchmark cannot rot between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_bench.py"


@pytest.mark.slow
def test_gpu_bench_runs_tiny_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--tiny", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    cases = data["cases"]
    # both presets, AK-Net and TSM whole clip plus AK-Net's incremental step, FP32 and FP16, batch 1 and 8
    assert {(c["preset"], c["arch"], c["step"]) for c in cases} == {
        (p, a, s) for p in ("demo-tiny", "r50-paper") for a, s in (("aknet", "clip"), ("tsm", "clip"), ("aknet", "frame"))}
    assert {(c["precision"], c["batch"]) for c in cases} == {(p, b) for p in ("fp32", "fp16") for b in (1, 8)}
    assert all(c["error"] is None and c["median_ms"] > 0 for c in cases)
    assert {r["criterion"] for r in data["ops_parity"]} == {"score", "raster", "hilbert"}
    assert all(r["ok"] and r["same_indices"] for r in data["ops_parity"])
    fp32 = next(r for r in data["model_parity"] if r["precision"] == "fp32")
    assert fp32["max_logit_diff"] == 0.0 and fp32["keypoint_iou"] == 1.0  # the same device: bit for bit
    assert "CPU:" in data["device"] and "| preset | model | step |" in proc.stdout


def test_gpu_bench_unusable_device_is_one_error_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--device", "nodevice", "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device nodevice"), proc.stderr
    assert not (tmp_path / "g.json").exists()
