"""ONNX faces of the two custom ops: function bodies in standard ops, and NumPy references.

Each custom node (domain ``aknet``) carries a model-local function so any
runtime without a plugin can still run it; ``lower()`` inlines these for
targets that need plain ops. ``KeypointSelect`` is generic (its ``k`` and
``gate_max`` are attribute references); ``KeypointRank`` is specialised per
model, since its key table depends on the criterion and the grid.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper
from onnx.reference.op_run import OpRun

from aknet_edge.keys import rank_keys

DOMAIN = "aknet"
SELECT = "KeypointSelect"
RANK = "KeypointRank"
OPSET_IMPORTS = [helper.make_opsetid("", 17)]


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def gate_max_ref() -> onnx.NodeProto:
    """``gate_max`` read from the calling node's attribute (a function attribute reference)."""
    node = helper.make_node("Constant", [], ["gate_max"])
    node.attribute.append(helper.make_attribute_ref("value_float", AttributeProto.FLOAT, ref_attr_name="gate_max"))
    return node


def gather_and_gate_nodes() -> list[onnx.NodeProto]:
    """From ``values``/``indices`` (B, K): gate ``min(N * s, gate_max)`` and gather the kept features.

    Shared by the generic body and TensorRT's multi-pass body, which differ only in how they pick the top K.
    """
    return [
        gate_max_ref(),
        _const("one", np.array(1, np.int64)),
        _const("axis2", np.array([2], np.int64)),
        helper.make_node("Shape", ["scores"], ["score_shape"]),
        helper.make_node("Gather", ["score_shape", "one"], ["n"], axis=0),
        helper.make_node("Cast", ["n"], ["n_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["values", "n_f"], ["gate_raw"]),
        helper.make_node("Min", ["gate_raw", "gate_max"], ["gate"]),
        # GatherND with batch_dims=1 takes (B, K, 1) indices as they are: no (B, K, C) index tensor to expand
        helper.make_node("Unsqueeze", ["indices", "axis2"], ["indices3"]),
        helper.make_node("GatherND", ["features", "indices3"], ["gathered"], batch_dims=1),
        helper.make_node("Unsqueeze", ["gate", "axis2"], ["gate3"]),
        helper.make_node("Mul", ["gathered", "gate3"], ["kept"]),
    ]


def make_select_function(topk_nodes: list[onnx.NodeProto], opset: int = 17) -> onnx.FunctionProto:
    """A KeypointSelect body from nodes that turn ``scores`` into ``values``/``indices``."""
    nodes = _toposort(topk_nodes + gather_and_gate_nodes(), ["features", "scores"], SELECT)
    return helper.make_function(
        DOMAIN, SELECT, ["features", "scores"], ["kept", "indices", "values"], nodes,
        [helper.make_opsetid("", opset)], attributes=["k", "gate_max", "plugin_version", "plugin_namespace"],
    )


def select_function(opset: int = 17) -> onnx.FunctionProto:
    """features (B, N, C), scores (B, N) -> kept (B, K, C) gated, indices (B, K) int64, kept scores (B, K)."""
    k_ref = helper.make_node("Constant", [], ["k_scalar"])
    k_ref.attribute.append(helper.make_attribute_ref("value_int", AttributeProto.INT, ref_attr_name="k"))
    return make_select_function([
        k_ref,
        _const("axis0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["k_scalar", "axis0"], ["k"]),
        helper.make_node("TopK", ["scores", "k"], ["values", "indices"], axis=1, largest=1, sorted=1),
    ], opset)


def rank_function(criterion: str, grid: tuple[int, int, int], opset: int = 17) -> onnx.FunctionProto:
    """features (B, K, C), indices (B, K), scores (B, K) -> the same, ordered by ``criterion``.

    ``score``: KeypointSelect already emits descending score order with ties
    by ascending index, which is exactly the stable score sort, so the body is
    an identity. ``raster``/``hilbert``: gather each kept point's constant key
    and sort the K keys (as float: TensorRT rejects integer TopK).
    """
    outs = ["features_out", "indices_out", "scores_out"]
    if criterion == "score":
        nodes = [helper.make_node("Identity", [i], [o], name=f"/{RANK}/Identity_{j}")
                 for j, (i, o) in enumerate(zip(["features", "indices", "scores"], outs))]
    else:
        table = rank_keys(criterion, grid).astype(np.int64)
        nodes = [
            _const("key_table", table),
            _const("axis2", np.array([2], np.int64)),
            _const("two", np.array([2], np.int64)),
            helper.make_node("Gather", ["key_table", "indices"], ["keys"], axis=0),
            helper.make_node("Cast", ["keys"], ["keys_f"], to=TensorProto.FLOAT),
            helper.make_node("Shape", ["indices"], ["i_shape"]),
            helper.make_node("Slice", ["i_shape", "one1", "two"], ["k"]),
            _const("one1", np.array([1], np.int64)),
            helper.make_node("TopK", ["keys_f", "k"], ["sorted_keys", "order"], axis=1, largest=0, sorted=1),
            helper.make_node("GatherElements", ["indices", "order"], ["indices_out"], axis=1),
            helper.make_node("GatherElements", ["scores", "order"], ["scores_out"], axis=1),
            helper.make_node("Unsqueeze", ["order", "axis2"], ["order3"]),
            helper.make_node("GatherND", ["features", "order3"], ["features_out"], batch_dims=1),
        ]
        nodes = _toposort(nodes, ["features", "indices", "scores"], RANK)
    return helper.make_function(
        DOMAIN, RANK, ["features", "indices", "scores"], outs, nodes, [helper.make_opsetid("", opset)],
        attributes=["criterion", "grid", "plugin_version", "plugin_namespace"],
    )


def select_rank_model(num_points: int, k: int, criterion: str, grid: tuple[int, int, int],
                      channels: int = 8) -> onnx.ModelProto:
    """Selection + ranking alone, as a model: ``f`` (1, N, C), ``s`` (1, N) -> the K kept points, ordered.

    The part of the clip head that the TensorRT lowerings change, small enough to
    time and to check for exactness at any K (tests, bench/rank_lowering.py).
    """
    sel = helper.make_node(SELECT, ["f", "s"], ["kept", "idx", "vals"], domain=DOMAIN, k=k, gate_max=4.0,
                           plugin_version="1", plugin_namespace="")
    rank = helper.make_node(RANK, ["kept", "idx", "vals"], ["f_out", "i_out", "s_out"], domain=DOMAIN,
                            criterion=criterion, grid=list(grid), plugin_version="1", plugin_namespace="")
    graph = helper.make_graph(
        [sel, rank], "select_rank",
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, num_points, channels]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, num_points])],
        [helper.make_tensor_value_info("f_out", TensorProto.FLOAT, [1, k, channels]),
         helper.make_tensor_value_info("i_out", TensorProto.INT64, [1, k]),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, k])])
    return helper.make_model(graph, opset_imports=[*OPSET_IMPORTS, helper.make_opsetid(DOMAIN, 1)],
                             functions=[select_function(), rank_function(criterion, grid)])


