"""The check's rules version for version: each one on both sides of its version boundary and of its condition.

Versions between the named targets come from ``Target.for_version``, so a
boundary such as 10.7 / 10.8 is tested at the exact releases the parser
changed in (see each rule's source in ``export/check.py``).
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from aknet_edge.export.check import RULES, check, errors
from aknet_edge.export.targets import Target


def graph(nodes, inputs, outputs, inits=(), opset=17, functions=(), extra_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets], functions=list(functions))


def vi(name, dtype=TensorProto.FLOAT, shape=(1, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def v(*version):
    return Target.for_version(version)


def found(model, target, rule, **kw):
    """The severities of ``rule``'s findings (empty: none)."""
    return {f.severity for f in check(model, target, **kw) if f.rule == rule}


def assert_boundary(model, rule, inside, outside, severity="error", **kw):
    for t in inside:
        assert found(model, t, rule, **kw) == {severity}, (rule, t)
    for t in outside:
        assert not found(model, t, rule, **kw), (rule, t)


# -- function inputs named like graph tensors (9.0-10.7) -------------------------------------------

def _function_graph(formal: str, actual_is_formal: bool = False):
    """A custom node whose body reads its input ``formal``; the graph has a tensor named ``x``."""
    body = [helper.make_node("Neg", [formal], ["out"])]
    f = helper.make_function("aknet", "Op", [formal], ["out"], body, [helper.make_opsetid("", 17)])
    arg = "x" if actual_is_formal else "y"
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Op", [arg], ["z"], domain="aknet")]
    return graph(nodes, [vi("x")], [vi("z")], functions=[f], extra_opsets=[helper.make_opsetid("aknet", 1)])


def test_function_input_named_like_a_graph_tensor_on_9_0_to_10_7():
    shadowed = _function_graph("x")  # the body would read the graph input x instead of Relu(x)
    assert_boundary(shadowed, "function-input-shadowed", inside=[v(9, 0), "tensorrt-10.3", v(10, 7)],
                    outside=[v(10, 8), "tensorrt-10", "tensorrt-8.6", "onnxruntime"])
    assert not found(_function_graph("w"), "tensorrt-10.3", "function-input-shadowed")  # a fresh name
    assert not found(_function_graph("x", actual_is_formal=True), "tensorrt-10.3", "function-input-shadowed")
    # 10.7 consults a declared plugin first, so the body (and the bug) is not reached there; 10.3 still imports it
    assert not found(shadowed, v(10, 7), "function-input-shadowed", plugins=("Op",))
    assert found(shadowed, "tensorrt-10.3", "function-input-shadowed", plugins=("Op",)) == {"error"}


def test_the_clip_head_graph_hits_the_shadowing_bug_until_lowered():
    """Real case: the clip head's input is named 'features', like KeypointSelect's first function input."""
    import torch

    from aknet_edge.config import preset
    from aknet_edge.export.lower import lower
    from aknet_edge.export.onnx_export import to_split_onnx
    from aknet_edge.model import build_model

    torch.manual_seed(0)
    _, head = to_split_onnx(build_model(preset("demo-tiny", shift="none")).eval())
    assert found(head, "tensorrt-10.3", "function-input-shadowed") == {"error"}
    assert not found(head, "tensorrt-10", "function-input-shadowed")
    assert not found(lower(head, "tensorrt-10.3"), "tensorrt-10.3", "function-input-shadowed")


# -- scatters ----------------------------------------------------------------------------------------

def _scatter(op, **attrs):
    if op == "ScatterND":
        node = helper.make_node(op, ["x", "i", "u"], ["y"], **attrs)
        ins = [vi("x", shape=(4,)), vi("i", TensorProto.INT64, (1, 1)), vi("u", shape=(1,))]
        return graph([node], ins, [vi("y", shape=(4,))])
    node = helper.make_node(op, ["x", "i", "u"], ["y"], axis=0, **attrs)
    ins = [vi("x", shape=(4,)), vi("i", TensorProto.INT64, (1,)), vi("u", shape=(1,))]
    return graph([node], ins, [vi("y", shape=(4,))])


def test_scatternd_any_reduction_attribute_on_10_0_to_10_8():
    none = _scatter("ScatterND", reduction="none")
    assert_boundary(none, "scatternd-reduction-attribute", inside=[v(10, 0), "tensorrt-10.3", v(10, 8)],
                    outside=[v(10, 9), "tensorrt-10", v(9, 3), "tensorrt-8.6"])
    assert not errors(check(none, "tensorrt-8.6"))  # 'none' is harmless on 8.x
    assert not found(_scatter("ScatterND"), "tensorrt-10.3", "scatternd-reduction-attribute")  # no attribute


