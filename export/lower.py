"""Lowering an exported graph for one target: bodies inlined, constants folded, TopK tamed.

For TensorRT the custom nodes' function bodies are replaced before inlining
by forms its parser takes for any K and runs without loops: selection and
ranking both by TopK passes of at most 3840 (ranking sorts the K kept
points' constant per-position keys). The earlier ranking, mask compaction
with a CumSum over all N points, became a loop of one step per point before
TensorRT 10.8 (every JetPack); it stays, with a loop-free blocked prefix
sum, as the alternative bench/rank_lowering.py measures (:func:`rank_form_for`).
A node whose op the caller declares as a plugin keeps its custom node and
loses its body, because TensorRT 9.0-10.6 never consult a plugin when a body
exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx
import onnx.inliner
import onnx.version_converter
from onnx import TensorProto, helper, numpy_helper

from aknet_edge.errors import ConfigError
from aknet_edge.keys import rank_keys

from .functions import DOMAIN, RANK, SELECT, _const, _toposort, make_select_function
from .onnx_export import finalize
from .targets import TOPK_MAX_K, get_target

log = logging.getLogger(__name__)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def select_function_multipass(k: int, opset: int = 17, max_k: int = TOPK_MAX_K) -> onnx.FunctionProto:
    """KeypointSelect as TopK passes of at most ``max_k``, each masking out what it took: same set, same order."""
    nodes = [_const("neg", np.array(-3.0e38, np.float32))]
    work, vals, idxs = "scores", [], []
    taken, p = 0, 0
    while taken < k:
        step = min(max_k, k - taken)
        nodes += [
            _const(f"k{p}", np.array([step], np.int64)),
            helper.make_node("TopK", [work, f"k{p}"], [f"v{p}", f"i{p}"], axis=1, largest=1, sorted=1),
        ]
        vals.append(f"v{p}")
        idxs.append(f"i{p}")
        taken += step
        if taken < k:
            nodes += [
                helper.make_node("Shape", [f"i{p}"], [f"is{p}"]),
                helper.make_node("Expand", ["neg", f"is{p}"], [f"fill{p}"]),
                helper.make_node("ScatterElements", [work, f"i{p}", f"fill{p}"], [f"w{p}"], axis=1),
            ]
            work = f"w{p}"
        p += 1
    for parts, out in ((vals, "values"), (idxs, "indices")):
        nodes.append(helper.make_node("Concat", parts, [out], axis=1) if len(parts) > 1
                     else helper.make_node("Identity", parts, [out]))
    return make_select_function(nodes, opset)


RANK_FORMS = ("topk", "matmul", "cumsum")
"""How a TensorRT graph orders the kept points by their constant keys (see :func:`rank_function_lowered`)."""

TENSORRT_RANK_FORM = "topk"


def rank_form_for(target: str) -> str:
    """The ranking form :func:`lower` writes for ``target`` ("function": the generic body, for ONNX Runtime).

    Up to TensorRT 10.7 the parser builds ``CumSum`` as an ILoop with one
    sequential iteration per element, so the mask-compaction ranking's prefix
    sum over all N points (1568 on the demo grid, 6272 on ``r50-paper``'s)
    became a 1568- or 6272-step loop on every JetPack. Two loop-free forms
    are exact for every K (keys are distinct integers below 2**24):
    ``topk`` (TopK over the K kept keys, passes of at most 3840) and
    ``matmul`` (the compaction with a blocked prefix sum). bench/rank_lowering.py
    times them against ``cumsum`` in ONNX Runtime; ``topk`` was the fastest
    of the three there, so every TensorRT target gets it (one graph family,
    also for 10.8+, where CumSum would have been a native layer).
    """
    return TENSORRT_RANK_FORM if get_target(target).is_tensorrt else "function"


def prefix_block(n: int) -> int:
    """Block size of the blocked prefix sum over ``n`` points: about sqrt(n), so both products stay small."""
    return max(1, int(np.ceil(np.sqrt(n))))


def _prefix_sum_nodes(n: int, form: str) -> list[onnx.NodeProto]:
    """``mask`` (B, n) of 0/1 -> inclusive prefix sum ``csum`` (B, n') in FP32, n' >= n (zero-padded).

    ``cumsum``: one CumSum node. ``matmul``: the n points as nb blocks of b;
    a product with the b x b upper-triangular ones gives each block's running
    count, a product of the block totals with the nb x nb strictly
    upper-triangular ones gives each block's offset. Every partial sum is an
    integer at most n < 2**24, so FP32 holds it exactly.
    """
    if form == "cumsum":
        return [_const("axis1", np.array(1, np.int64)), helper.make_node("CumSum", ["mask", "axis1"], ["csum"])]
    b = prefix_block(n)
    nb = -(-n // b)
    return [
        _const("blocks_shape", np.array([-1, nb, b], np.int64)),
        _const("flat_shape", np.array([-1, nb * b], np.int64)),
        _const("upper_b", np.triu(np.ones((b, b), np.float32))),  # [i, j] = 1 where i <= j: inclusive
        _const("strict_nb", np.triu(np.ones((nb, nb), np.float32), k=1)),  # [i, j] = 1 where i < j: exclusive
        _const("last", np.array(b - 1, np.int64)),
        _const("axis2", np.array([2], np.int64)),
        helper.make_node("Reshape", ["mask", "blocks_shape"], ["blocks"]),
        helper.make_node("MatMul", ["blocks", "upper_b"], ["within"]),
        helper.make_node("Gather", ["within", "last"], ["totals"], axis=2),
        helper.make_node("MatMul", ["totals", "strict_nb"], ["offsets"]),
        helper.make_node("Unsqueeze", ["offsets", "axis2"], ["offsets3"]),
        helper.make_node("Add", ["within", "offsets3"], ["csum3"]),
        helper.make_node("Reshape", ["csum3", "flat_shape"], ["csum"]),
    ]


def rank_function_compaction(criterion: str, grid: tuple[int, int, int], opset: int = 17,
                             prefix: str = "cumsum") -> onnx.FunctionProto:
    """KeypointRank without TopK: scatter kept keys into a mask over key space; its prefix sum is each slot.

    ``prefix``: how the prefix sum is computed, ``cumsum`` (one node) or ``matmul`` (loop-free, see
    :func:`_prefix_sum_nodes`). Exact for any K: keys are distinct, so a kept point's count of kept keys
    up to its own is its slot.
    """
    if criterion == "score":
        from .functions import rank_function

        return rank_function(criterion, grid, opset)  # identity body: select already ordered by score
    n = int(np.prod(grid))
    width = n if prefix == "cumsum" else prefix_block(n) * -(-n // prefix_block(n))
    nodes = [
        _const("key_table", rank_keys(criterion, grid).astype(np.int64)),
        _const("n_dim", np.array([width], np.int64)),
        _const("axis0", np.array([0], np.int64)),
        _const("two", np.array([2], np.int64)),
        _const("three", np.array([3], np.int64)),
        _const("one_f", np.array(1.0, np.float32)),
        _const("one1", np.array([1], np.int64)),
        _const("axis2_", np.array([2], np.int64)),
        helper.make_node("Gather", ["key_table", "indices"], ["keys"], axis=0),
        helper.make_node("Shape", ["indices"], ["i_shape"]),
        helper.make_node("Slice", ["i_shape", "axis0", "one1"], ["b_dim"]),
        helper.make_node("Concat", ["b_dim", "n_dim"], ["mask_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["mask_shape"], ["mask0"],
                         value=numpy_helper.from_array(np.array([0.0], np.float32))),
        helper.make_node("Expand", ["one_f", "i_shape"], ["ones"]),
        helper.make_node("ScatterElements", ["mask0", "keys", "ones"], ["mask"], axis=1),
        *_prefix_sum_nodes(n, prefix),
        helper.make_node("GatherElements", ["csum", "keys"], ["slot1"], axis=1),
        helper.make_node("Sub", ["slot1", "one_f"], ["slot_f"]),
        helper.make_node("Cast", ["slot_f"], ["slot"], to=TensorProto.INT64),
        helper.make_node("ScatterElements", ["indices", "slot", "indices"], ["indices_out"], axis=1),
        helper.make_node("ScatterElements", ["scores", "slot", "scores"], ["scores_out"], axis=1),
        helper.make_node("Shape", ["features"], ["f_shape"]),
        helper.make_node("Slice", ["f_shape", "two", "three"], ["c_dim"]),
        helper.make_node("Concat", ["i_shape", "c_dim"], ["scatter_shape"], axis=0),
        helper.make_node("Unsqueeze", ["slot", "axis2_"], ["slot3"]),
        helper.make_node("Expand", ["slot3", "scatter_shape"], ["slot_c"]),
        helper.make_node("ScatterElements", ["features", "slot_c", "features"], ["features_out"], axis=1),
    ]
    # ScatterElements into a copy of the input itself: every slot 0..K-1 is written exactly once
    return _rank_function(nodes, opset)


def rank_function_topk(criterion: str, grid: tuple[int, int, int], k: int, opset: int = 17,
                       max_k: int = TOPK_MAX_K) -> onnx.FunctionProto:
    """KeypointRank as TopK (smallest first) over the K kept points' keys, in passes of at most ``max_k``.

    Keys are distinct integers below N < 2**24, exact as FP32; each pass masks
    out what it took, so the concatenated orders are the full ascending order.
    """
    if criterion == "score":
        from .functions import rank_function

        return rank_function(criterion, grid, opset)
    nodes = [
        _const("key_table", rank_keys(criterion, grid).astype(np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("big", np.array(3.0e38, np.float32)),
        helper.make_node("Gather", ["key_table", "indices"], ["keys"], axis=0),
        helper.make_node("Cast", ["keys"], ["work0"], to=TensorProto.FLOAT),
    ]
    work, orders, taken, p = "work0", [], 0, 0
    while taken < k:
        step = min(max_k, k - taken)
        nodes += [_const(f"k{p}", np.array([step], np.int64)),
                  helper.make_node("TopK", [work, f"k{p}"], [f"v{p}", f"o{p}"], axis=1, largest=0, sorted=1)]
        orders.append(f"o{p}")
        taken += step
        if taken < k:
            nodes += [helper.make_node("Shape", [f"o{p}"], [f"os{p}"]),
                      helper.make_node("Expand", ["big", f"os{p}"], [f"fill{p}"]),
                      helper.make_node("ScatterElements", [work, f"o{p}", f"fill{p}"], [f"work{p + 1}"], axis=1)]
            work = f"work{p + 1}"
        p += 1
    nodes += [
        helper.make_node("Concat", orders, ["order"], axis=1) if len(orders) > 1
        else helper.make_node("Identity", orders, ["order"]),
        helper.make_node("GatherElements", ["indices", "order"], ["indices_out"], axis=1),
        helper.make_node("GatherElements", ["scores", "order"], ["scores_out"], axis=1),
        helper.make_node("Unsqueeze", ["order", "axis2"], ["order3"]),
        helper.make_node("GatherND", ["features", "order3"], ["features_out"], batch_dims=1),
    ]
    return _rank_function(nodes, opset)


def rank_function_lowered(criterion: str, grid: tuple[int, int, int], k: int, form: str,
                          opset: int = 17) -> onnx.FunctionProto:
    """The KeypointRank body in one of :data:`RANK_FORMS` (``k``: the number of kept points)."""
    if form == "topk":
        return rank_function_topk(criterion, grid, k, opset)
    if form in ("cumsum", "matmul"):
        return rank_function_compaction(criterion, grid, opset, prefix=form)
    raise ConfigError(f"rank form {form!r}: expected one of {', '.join(RANK_FORMS)}")


def _rank_function(nodes: list[onnx.NodeProto], opset: int) -> onnx.FunctionProto:
    return helper.make_function(
        DOMAIN, RANK, ["features", "indices", "scores"], ["features_out", "indices_out", "scores_out"],
        _toposort(nodes, ["features", "indices", "scores"], RANK), [helper.make_opsetid("", opset)],
        attributes=["criterion", "grid", "plugin_version", "plugin_namespace"],
    )


def lower(model: onnx.ModelProto, target: str, plugins: Iterable[str] = (),
          rank_form: str | None = None) -> onnx.ModelProto:
    """A copy of ``model`` that ``target`` accepts; ``plugins`` names custom op types kept as plugin nodes.

    ``rank_form`` (TensorRT targets only) overrides :func:`rank_form_for`, for benchmarks and tests.
    """
    t = get_target(target)
    plugins = set(plugins)
    unknown = plugins - {SELECT, RANK}
    if unknown:
        raise ConfigError(f"plugins {sorted(unknown)} are not aknet ops; expected {SELECT} and/or {RANK}")
    if plugins and not t.is_tensorrt:
        raise ConfigError(f"plugins are a TensorRT notion; target {target} runs the function bodies")
    if rank_form is not None and (rank_form not in RANK_FORMS or not t.is_tensorrt):
        raise ConfigError(f"rank_form={rank_form!r}: expected one of {', '.join(RANK_FORMS)} "
                          "with a TensorRT target")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset > t.max_opset:
        log.info("converting opset %d -> %d for %s", opset, t.max_opset, target)
        m = onnx.version_converter.convert_version(m, t.max_opset)
    if t.is_tensorrt:
        _swap_bodies_for_tensorrt(m, rank_form or rank_form_for(target))
    keep = [f for f in m.functions if f.domain == DOMAIN and f.name in plugins]
    for f in keep:
        m.functions.remove(f)
    m = onnx.inliner.inline_local_functions(m)
    m = _fold(m)
    if not plugins:
        keep_ops = [o for o in m.opset_import if o.domain != DOMAIN]
        del m.opset_import[:]
        m.opset_import.extend(keep_ops)
    return finalize(m)


def _swap_bodies_for_tensorrt(m: onnx.ModelProto, rank_form: str) -> None:
    nodes = {n.op_type: n for n in m.graph.node if n.domain == DOMAIN}
    new = []
    for f in m.functions:
        if f.domain == DOMAIN and f.name == SELECT and SELECT in nodes:
            new.append(select_function_multipass(int(_attrs(nodes[SELECT])["k"])))
        elif f.domain == DOMAIN and f.name == RANK and RANK in nodes:
            a = _attrs(nodes[RANK])
            crit = a["criterion"].decode() if isinstance(a["criterion"], bytes) else a["criterion"]
            if rank_form == "topk" and SELECT not in nodes:
                raise ConfigError(f"rank_form='topk' needs the {SELECT} node's k; this graph has no {SELECT}")
            k = int(_attrs(nodes[SELECT])["k"]) if SELECT in nodes else 0
            new.append(rank_function_lowered(crit, tuple(int(g) for g in a["grid"]), k, rank_form))
        else:
            new.append(f)
    del m.functions[:]
    m.functions.extend(new)


def _fold(m: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and dead-node cleanup with onnx-graphsurgeon (TopK's K becomes an initializer)."""
    import onnx_graphsurgeon as gs

    _typed_constants(m.graph)
    graph = gs.import_onnx(m)
    graph.fold_constants().cleanup().toposort()
    for i, node in enumerate(graph.nodes):
        if not node.name:
            node.name = f"/{node.op} _{i}".replace(" ", "")
    out = gs.export_onnx(graph)
    out.ir_version = m.ir_version
    del out.functions[:]
    out.functions.extend(m.functions)
    return out


_SCALAR_ATTRS = {
    "value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64,
}


def _typed_constants(graph: onnx.GraphProto) -> None:
    """Rewrite ``Constant(value_float=...)`` and friends as typed tensors (graphsurgeon would make them float64)."""
    for node in graph.node:
        if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name not in _SCALAR_ATTRS:
            continue
        a = node.attribute[0]
        value = np.asarray(helper.get_attribute_value(a), dtype=_SCALAR_ATTRS[a.name])
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value)))
