"""The two INT8 graphs (issue 13, section 3): INT8 initializers behind DequantizeLinear for TensorRT 10.x/11.x, FP32
weights behind a Q -> DQ pair for 8.x; explicit per-channel axes; which graph serves which TensorRT, as the package
records it and ``build --from`` picks it. Real ONNX Runtime quantization and inference; no TensorRT involved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from aknet_edge import package as pk
from aknet_edge import trt_eras
from aknet_edge.calibration import explicit_qdq_axes, int8_weight_form, quantize_int8
from aknet_edge.errors import ConfigError

PKG_020 = Path(__file__).parent / "data" / "package-0.2.0"


def _conv_matmul():
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(16, 5)).astype(np.float32), "w2")
    shape = numpy_helper.from_array(np.array([1, 4, 64], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["clip", "w1"], ["a"], pads=[1, 1, 1, 1], name="/stem/Conv"),
             helper.make_node("Relu", ["a"], ["r"], name="/stem/Relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="/flat/Reshape"),
             helper.make_node("Slice", ["f", "s0", "s1", "s2"], ["s"], name="/flat/Slice"),
             helper.make_node("MatMul", ["s", "w2"], ["y"], name="/head/MatMul")]
    inits = [w1, w2, shape] + [numpy_helper.from_array(np.array([v], np.int64), n)
                               for n, v in (("s0", 0), ("s1", 16), ("s2", 2))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # what any onnxruntime loads


@pytest.fixture(scope="module")
def forms():
    model = _conv_matmul()
    clips = np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32)
    return model, {w: quantize_int8(model, clips, "minmax", weights=w) for w in ("int8", "qdq")}


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"clip": x})[0]


def test_the_two_forms_store_weights_as_their_era_needs(forms):
    _, graphs = forms
    for form, q in graphs.items():
        inits = {i.name: i.data_type for i in q.graph.initializer}
        dq_weight_inputs = [inits.get(n.input[0]) for n in q.graph.node if n.op_type == "DequantizeLinear"
                            and n.input[0] in inits]
        q_weight_inputs = [inits.get(n.input[0]) for n in q.graph.node if n.op_type == "QuantizeLinear"
                           and n.input[0] in inits]
        if form == "int8":  # INT8 constants behind DQ, nothing quantizes a weight at run time
            assert dq_weight_inputs == [TensorProto.INT8, TensorProto.INT8] and q_weight_inputs == []
        else:  # TensorRT 8.x: FP32 weights, quantized by a Q node, then DQ
            assert dq_weight_inputs == [] and q_weight_inputs == [TensorProto.FLOAT, TensorProto.FLOAT]
            zero_points = {n.input[2] for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
            assert {k for k, t in inits.items() if t == TensorProto.INT8} <= zero_points  # no INT8 weight constant
        assert int8_weight_form(q) == form
        # 8.x: zero points present and all zero; scales positive
        arrays = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
        for n in q.graph.node:
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                assert len(n.input) == 3 and not arrays[n.input[2]].any() and (arrays[n.input[1]] > 0).all(), n.name


def test_every_per_channel_qdq_writes_its_axis(forms):
    _, graphs = forms
    for form, q in graphs.items():
        sizes = {i.name: int(np.prod(i.dims)) for i in q.graph.initializer}
        per_channel = [n for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                       and sizes.get(n.input[1], 1) > 1]
        assert len(per_channel) == (2 if form == "int8" else 4), form  # conv and matmul weights (Q and DQ for qdq)
        axes = {n.name: next(a.i for a in n.attribute if a.name == "axis") for n in per_channel}
        assert sorted(set(axes.values())) == [0, 1], axes  # conv: output channels first; MatMul [K, N]: axis 1


def test_both_forms_compute_the_same_thing(forms):
    model, graphs = forms
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    a, b, ref = _run(graphs["int8"], x), _run(graphs["qdq"], x), _run(model, x)
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(a).max())  # same scales, same rounding
    assert np.abs(a - ref).max() > 0  # and it is quantized


def test_explicit_axes_keep_the_graphs_meaning(forms):
    _, graphs = forms
    q = onnx.ModelProto()
    q.CopyFrom(graphs["int8"])
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    before = _run(q, x)
    mm = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w2"))
    del mm.attribute[:]  # no axis: ONNX means 1 at opset 17; TensorRT 8.x/10.1 read 0, 11.0 reads 1
    assert explicit_qdq_axes(q) == 1 and [a.i for a in mm.attribute if a.name == "axis"] == [1]
    assert np.array_equal(_run(q, x), before)
    assert explicit_qdq_axes(q) == 0  # nothing left to write


def test_a_weight_form_is_one_of_the_two():
    with pytest.raises(ConfigError, match="INT8 weight form 'int4': expected one of int8, qdq"):
        quantize_int8(_conv_matmul(), np.zeros((1, 3, 8, 8), np.float32), "minmax", weights="int4")


# --------------------------------------------------------------------------- which graph serves which TensorRT


@pytest.mark.parametrize("version, form", [((8, 5, 2), "qdq"), ((8, 6, 2), "qdq"), ((9, 3, 0), "qdq"),
                                           ((10, 0, 1), "int8"), ((10, 3, 0), "int8"), ((11, 4, 0), "int8")])
def test_int8_weights_for_each_version(version, form):
    assert pk.int8_weights_for(version) == form


def test_every_release_we_claim_is_served_by_exactly_one_form():
    for release in trt_eras.RELEASES:
        serving = [f for f, (since, until) in pk.INT8_WEIGHTS_SERVE.items()
                   if since <= release.version and (until is None or release.version < until)]
        assert serving == [pk.int8_weights_for(release.version)], release


def _with_int8_variants(tmp_path, records):
    """A copy of the 0.2.0 package whose manifest also lists INT8 graphs (copies of its FP32 graph)."""
    out = tmp_path / "pkg"
    shutil.copytree(PKG_020, out)
    m = json.loads((out / pk.MANIFEST).read_text())
    for name, extra in records:
        shutil.copy(out / "model.fp32.onnx", out / name)
        m["variants"].append({"file": name, "precision": "int8", "kind": "onnx", "sha256": pk.sha256_file(out / name),
                              "role": "clip", **extra})
    (out / pk.MANIFEST).write_text(json.dumps(m))
    return out


def test_the_package_records_and_picks_the_form_per_version(tmp_path):
    out = _with_int8_variants(tmp_path, [
        ("model.int8.onnx", {"weights": "int8", "tensorrt": {"since": "10.0", "until": None}}),
        ("model.int8-qdq.onnx", {"weights": "qdq", "tensorrt": {"since": "8.5", "until": "10.0"}})])
    p = pk.load(out)
    m = p.manifest
    assert m.int8_graph_for((8, 5, 2)).file == "model.int8-qdq.onnx"
    assert m.int8_graph_for((8, 6, 2)).file == "model.int8-qdq.onnx"
    assert m.int8_graph_for((10, 3, 0)).file == "model.int8.onnx"
    assert m.int8_graph_for((11, 4, 0)).file == "model.int8.onnx"
    assert p.variant("int8").file == "model.int8.onnx"  # ONNX Runtime and the runtime take the default form
    assert p.roles("onnx", "int8")["clip"].file == "model.int8.onnx"
    again = pk.Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m and again.to_dict() == m.to_dict()
    assert [v.serves for v in again.variants if v.weights] == [((10, 0), None), ((8, 5), (10, 0))]


def test_a_package_built_for_10_only_has_no_graph_for_8x(tmp_path):
    out = _with_int8_variants(tmp_path, [("model.int8.onnx", {"weights": "int8",
                                                              "tensorrt": {"since": "10.0", "until": None}})])
    m = pk.load(out).manifest
    assert m.int8_graph_for((8, 5, 2)) is None and m.int8_graph_for((10, 3, 0)).file == "model.int8.onnx"
    assert pk.format_serves(m.variants[-1].serves) == "10.0+"
    assert pk.format_serves(pk.INT8_WEIGHTS_SERVE["qdq"]) == "8.5 to 9.x"


def test_an_int8_graph_without_a_record_serves_every_version(tmp_path):
    m = pk.load(_with_int8_variants(tmp_path, [("model.int8.onnx", {})])).manifest
    assert m.int8_graph_for((8, 5, 2)).file == m.int8_graph_for((11, 0, 0)).file == "model.int8.onnx"
    assert pk.load(PKG_020).manifest.int8_graph_for((10, 3, 0)) is None  # the 0.2.0 package has no INT8 graph


@pytest.mark.parametrize("extra, words", [
    ({"weights": "int4"}, "weights = 'int4': expected one of int8, qdq"),
    ({"weights": "qdq", "tensorrt": {"since": "10.0", "until": "8.5"}}, "since < until"),
    ({"weights": "qdq", "tensorrt": {"since": "ten", "until": None}}, "expected MAJOR.MINOR"),
    ({"weights": "qdq", "tensorrt": {"since": "8.5", "until": None, "note": 1}}, "unknown fields ['note']"),
])
def test_bad_form_records_name_the_field(tmp_path, extra, words):
    out = _with_int8_variants(tmp_path, [("model.int8.onnx", extra)])
    with pytest.raises(pk.PackageError, match="manifest.variants\\[3\\]") as info:
        pk.load(out)
    assert words in str(info.value)


def test_only_int8_onnx_graphs_record_a_form(tmp_path):
    out = tmp_path / "pkg"
    shutil.copytree(PKG_020, out)
    m = json.loads((out / pk.MANIFEST).read_text())
    m["variants"][0]["weights"] = "int8"
    (out / pk.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(pk.PackageError, match="only INT8 ONNX graphs record a weight form"):
        pk.load(out)


def test_two_graphs_of_one_form_are_ambiguous(tmp_path):
    out = _with_int8_variants(tmp_path, [("a.onnx", {"weights": "qdq"}), ("b.onnx", {"weights": "qdq"})])
    with pytest.raises(pk.PackageError, match=r"second onnx int8 clip variant \(qdq weights\)"):
        pk.load(out)


@pytest.mark.parametrize("target, forms", [("auto", ("int8", "qdq")), ("tensorrt-8.5", ("qdq",)),
                                           ("tensorrt-8.6", ("qdq",)), ("tensorrt-10.3", ("int8",)),
                                           ("tensorrt-11", ("int8",)), ("onnxruntime", ("int8",))])
def test_the_build_writes_the_forms_its_target_needs(target, forms):
    from aknet_edge.build import BuildOptions

    assert BuildOptions(target=target).int8_forms == forms
