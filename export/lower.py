"""Lowering an exported graph for one target: bodies inlined, constants folded, TopK tamed.

For TensorRT the custom nodes' function bodies are replaced before inlining
by forms its parser takes for any K: ranking by mask compaction (constant
per-position keys scattered into a mask, a prefix sum gives each kept point
its slot: no TopK at all), and selection by TopK passes of at most 3840.
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


def rank_function_compaction(criterion: str, grid: tuple[int, int, int], opset: int = 17) -> onnx.FunctionProto:
    """KeypointRank without TopK: scatter kept keys into a mask over key space; its prefix sum is each slot."""
    if criterion == "score":
        from .functions import rank_function

        return rank_function(criterion, grid, opset)  # identity body: select already ordered by score
    n = int(np.prod(grid))
    nodes = [
        _const("key_table", rank_keys(criterion, grid).astype(np.int64)),
        _const("n_dim", np.array([n], np.int64)),
        _const("axis0", np.array([0], np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("two", np.array([2], np.int64)),
        _const("three", np.array([3], np.int64)),
        _const("one_f", np.array(1.0, np.float32)),
        _const("axis1", np.array(1, np.int64)),
        helper.make_node("Gather", ["key_table", "indices"], ["keys"], axis=0),
        helper.make_node("Shape", ["indices"], ["i_shape"]),
        helper.make_node("Slice", ["i_shape", "axis0", "one1"], ["b_dim"]),
        _const("one1", np.array([1], np.int64)),
        helper.make_node("Concat", ["b_dim", "n_dim"], ["mask_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["mask_shape"], ["mask0"],
                         value=numpy_helper.from_array(np.array([0.0], np.float32))),
        helper.make_node("Expand", ["one_f", "i_shape"], ["ones"]),
        helper.make_node("ScatterElements", ["mask0", "keys", "ones"], ["mask"], axis=1),
        helper.make_node("CumSum", ["mask", "axis1"], ["csum"]),
        helper.make_node("GatherElements", ["csum", "keys"], ["slot1"], axis=1),
        helper.make_node("Sub", ["slot1", "one_f"], ["slot_f"]),
        helper.make_node("Cast", ["slot_f"], ["slot"], to=TensorProto.INT64),
        helper.make_node("ScatterElements", ["indices", "slot", "indices"], ["indices_out"], axis=1),
        helper.make_node("ScatterElements", ["scores", "slot", "scores"], ["scores_out"], axis=1),
        helper.make_node("Shape", ["features"], ["f_shape"]),
        helper.make_node("Slice", ["f_shape", "two", "three"], ["c_dim"]),
        helper.make_node("Concat", ["i_shape", "c_dim"], ["scatter_shape"], axis=0),
        helper.make_node("Unsqueeze", ["slot", "axis2"], ["slot3"]),
        helper.make_node("Expand", ["slot3", "scatter_shape"], ["slot_c"]),
        helper.make_node("ScatterElements", ["features", "slot_c", "features"], ["features_out"], axis=1),
    ]
    # ScatterElements into a copy of the input itself: every slot 0..K-1 is written exactly once
    return helper.make_function(
        DOMAIN, RANK, ["features", "indices", "scores"], ["features_out", "indices_out", "scores_out"],
        _toposort(nodes, ["features", "indices", "scores"], RANK), [helper.make_opsetid("", opset)],
        attributes=["criterion", "grid", "plugin_version", "plugin_namespace"],
    )


def lower(model: onnx.ModelProto, target: str, plugins: Iterable[str] = ()) -> onnx.ModelProto:
    """A copy of ``model`` that ``target`` accepts; ``plugins`` names custom op types kept as plugin nodes."""
    t = get_target(target)
    plugins = set(plugins)
    unknown = plugins - {SELECT, RANK}
    if unknown:
        raise ConfigError(f"plugins {sorted(unknown)} are not aknet ops; expected {SELECT} and/or {RANK}")
    if plugins and not t.is_tensorrt:
        raise ConfigError(f"plugins are a TensorRT notion; target {target} runs the function bodies")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset > t.max_opset:
        log.info("converting opset %d -> %d for %s", opset, t.max_opset, target)
        m = onnx.version_converter.convert_version(m, t.max_opset)
    if t.is_tensorrt:
        _swap_bodies_for_tensorrt(m)
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


def _swap_bodies_for_tensorrt(m: onnx.ModelProto) -> None:
    nodes = {n.op_type: n for n in m.graph.node if n.domain == DOMAIN}
    new = []
    for f in m.functions:
        if f.domain == DOMAIN and f.name == SELECT and SELECT in nodes:
            new.append(select_function_multipass(int(_attrs(nodes[SELECT])["k"])))
        elif f.domain == DOMAIN and f.name == RANK and RANK in nodes:
            a = _attrs(nodes[RANK])
            crit = a["criterion"].decode() if isinstance(a["criterion"], bytes) else a["criterion"]
            new.append(rank_function_compaction(crit, tuple(int(g) for g in a["grid"])))
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
