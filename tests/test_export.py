"""Export: custom nodes with bodies, lowering per target, parity with PyTorch, the split graphs."""

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from aknet_edge.config import preset
from aknet_edge.errors import ConfigError
from aknet_edge.export.check import check, errors
from aknet_edge.export.functions import REFERENCE_OPS
from aknet_edge.export.lower import lower
from aknet_edge.export.onnx_export import split_names, to_onnx, to_split_onnx
from aknet_edge.export.targets import TARGETS, TENSORRT_TARGETS
from aknet_edge.model import build_model

ort.set_default_logger_severity(3)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    m = build_model(preset("demo-tiny", **overrides)).eval()
    # non-trivial BN statistics so parity is tested on realistic activations
    for mod in m.modules():
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def demo():
    m = _model()
    return m, to_onnx(m)


def assert_parity(ref, out, ties_ok=False, order_by_score=False):
    """logits within 1e-4; the same kept keypoints in the same order (exact coordinates).

    ``order_by_score``: the ``score`` criterion orders the sequence by the scores
    themselves, so two kept scores that agree to float rounding (~1e-7 relative)
    may come out swapped between runtimes. Such a row must still keep the same
    set, and only positions whose scores agree to 1e-6 relative may differ; its
    logits are not comparable (the sequence differs), every other row's are.
    """
    logits, coords, scores = (t.numpy() for t in ref)
    np.testing.assert_allclose(out[2], scores, atol=1e-6, rtol=0)
    rows = list(range(len(logits)))
    if order_by_score:
        swapped = [b for b in rows if not np.array_equal(out[1][b], coords[b])]
        for b in swapped:
            assert sorted(map(tuple, out[1][b].tolist())) == sorted(map(tuple, coords[b].tolist())), "kept set differs"
            pos = np.where((out[1][b] != coords[b]).any(axis=1))[0]
            assert np.ptp(scores[b][pos]) <= 1e-6 * scores[b].max(), f"row {b}: swapped points are not score near-ties"
        rows = [b for b in rows if b not in swapped]
        assert rows, "every row swapped near-ties: use another seed for a comparable row"
    np.testing.assert_allclose(out[0][rows], logits[rows], atol=1e-4, rtol=0)
    if not ties_ok:
        np.testing.assert_array_equal(out[1][rows], coords[rows])


def test_custom_nodes_attributes_and_io(demo):
    _, g = demo
    custom = [n for n in g.graph.node if n.domain == "aknet"]
    assert sorted(n.op_type for n in custom) == ["KeypointRank", "KeypointSelect"]
    for n in custom:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b""
    assert {(f.domain, f.name) for f in g.functions} == {("aknet", "KeypointSelect"), ("aknet", "KeypointRank")}
    assert [i.name for i in g.graph.input] == ["clip"]
    assert [o.name for o in g.graph.output] == ["logits", "keypoints", "keypoint_scores"]
    assert g.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim[1:]] == [8, 3, 112, 112]
    assert [d.dim_value for d in g.graph.output[1].type.tensor_type.shape.dim[1:]] == [392, 3]
    assert next(o.version for o in g.opset_import if o.domain == "") == 17
    onnx.checker.check_model(g, full_check=True)


def test_exporter_choice_is_torchscript_at_opset_17(demo):
    """Pinned: the TorchScript exporter keeps one node per custom op; see onnx_export's docstring."""
    _, g = demo
    assert g.producer_name == "aknet_edge"
    assert any(n.name == "/KeypointSelect" for n in g.graph.node)  # TorchScript exporter's node naming


def test_score_order_allowance_rejects_swaps_that_are_not_near_ties():
    coords = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]] * 2)
    logits = torch.zeros(2, 3)
    near = torch.tensor([[0.5, 0.25, 0.25 - 1e-9]] * 2)
    swapped = coords.clone()
    swapped[0, [1, 2]] = swapped[0, [2, 1]]
    assert_parity((logits, coords, near), (logits.numpy(), swapped.numpy(), near.numpy()), order_by_score=True)
    with pytest.raises(AssertionError):  # without the allowance the swap is a failure
        assert_parity((logits, coords, near), (logits.numpy(), swapped.numpy(), near.numpy()))
    far = torch.tensor([[0.5, 0.3, 0.2]] * 2)
    with pytest.raises(AssertionError, match="near-ties"):
        assert_parity((logits, coords, far), (logits.numpy(), swapped.numpy(), far.numpy()), order_by_score=True)
    other = swapped.clone()
    other[0, 2] = torch.tensor([1.0, 1.0, 1.0])
    with pytest.raises(AssertionError, match="kept set"):
        assert_parity((logits, coords, near), (logits.numpy(), other.numpy(), near.numpy()), order_by_score=True)