def test_scatternd_reduction_ignored_before_10_0():
    add = _scatter("ScatterND", reduction="add")
    assert_boundary(add, "scatternd-reduction-ignored", inside=["tensorrt-8.5", "tensorrt-8.6", v(9, 3)],
                    outside=[v(10, 0), "tensorrt-10", "onnxruntime"])
    assert found(add, "tensorrt-10.3", "scatternd-reduction-attribute") == {"error"}
    assert not errors(check(add, "tensorrt-10")) and not errors(check(add, "onnxruntime"))


def test_scatterelements_reduction_ignored_on_8x_needs_the_plugin_from_10_0():
    add = _scatter("ScatterElements", reduction="add")
    assert_boundary(add, "scatterelements-reduction-ignored", inside=["tensorrt-8.5", "tensorrt-8.6", v(9, 3)],
                    outside=[v(10, 0), "tensorrt-11", "onnxruntime"])
    assert_boundary(add, "scatterelements-reduction-plugin", inside=[v(10, 0), "tensorrt-11"],
                    outside=["tensorrt-8.6", "onnxruntime"], severity="warning")
    plain = _scatter("ScatterElements", reduction="none")
    for t in ("tensorrt-8.5", "tensorrt-10.3"):
        assert {f.rule for f in check(plain, t)} <= {"int64-io"}, t


# -- GatherND batch_dims -----------------------------------------------------------------------------

@pytest.mark.parametrize("data, idx, b, ok", [
    ((2, 5, 3), (2, 4, 1), 1, True),  # our selection's form
    ((2, 5, 3), (2, 4, 2), 1, True),  # index tuple of length rank(data) - b
    ((2, 5, 3), (2, 4, 3), 1, False),  # tuple longer than rank(data) - b
    ((2, 5), (2, 1), 1, True),  # b = rank(data) - 1: one slice per batch row
    ((2, 5), (2, 5, 1), 2, False),  # b = rank(data)
    ((2, 5, 3), (3, 4, 1), 1, False),  # leading dimensions differ
])
def test_gathernd_batch_dims_rank_rule(data, idx, b, ok):
    out_rank = len(idx) - 1 + len(data) - idx[-1] - b
    node = helper.make_node("GatherND", ["d", "i"], ["o"], batch_dims=b)
    m = graph([node], [vi("d", shape=data), vi("i", TensorProto.INT64, idx)],
              [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    assert out_rank >= 0
    for t in ("tensorrt-8.5", "tensorrt-10.3", "onnxruntime"):
        assert bool(found(m, t, "gathernd-batch-dims")) is not ok, (t, data, idx, b)


# -- CumSum --------------------------------------------------------------------------------------------

def test_cumsum_is_a_loop_warning_and_needs_a_constant_axis_up_to_10_7():
    const_axis = graph([helper.make_node("CumSum", ["x", "a"], ["y"])], [vi("x", shape=(1, 1568))],
                       [vi("y", shape=(1, 1568))], inits=[const("a", np.array(1, np.int64))])
    assert_boundary(const_axis, "cumsum-loop", inside=["tensorrt-8.5", "tensorrt-8.6", "tensorrt-10.3", v(10, 7)],
                    outside=[v(10, 8), "tensorrt-10", "tensorrt-11", "onnxruntime"], severity="warning")
    assert "1568 steps" in next(f.message for f in check(const_axis, "tensorrt-10.3") if f.rule == "cumsum-loop")
    assert not found(const_axis, "tensorrt-10.3", "cumsum-axis-constant")
    runtime_axis = graph([helper.make_node("CumSum", ["x", "a"], ["y"])],
                         [vi("x", shape=(1, 8)), vi("a", TensorProto.INT64, ())], [vi("y", shape=(1, 8))])
    assert_boundary(runtime_axis, "cumsum-axis-constant", inside=["tensorrt-8.5", v(10, 7)],
                    outside=[v(10, 8), "tensorrt-11", "onnxruntime"])


def test_loop_nodes_are_a_warning_on_tensorrt():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body", [vi("i", TensorProto.INT64, ()), vi("cond_in", TensorProto.BOOL, ()), vi("acc_in", shape=(1,))],
        [vi("cond_out", TensorProto.BOOL, ()), vi("acc_out", shape=(1,))], initializer=[const("one", np.ones(1, np.float32))])
    loop = helper.make_node("Loop", ["n", "c", "x"], ["y"], body=body)
    m = graph([loop], [vi("x", shape=(1,))], [vi("y", shape=(1,))],
              inits=[const("n", np.array(3, np.int64)), const("c", np.array(True))])
    assert_boundary(m, "loop-node", inside=["tensorrt-8.5", "tensorrt-11"], outside=["onnxruntime"], severity="warning")
    assert not found(graph([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")]), "tensorrt-8.5", "loop-node")


# -- TopK ----------------------------------------------------------------------------------------------

def test_topk_runtime_k_is_an_error_on_8_5_only():
    m = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [vi("x"), vi("k", TensorProto.INT64, (1,))],
              [vi("v"), vi("i", TensorProto.INT64)])
    assert found(m, "tensorrt-8.5", "topk-k-constant") == {"error"}
    for t in ("tensorrt-8.6", "tensorrt-10.3", "tensorrt-11"):
        assert found(m, t, "topk-k-constant") == {"warning"}, t  # accepted; the 3840 limit is not verifiable
    assert not found(m, "onnxruntime", "topk-k-constant")
    k_const = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [vi("x")], [vi("v"), vi("i", TensorProto.INT64)],
                    inits=[const("k", np.array([2], np.int64))])
    assert not found(k_const, "tensorrt-8.5", "topk-k-constant")


@pytest.mark.parametrize("dtype", [TensorProto.INT32, TensorProto.INT64])
def test_topk_integer_input_only_on_8_5(dtype):
    m = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [vi("x", dtype)],
              [vi("v", dtype, (1, 2)), vi("i", TensorProto.INT64, (1, 2))], inits=[const("k", np.array([2], np.int64))])
    assert_boundary(m, "topk-integer-input", inside=["tensorrt-8.5"], outside=["tensorrt-8.6", "tensorrt-10.3", "tensorrt-11"])
    as_float = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)], [vi("x")],
                     [vi("v", shape=(1, 2)), vi("i", TensorProto.INT64, (1, 2))], inits=[const("k", np.array([2], np.int64))])
    assert not found(as_float, "tensorrt-8.5", "topk-integer-input")


