"""Ranking without a prefix-sum loop on JetPack's TensorRT: loop-free graphs, exact for every K.

TensorRT up to 10.7 builds CumSum as an ILoop of one step per element, so the
graphs lowered for tensorrt-8.5/8.6/10.3 (JetPack 5.1, 6.0, 6.1/6.2) must hold
no CumSum and no Loop, and still match PyTorch (logits within 1e-4, the same
keypoints in the same order), K = 4704 > 3840 included.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from aknet_edge.config import preset
from aknet_edge.errors import ConfigError
from aknet_edge.export.check import check, errors
from aknet_edge.export.functions import select_rank_model
from aknet_edge.export.lower import RANK_FORMS, lower, rank_form_for
from aknet_edge.export.onnx_export import to_onnx, to_split_onnx
from aknet_edge.keys import rank_keys
from aknet_edge.model import build_model

ort.set_default_logger_severity(3)
JETPACK_TARGETS = ("tensorrt-8.5", "tensorrt-8.6", "tensorrt-10.3")
LOOP_OPS = {"CumSum", "Loop", "Scan"}
R50_GRID = (8, 28, 28)  # r50-paper's grid: N = 6272


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def assert_jetpack_ready(model: onnx.ModelProto, ref, x: np.ndarray) -> None:
    for target in JETPACK_TARGETS:
        low = lower(model, target)
        assert not LOOP_OPS & set(ops(low)), (target, ops(low))
        findings = check(low, target)
        assert not errors(findings), (target, findings)
        assert not any(f.rule in ("cumsum-loop", "loop-node") for f in findings), target
        logits, coords, _ = session(low).run(None, {"clip": x})
        np.testing.assert_allclose(logits, ref[0].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(coords, ref[1].numpy())


def _model(seed, **overrides):
    torch.manual_seed(seed)
    return build_model(preset("demo-tiny", **overrides)).eval()


@pytest.mark.parametrize("criterion", ["hilbert", "raster"])
def test_jetpack_graphs_have_no_prefix_sum_loop_and_match_pytorch(criterion):
    m = _model(1, criterion=criterion)
    x = torch.randn(2, 8, 3, 112, 112)
    with torch.no_grad():
        ref = m(x)
    assert_jetpack_ready(to_onnx(m), ref, x.numpy())
    for part in to_split_onnx(build_model(m.cfg.replace(shift="none")).eval()):
        for target in JETPACK_TARGETS:  # the streaming split's graphs too
            assert not LOOP_OPS & set(ops(lower(part, target))), target


@pytest.mark.slow
def test_r50_grid_with_k_above_the_topk_limit_matches_pytorch_on_every_jetpack():
    m = _model(2, clip={"size": 224}, keep_ratio=0.75)
    assert m.cfg.grid == R50_GRID and m.cfg.num_keypoints == 4704 > 3840
    x = torch.randn(1, 8, 3, 224, 224)
    with torch.no_grad():
        ref = m(x)
    g = to_onnx(m)
    assert_jetpack_ready(g, ref, x.numpy())
    low = lower(g, "tensorrt-10.3")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in low.graph.initializer}
    topk_ks = [int(inits[n.input[1]][0]) for n in low.graph.node if n.op_type == "TopK"]
    assert max(topk_ks) <= 3840 and len(topk_ks) == 4  # two selection passes, two ranking passes


def _reference(f, s, k, criterion, grid):
    """Stable top-K by score, then stable order by key: what aknet_edge.ops computes."""
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    order = np.argsort(rank_keys(criterion, grid)[idx], axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


@pytest.mark.parametrize("form", [f for f in RANK_FORMS if f != "cumsum"])
@pytest.mark.parametrize("k", [1, 392, 3840, 3841, 4704, 6272])
def test_loop_free_rank_forms_are_exact_for_every_k(form, k):
    n = int(np.prod(R50_GRID))
    rng = np.random.default_rng(k)
    f = rng.normal(size=(1, n, 8)).astype(np.float32)
    s = rng.permutation(n).astype(np.float32)[None] / n  # distinct scores: one right answer
    g = lower(select_rank_model(n, k, "hilbert", R50_GRID), "tensorrt-8.5", rank_form=form)
    assert not LOOP_OPS & set(ops(g))
    f_out, i_out, s_out = session(g).run(None, {"f": f, "s": s})
    want = _reference(f, s, k, "hilbert", R50_GRID)
    np.testing.assert_array_equal(i_out, want)
    np.testing.assert_array_equal(s_out, np.take_along_axis(s, want, axis=1))
    np.testing.assert_array_equal(f_out[0], f[0, want[0]] * np.minimum(s_out[0] * n, 4.0)[:, None])


def test_rank_form_choice_and_bad_form():
    assert rank_form_for("onnxruntime") == "function"
    assert {rank_form_for(t) for t in ("tensorrt-8.5", "tensorrt-8.6", "tensorrt-10.3", "tensorrt-10", "tensorrt-11")} \
        == {"topk"}
    g = select_rank_model(1568, 392, "hilbert", (8, 14, 14))
    assert ops(lower(g, "tensorrt-8.5", rank_form="cumsum"))["CumSum"] == 1  # today's graph, kept for the bench
    assert any(f.rule == "cumsum-loop" for f in check(lower(g, "tensorrt-8.5", rank_form="cumsum"), "tensorrt-10.3"))
    with pytest.raises(ConfigError, match="rank_form"):
        lower(g, "tensorrt-8.5", rank_form="scan")
    with pytest.raises(ConfigError, match="rank_form"):
        lower(g, "onnxruntime", rank_form="topk")


@pytest.mark.parametrize("grid, warned", [((8, 14, 14), False), (R50_GRID, True)])
def test_fp16_conversion_of_ranking_keys_is_flagged_above_2048(grid, warned):
    """Ranking keys reach N - 1: exact in FP16 on the demo grid (1567), not on r50-paper's (6271)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from aknet_edge.calibration.precision import convert_fp16

    n = int(np.prod(grid))
    low = lower(select_rank_model(n, n // 4, "hilbert", grid), "tensorrt-10.3")
    everything_fp16 = convert_float_to_float16(low, keep_io_types=True)
    rules = [f for f in check(everything_fp16, "tensorrt-10.3") if f.rule == "fp16-index"]
    assert bool(rules) is warned and all(f.severity == "warning" for f in rules)
    islands_fp32 = convert_fp16(low)  # the build's conversion keeps selection and ranking in FP32
    assert not any(f.rule == "fp16-index" for f in check(islands_fp32, "tensorrt-10.3"))


@pytest.mark.slow
def test_rank_lowering_bench_smoke(tmp_path: Path):
    bench = Path(__file__).resolve().parents[1] / "bench" / "rank_lowering.py"
    out = tmp_path / "rank.json"
    proc = subprocess.run([sys.executable, str(bench), "--presets", "demo-tiny", "--seconds", "0.5", "--repeats", "2",
                           "--warmup", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["rows"][0]
    assert set(row["forms"]) == set(RANK_FORMS)
    assert all(f["exact"] and f["head_ms"] > 0 for f in row["forms"].values())
    assert row["forms"]["cumsum"]["ops"]["CumSum"] == 1
    assert all(row["forms"][f]["ops"]["CumSum"] == 0 and row["forms"][f]["ops"]["Loop"] == 0 for f in ("topk", "matmul"))
    assert "| demo-tiny | 1568 | 392 | topk |" in proc.stdout