@pytest.mark.parametrize("criterion", ["hilbert", "raster", "score"])
def test_custom_graph_and_every_lowering_match_pytorch(criterion):
    m = _model(1, criterion=criterion)
    g = to_onnx(m)
    x = torch.randn(3, 8, 3, 112, 112)
    with torch.no_grad():
        ref = m(x)
    by_score = criterion == "score"
    assert_parity(ref, session(g).run(None, {"clip": x.numpy()}), order_by_score=by_score)
    for target in TARGETS:
        low = lower(g, target)
        assert not errors(check(low, target)), target
        assert not any(n.domain == "aknet" for n in low.graph.node)
        assert_parity(ref, session(low).run(None, {"clip": x.numpy()}), order_by_score=by_score)


def test_parity_on_synthetic_action_clips(demo):
    from aknet_edge.evaluate import heldout_synthetic

    m, g = demo
    x, _ = heldout_synthetic(m.cfg, clips_per_class=1)
    with torch.no_grad():
        ref = m(torch.from_numpy(x))
    low = lower(g, "tensorrt-8.5")
    for graph in (g, low):
        assert_parity(ref, session(graph).run(None, {"clip": x}))


def test_reference_evaluator_runs_custom_nodes_with_numpy_ops(demo):
    """The third face of each op: NumPy references plugged into onnx.reference."""
    from onnx.reference import ReferenceEvaluator

    m, g = demo
    x = torch.randn(1, 8, 3, 112, 112)
    with torch.no_grad():
        ref = m(x)
    g_no_bodies = onnx.ModelProto()
    g_no_bodies.CopyFrom(g)
    del g_no_bodies.functions[:]
    out = ReferenceEvaluator(g_no_bodies, new_ops=REFERENCE_OPS).run(None, {"clip": x.numpy()})
    np.testing.assert_allclose(out[0], ref[0].numpy(), atol=1e-4)
    np.testing.assert_array_equal(out[1], ref[1].numpy())


def test_exact_score_ties_only_change_which_tied_point_is_kept():
    """Allowance: with tied scores at the cut, any tied point may be kept; everything else must agree."""
    from aknet_edge.export.functions import select_function
    from onnx import TensorProto, helper

    k = 4
    node = helper.make_node("KeypointSelect", ["f", "s"], ["kept", "idx", "vals"], domain="aknet", k=k, gate_max=4.0,
                            plugin_version="1", plugin_namespace="")
    graph = helper.make_graph(
        [node], "ties",
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 8, 2]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info(n, t, None) for n, t in (("kept", TensorProto.FLOAT), ("idx", TensorProto.INT64), ("vals", TensorProto.FLOAT))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("aknet", 1)],
                              functions=[select_function()])
    s = np.array([[0.1, 0.3, 0.2, 0.3, 0.2, 0.05, 0.2, 0.0]], np.float32)  # 0.2 three times across the cut
    f = np.random.default_rng(0).normal(size=(1, 8, 2)).astype(np.float32)
    from aknet_edge import ops

    _, ref_idx, ref_vals = ops.keypoint_select(torch.from_numpy(f), torch.from_numpy(s), k, 4.0)
    for graph in (model, lower(model, "tensorrt-8.5")):
        _, idx, vals = session(graph).run(None, {"f": f, "s": s})
        np.testing.assert_array_equal(vals, ref_vals.numpy())  # the kept scores never differ
        untied = [i for i in ref_idx[0].tolist() if s[0, i] != 0.2]
        assert set(untied) <= set(idx[0].tolist())  # all untied keepers agree
        tied_kept = [i for i in idx[0].tolist() if s[0, i] == 0.2]
        assert set(tied_kept) <= {2, 4, 6} and len(tied_kept) == 2


def test_large_k_lowers_exactly_without_topk_over_3840():
    """K > 3840 (TensorRT's TopK limit): selection and ranking in TopK passes give the reference result."""
    cfg_kw = dict(clip={"size": 224}, keep_ratio=0.75)  # N = 6272, K = 4704
    m = _model(2, **cfg_kw)
    assert m.cfg.num_keypoints > 3840
    g = to_onnx(m)
    low = lower(g, "tensorrt-10")
    topk_ks = [int(onnx.numpy_helper.to_array(i)[0]) for n in low.graph.node if n.op_type == "TopK"
               for i in low.graph.initializer if i.name == n.input[1]]
    assert topk_ks and max(topk_ks) <= 3840
    assert not errors(check(low, "tensorrt-10"))
    assert any(f.rule == "topk-k-limit" for f in check(lower(g, "onnxruntime"), "tensorrt-10"))
    x = torch.randn(1, 8, 3, 224, 224)
    with torch.no_grad():
        ref = m(x)
    assert_parity(ref, session(low).run(None, {"clip": x.numpy()}))


def test_plugins_keep_custom_nodes_without_bodies(demo):
    _, g = demo
    low = lower(g, "tensorrt-10", plugins=["KeypointSelect"])
    assert [n.op_type for n in low.graph.node if n.domain == "aknet"] == ["KeypointSelect"]
    assert not low.functions
    assert not errors(check(low, "tensorrt-10", plugins=("KeypointSelect",)))
    with pytest.raises(ConfigError, match="TensorRT notion"):
        lower(g, "onnxruntime", plugins=["KeypointSelect"])
    with pytest.raises(ConfigError, match="unknown target"):
        lower(g, "tensorrt-7")