def test_topk_sorted_attribute_is_never_a_finding():
    for s in (0, 1):
        m = graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, sorted=s)], [vi("x")],
                  [vi("v", shape=(1, 2)), vi("i", TensorProto.INT32, (1, 2))], inits=[const("k", np.array([2], np.int64))])
        for t in ("tensorrt-8.5", "tensorrt-8.6", "tensorrt-10.3", "tensorrt-11"):
            assert check(m, t) == [], (s, t)


# -- Q/DQ ----------------------------------------------------------------------------------------------

def _qdq(zero_point=True, scale=np.float32(0.1), axis=None, shape=(1, 4)):
    q_in = ["x", "scale"] + (["zp"] if zero_point else [])
    inits = [const("scale", scale)] + ([const("zp", np.zeros(np.shape(scale), np.int8))] if zero_point else [])
    kw = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", q_in, ["q"], **kw), helper.make_node("DequantizeLinear", ["q", *q_in[1:]], ["y"], **kw)]
    return graph(nodes, [vi("x", shape=shape)], [vi("y", shape=shape)], inits=inits)


def test_qdq_zero_point_required_on_8x_only():
    assert_boundary(_qdq(zero_point=False), "qdq-zero-point", inside=["tensorrt-8.5", "tensorrt-8.6"],
                    outside=[v(9, 0), "tensorrt-10.3", "tensorrt-11", "onnxruntime"])
    assert not found(_qdq(zero_point=True), "tensorrt-8.5", "qdq-zero-point")
    assert check(_qdq(zero_point=False), "tensorrt-10.3") == []


def test_per_channel_qdq_needs_an_explicit_axis():
    per_channel = np.full(4, 0.1, np.float32)
    no_axis = _qdq(scale=per_channel, shape=(4, 4))
    assert_boundary(no_axis, "qdq-axis", inside=["tensorrt-8.5", "tensorrt-10.3", "tensorrt-10"],
                    outside=["onnxruntime"])
    assert found(no_axis, "tensorrt-11", "qdq-axis") == {"warning"}  # 11.0 follows ONNX; 10.x reads the graph otherwise
    for t in ("tensorrt-8.5", "tensorrt-11"):
        assert not found(_qdq(scale=per_channel, axis=1, shape=(4, 4)), t, "qdq-axis")
        assert not found(_qdq(shape=(4, 4)), t, "qdq-axis")  # per-tensor: axis unused