def _toposort(nodes: list[onnx.NodeProto], inputs: list[str], owner: str = "") -> list[onnx.NodeProto]:
    """Order nodes so each runs after its producers (lets the bodies above be written readably).

    ``owner`` names the nodes ``/<owner>/<op>_<i>`` so they stay recognisable after inlining
    (precision conversion keeps them in float by that prefix).
    """
    if owner:
        for i, n in enumerate(nodes):
            n.name = f"/{owner}/{n.op_type}_{i}"
    ready = set(inputs)
    done: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        progressed = False
        for n in list(pending):
            if all(i in ready or i == "" for i in n.input):
                done.append(n)
                ready.update(n.output)
                pending.remove(n)
                progressed = True
        if not progressed:
            raise RuntimeError(f"function body has unresolved inputs: {[list(n.input) for n in pending]}")
    return done


# -- NumPy references for onnx.reference.ReferenceEvaluator(new_ops=[...]) ----------

class KeypointSelect(OpRun):
    op_domain = DOMAIN

    def _run(self, features, scores, k=None, gate_max=None, plugin_version=None, plugin_namespace=None):
        n = scores.shape[1]
        idx = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
        vals = np.take_along_axis(scores, idx, axis=1)
        kept = np.take_along_axis(features, idx[..., None], axis=1) * np.minimum(vals * n, gate_max)[..., None]
        return kept.astype(features.dtype), idx, vals


class KeypointRank(OpRun):
    op_domain = DOMAIN

    def _run(self, features, indices, scores, criterion=None, grid=None, plugin_version=None, plugin_namespace=None):
        crit = criterion.decode() if isinstance(criterion, bytes) else criterion
        if crit == "score":
            order = np.argsort(-scores, axis=1, kind="stable")
        else:
            order = np.argsort(rank_keys(crit, tuple(grid))[indices], axis=1, kind="stable")
        return (np.take_along_axis(features, order[..., None], axis=1), np.take_along_axis(indices, order, axis=1),
                np.take_along_axis(scores, order, axis=1))


REFERENCE_OPS = [KeypointSelect, KeypointRank]