@pytest.mark.parametrize("shift", ["online", "none"])
def test_split_graphs_match_whole_clip_graph(shift):
    m = _model(3, shift=shift)
    whole = session(to_onnx(m))
    enc_g, head_g = to_split_onnx(m)
    enc, head = session(enc_g), session(head_g)
    state_in, state_out = split_names(m)
    x = np.random.default_rng(0).normal(size=(2, 8, 3, 112, 112)).astype(np.float32)
    want = whole.run(None, {"clip": x})
    states = {n: np.zeros((2, *st.shape[1:]), np.float32) for n, st in zip(state_in, m.encoder.init_state(2))}
    feats = []
    for t in range(8):
        outs = enc.run(None, {"frame": x[:, t], **states})
        feats.append(outs[0])
        states = dict(zip(state_in, outs[1:]))
    got = head.run(None, {"features": np.stack(feats, axis=1)})
    np.testing.assert_allclose(got[0], want[0], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got[1], want[1])
    if shift == "none":
        assert not state_in
    for target in TENSORRT_TARGETS[:1]:
        assert not errors(check(lower(enc_g, target), target)) and not errors(check(lower(head_g, target), target))


def test_frame_encoder_broadcasts_one_frame_to_every_state_row():
    """The stem runs once per frame; one frame under 3 state rows equals 3 copies of it."""
    m = _model(4, shift="online")
    enc_g, _ = to_split_onnx(m)
    assert enc_g.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "frames"
    enc = session(lower(enc_g, "onnxruntime"))
    state_in, _ = split_names(m)
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(1, 3, 112, 112)).astype(np.float32)
    states = {n: rng.normal(size=(3, *st.shape[1:])).astype(np.float32)
              for n, st in zip(state_in, m.encoder.init_state(1))}
    one = enc.run(None, {"frame": frame, **states})
    copies = enc.run(None, {"frame": np.repeat(frame, 3, axis=0), **states})
    assert one[0].shape[0] == 3
    for a, b in zip(one, copies):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert not np.allclose(one[0][0], one[0][1])  # the rows' states do reach the features


def test_bad_exports_fail_before_tracing(tmp_path):
    with pytest.raises(ConfigError, match="offline"):
        to_split_onnx(build_model(preset("demo-tiny", shift="offline")))
    with pytest.raises(ConfigError, match="keypoints"):
        preset("demo-tiny", keypoints=5000)
    from aknet_edge.export.onnx_export import export_onnx

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        export_onnx(_model(), blocker / "sub" / "m.onnx")
    assert list(tmp_path.iterdir()) == [blocker]


def test_cli_check_exit_codes(tmp_path, demo):
    _, g = demo
    raw = tmp_path / "raw.onnx"
    onnx.save(g, raw)
    run = lambda *a: subprocess.run([sys.executable, "-m", "aknet_edge.export", *a], capture_output=True, text=True)
    bad = run("--check", str(raw), "--target", "tensorrt-8.5")
    assert bad.returncode == 1 and "custom-node" in bad.stdout
    low = tmp_path / "low.onnx"
    onnx.save(lower(g, "tensorrt-8.5"), low)
    good = run("--check", str(low), "--target", "tensorrt-8.5")
    assert good.returncode == 0 and "clean" in good.stdout
    nothing = run("--check", str(tmp_path / "missing.onnx"), "--target", "onnxruntime")
    assert nothing.returncode == 2 and "error:" in nothing.stderr and "Traceback" not in nothing.stderr


@pytest.mark.slow
def test_r50_paper_exports_lowers_checks_and_matches():
    torch.manual_seed(0)
    m = build_model(preset("r50-paper")).eval()
    g = to_onnx(m)
    x = torch.randn(1, 8, 3, 224, 224)
    with torch.no_grad():
        ref = m(x)
    low = lower(g, "tensorrt-8.5")
    for target in TENSORRT_TARGETS:
        assert not errors(check(low, target)), target
    assert_parity(ref, session(low).run(None, {"clip": x.numpy()}))


def test_tsm_baseline_exports_with_static_class_dim():
    m = _model(4, arch="tsm")
    g = lower(to_onnx(m), "tensorrt-8.5")
    assert [d.dim_value for d in g.graph.output[0].type.tensor_type.shape.dim[1:]] == [11]
    for target in TENSORRT_TARGETS:
        assert not errors(check(g, target)), target
    x = torch.randn(2, 8, 3, 112, 112)
    with torch.no_grad():
        ref = m(x).numpy()
    np.testing.assert_allclose(session(g).run(None, {"clip": x.numpy()})[0], ref, atol=1e-4, rtol=0)