# -- graph I/O, DLA --------------------------------------------------------------------------------------

def test_dynamic_dims_apply_to_inputs_not_outputs():
    dyn_out = graph([helper.make_node("NonZero", ["x"], ["y"])], [vi("x", shape=("batch", 4))],
                    [vi("y", TensorProto.INT64, (2, "nnz"))])
    assert not found(dyn_out, "tensorrt-8.5", "dynamic-dims") and not found(dyn_out, "onnxruntime", "dynamic-dims")
    dyn_in = graph([helper.make_node("Relu", ["x"], ["y"])], [vi("x", shape=("batch", "frames"))], [vi("y", shape=("batch", 4))])
    for t in ("tensorrt-8.5", "tensorrt-11", "onnxruntime"):
        assert found(dyn_in, t, "dynamic-dims") == {"error"}, t


def test_dla_requested_on_11_0_to_11_3():
    m = graph([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")])
    assert_boundary(m, "dla-unavailable", inside=["tensorrt-11", v(11, 3)],
                    outside=[v(11, 4), "tensorrt-10.3", "tensorrt-8.5", v(10, 16)], dla=True)
    assert not found(m, "tensorrt-11", "dla-unavailable")  # not requested


# -- FP16 tensors carrying indices or counts -------------------------------------------------------------

@pytest.mark.parametrize("axis_len, warned", [(2049, False), (2050, True)])
def test_fp16_index_used_on_an_axis_longer_than_2049(axis_len, warned):
    """An FP16 value cast to an index into an axis of ``axis_len`` reaches axis_len - 1; 2048 is still exact."""
    nodes = [helper.make_node("Cast", ["pos16"], ["pos"], to=TensorProto.INT64),
             helper.make_node("GatherElements", ["data", "pos"], ["y"], axis=1)]
    m = graph(nodes, [vi("pos16", TensorProto.FLOAT16, (1, 3)), vi("data", shape=(1, axis_len))], [vi("y", shape=(1, 3))])
    for t in ("tensorrt-10.3", "onnxruntime"):
        assert found(m, t, "fp16-index") == ({"warning"} if warned else set()), t


@pytest.mark.parametrize("table_max, warned", [(2048, False), (2049, True)])
def test_fp16_keys_from_an_integer_table(table_max, warned):
    """Integer keys gathered from a constant table and cast to FP16: exact while every key is <= 2048."""
    nodes = [helper.make_node("Gather", ["table", "idx"], ["keys"], axis=0),
             helper.make_node("Cast", ["keys"], ["keys16"], to=TensorProto.FLOAT16)]
    m = graph(nodes, [vi("idx", TensorProto.INT64, (1, 3))], [vi("keys16", TensorProto.FLOAT16, (1, 3))],
              inits=[const("table", np.arange(table_max + 1, dtype=np.int64))])
    assert found(m, "tensorrt-8.6", "fp16-index") == ({"warning"} if warned else set())


def test_every_rule_is_exercised_here_or_in_test_check():
    """A new rule needs its two test graphs: this file or tests/test_check.py must name it."""
    from pathlib import Path

    here = Path(__file__).read_text() + (Path(__file__).parent / "test_check.py").read_text()
    missing = [r for r in RULES if f'"{r}"' not in here]
    assert not missing, missing


# -- the version table the rules read ------------------------------------------------------------------

def test_feature_gaps_and_version_text():
    from aknet_edge import trt_eras

    assert [trt_eras.available("dla", x) for x in ((10, 3), (11, 0), (11, 3, 9), (11, 4, 1))] == [True, False, False, True]
    assert trt_eras.version_range("dla", present=False) == "11.0-11.3"
    assert trt_eras.version_range("scatternd_reduction_attribute", present=False) == "10.0-10.8"
    assert trt_eras.version_range("cumulative_layer") == "10.8+"
    assert trt_eras.version_range("optional_qdq_zero_point", present=False) == "8.x"


def test_target_for_an_installed_version():
    from aknet_edge.errors import ConfigError

    assert Target.for_version((10, 3, 0)).name == "tensorrt-10.3"  # a named release keeps its name
    t = Target.for_version((10, 8, 1))
    assert (t.name, t.tensorrt, t.max_opset, t.has_cumulative_layer) == ("tensorrt-10.8", (10, 8), 20, True)
    with pytest.raises(ConfigError, match="outside the supported"):
        Target.for_version((8, 4, 3))
