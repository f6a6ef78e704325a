"""Every compatibility rule, each with a small graph that breaks it."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from aknet_edge.export.check import check, errors
from aknet_edge.export.functions import select_function


def graph(nodes, inputs, outputs, inits=(), opset=17, functions=(), extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets], functions=list(functions))


def vi(name, dtype=TensorProto.FLOAT, shape=("batch", 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def rules(model, target, plugins=()):
    return {f.rule for f in errors(check(model, target, plugins))}


def test_clean_graph_has_no_findings():
    m = graph([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")])
    for t in ("onnxruntime", "tensorrt-8.5", "tensorrt-11"):
        assert check(m, t) == []


def test_opset_limit():
    m = graph([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], opset=18)
    assert "opset-limit" in rules(m, "tensorrt-8.6")
    assert "opset-limit" not in rules(m, "tensorrt-10.3")


def test_custom_node_without_body_or_plugin():
    node = helper.make_node("KeypointSelect", ["f", "s"], ["a", "b", "c"], domain="aknet", k=2, gate_max=4.0)
    m = graph([node], [vi("f", shape=(1, 4, 2)), vi("s")], [vi("a", shape=(1, 2, 2))],
              extra_opsets=[helper.make_opsetid("aknet", 1)])
    assert "custom-node" in rules(m, "onnxruntime")
    assert "custom-node" not in rules(m, "tensorrt-10", plugins=("KeypointSelect",))
    with_body = graph([node], [vi("f", shape=(1, 4, 2)), vi("s")], [vi("a", shape=(1, 2, 2))],
                      functions=[select_function()], extra_opsets=[helper.make_opsetid("aknet", 1)])
    assert "custom-node" not in rules(with_body, "onnxruntime")
    assert "custom-node" in rules(with_body, "tensorrt-8.5")  # 8.x ignores function bodies
    assert "plugin-shadowed" in rules(with_body, "tensorrt-10.3", plugins=("KeypointSelect",))


def test_topk_k_must_be_constant_and_at_most_3840():
    dyn = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [vi("x"), vi("k", TensorProto.INT64, (1,))],
                [vi("v"), vi("i", TensorProto.INT64)])
    assert "topk-k-constant" in rules(dyn, "tensorrt-8.5")
    big = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [vi("x", shape=(1, 5000))],
                [vi("v", shape=(1, 4000)), vi("i", TensorProto.INT64, (1, 4000))], inits=[const("k", np.array([4000], np.int64))])
    assert "topk-k-limit" in rules(big, "tensorrt-10")
    assert "topk-k-limit" not in rules(big, "onnxruntime")


def test_topk_integer_input_is_8_5_only_and_sorted_is_never_read():
    m = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, sorted=0)], [vi("x", TensorProto.INT64)],
              [vi("v", TensorProto.INT64, ("batch", 2)), vi("i", TensorProto.INT64, ("batch", 2))],
              inits=[const("k", np.array([2], np.int64))])
    assert rules(m, "tensorrt-8.5") == {"topk-integer-input"}  # and no rule about sorted=0
    for t in ("tensorrt-8.6", "tensorrt-10.3", "tensorrt-11"):
        assert not {f.rule for f in check(m, t)} - {"int64-io"}, t


@pytest.mark.parametrize(
    "scale, zp, rule",
    [
        (np.float32(0.1), np.uint8(0), "qdq-int8"),
        (np.float32(0.1), np.int8(3), "qdq-symmetric"),
        (np.float32(-0.1), np.int8(0), "qdq-scale-positive"),
        (None, np.int8(0), "qdq-scale-constant"),
        (np.float32(0.1), None, "qdq-zero-point"),
    ],
)
def test_qdq_rules(scale, zp, rule):
    inits, inputs = [], [vi("x")]
    if scale is None:
        inputs.append(vi("scale", shape=()))
    else:
        inits.append(const("scale", scale))
    q_in = ["x", "scale"] + (["zp"] if zp is not None else [])
    if zp is not None:
        inits.append(const("zp", zp))
    m = graph([helper.make_node("QuantizeLinear", q_in, ["q"]), helper.make_node("DequantizeLinear", ["q", *q_in[1:]], ["y"])],
              inputs, [vi("y")], inits=inits)
    assert rule in rules(m, "tensorrt-8.6" if rule == "qdq-zero-point" else "tensorrt-10.3")


def test_int64_io_is_flagged_where_the_target_casts_it():
    m = graph([helper.make_node("Identity", ["x"], ["y"])], [vi("x", TensorProto.INT64)], [vi("y", TensorProto.INT64)])
    assert any(f.rule == "int64-io" for f in check(m, "tensorrt-8.5"))
    assert not any(f.rule == "int64-io" for f in check(m, "tensorrt-10.3"))


def test_dynamic_dims_other_than_batch():
    m = graph([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=("batch", "frames"))], [vi("y", shape=("batch", "frames"))])
    assert "dynamic-dims" in rules(m, "onnxruntime")


def test_scatternd_reduction_on_8x():
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction="add")
    m = graph([node], [vi("x", shape=(4,)), vi("i", TensorProto.INT64, (1, 1)), vi("u", shape=(1,))], [vi("y", shape=(4,))],
              opset=17)
    assert "scatternd-reduction-ignored" in rules(m, "tensorrt-8.6")
    assert "scatternd-reduction-ignored" not in rules(m, "tensorrt-10.3")


def test_every_rule_states_versions_and_source():
    from aknet_edge.export.check import RULES, rule_table_markdown

    table = rule_table_markdown()
    for rule in RULES.values():
        assert rule.source and rule.versions(), rule.id
        assert f"`{rule.id}`" in table
    assert RULES["function-input-shadowed"].versions() == "error: TensorRT 9.0-10.7"
    assert RULES["cumsum-loop"].versions() == "warning: TensorRT 8.5-10.7"
    assert RULES["topk-k-constant"].versions() == "error: TensorRT 8.5; warning: TensorRT 8.6+"
