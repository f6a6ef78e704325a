"""Static compatibility check of an ONNX graph against one target's importer rules.

Each finding names the rule, the node, what is wrong and how to fix it.
``python -m aknet_edge.export --check`` prints them and exits non-zero on errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .targets import Target, get_target

STANDARD_DOMAINS = ("", "ai.onnx")
INT_TYPES = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
             TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str
    message: str
    fix: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.rule} @ {self.node or '<graph>'}: {self.message} Fix: {self.fix}"


class _Graph:
    """Constants, value types and producers of a graph, for the rules."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001 - the check still runs on whatever the graph states
            pass
        self.model = model
        g = model.graph
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.types: dict[str, int] = {}
        for v in list(g.input) + list(g.output) + list(g.value_info):
            self.types[v.name] = v.type.tensor_type.elem_type
        for name, arr in self.consts.items():
            self.types.setdefault(name, numpy_helper.from_array(arr).data_type)


def check(model: onnx.ModelProto, target: str, plugins: tuple[str, ...] = ()) -> list[Finding]:
    """All findings of ``model`` for ``target``; ``plugins`` are custom op types the target has plugins for."""
    t = get_target(target)
    g = _Graph(model)
    out: list[Finding] = []
    for rule in (_opset, _custom_nodes, _topk, _qdq, _int64_io, _dynamic_dims, _scatternd):
        out += rule(g, t, set(plugins))
    return out


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}->{node.output[0] if node.output else '?'}"


def _opset(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    v = next((o.version for o in g.model.opset_import if o.domain in STANDARD_DOMAINS), None)
    if v is not None and v > t.max_opset:
        return [Finding("opset-limit", "", f"graph uses opset {v}; {t.label} parses at most opset {t.max_opset}.",
                        f"export at opset {t.max_opset} or run lower(model, '{t.name}').")]
    return []


def _custom_nodes(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    funcs = {(f.domain, f.name) for f in g.model.functions}
    for n in g.model.graph.node:
        if n.domain in STANDARD_DOMAINS:
            continue
        has_body = (n.domain, n.op_type) in funcs
        plugin = n.op_type in plugins
        if t.is_tensorrt and plugin and has_body and t.functions == "body":
            out.append(Finding("plugin-shadowed", _name(n),
                               f"{n.domain}.{n.op_type} has a function body; {t.label} imports the body and never "
                               "consults the plugin.", f"lower(model, '{t.name}', plugins=['{n.op_type}']) drops the body."))
        elif t.is_tensorrt and not plugin and t.functions == "ignored":
            out.append(Finding("custom-node", _name(n),
                               f"{n.domain}.{n.op_type} is a custom node; {t.label} ignores model-local functions, so "
                               "it would need a plugin.", f"run lower(model, '{t.name}') to inline it into standard ops."))
        elif not has_body and not plugin:
            out.append(Finding("custom-node", _name(n),
                               f"{n.domain}.{n.op_type} has neither a function body nor a declared plugin.",
                               "re-export with aknet_edge.export (which attaches bodies) or declare the plugin."))
        elif t.is_tensorrt and not plugin:
            out.append(Finding("custom-node", _name(n),
                               f"{n.domain}.{n.op_type} will be imported through its function body.",
                               f"lower(model, '{t.name}') inlines and simplifies it ahead of time.", "warning"))
    return out


def _topk(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    for n in g.model.graph.node:
        if n.op_type != "TopK" or n.domain not in STANDARD_DOMAINS:
            continue
        k_name = n.input[1] if len(n.input) > 1 else ""
        if k_name not in g.consts:
            sev = "error" if t.needs_constant_k or t.is_tensorrt else "warning"
            out.append(Finding("topk-k-constant", _name(n), f"TopK's K ({k_name}) is computed at run time; "
                               f"{t.label} needs a constant initializer.",
                               "fold constants (lower()) or make K a static attribute of the export.", sev))
        else:
            k = int(np.asarray(g.consts[k_name]).reshape(-1)[0])
            if t.topk_max_k is not None and k > t.topk_max_k:
                out.append(Finding("topk-k-limit", _name(n), f"TopK K={k} exceeds TensorRT's limit of {t.topk_max_k}.",
                                   f"lower(model, '{t.name}') selects in passes of at most {t.topk_max_k}."))
        if t.is_tensorrt and g.types.get(n.input[0]) in INT_TYPES:
            out.append(Finding("topk-integer-input", _name(n), f"TopK sorts an integer tensor ({n.input[0]}); "
                               f"{t.label} rejects integer TopK inputs.", "Cast the keys to float before TopK."))
        sorted_attr = next((a.i for a in n.attribute if a.name == "sorted"), 1)
        if t.requires_sorted_topk and sorted_attr != 1:
            out.append(Finding("topk-sorted", _name(n), f"TopK sorted=0; {t.label} requires sorted=1.",
                               "set sorted=1."))
    return out


def _qdq(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    for n in g.model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = n.input[1] if len(n.input) > 1 else ""
        zp = n.input[2] if len(n.input) > 2 else ""
        if scale not in g.consts:
            out.append(Finding("qdq-scale-constant", _name(n), "Q/DQ scale is not a build-time constant.",
                               "quantize with static calibration so scales are initializers."))
        elif np.any(np.asarray(g.consts[scale]) <= 0):
            out.append(Finding("qdq-scale-positive", _name(n), "Q/DQ scale has zero or negative values.",
                               "recalibrate; TensorRT needs strictly positive scales."))
        if not zp:
            if t.is_tensorrt:
                out.append(Finding("qdq-zero-point", _name(n), "Q/DQ node has no zero-point input; TensorRT needs "
                                   "it present (all zeros) to fix the INT8 type.", "quantize with zero points of "
                                   "type INT8 (ActivationSymmetric=True, QInt8)."))
            continue
        zarr = g.consts.get(zp)
        ztype = g.types.get(zp)
        if ztype is not None and ztype != TensorProto.INT8:
            out.append(Finding("qdq-int8", _name(n), f"Q/DQ zero point is {TensorProto.DataType.Name(ztype)}; "
                               "TensorRT supports INT8 only.", "quantize with activation_type=QInt8, weight_type=QInt8."))
        if zarr is not None and np.any(np.asarray(zarr) != 0):
            out.append(Finding("qdq-symmetric", _name(n), "Q/DQ zero point is non-zero (asymmetric); TensorRT needs "
                               "symmetric quantization.", "quantize with extra_options={'ActivationSymmetric': True}."))
    return out


def _int64_io(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    if not t.casts_int64:
        return []
    return [Finding("int64-io", v.name, f"graph I/O '{v.name}' is INT64; {t.label} casts it to INT32.",
                    "expose INT32 or float I/O (our exports give float keypoint coordinates).", "warning")
            for v in list(g.model.graph.input) + list(g.model.graph.output)
            if v.type.tensor_type.elem_type == TensorProto.INT64]


def _dynamic_dims(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    inits = {i.name for i in g.model.graph.initializer}
    for v in list(g.model.graph.input) + list(g.model.graph.output):
        if v.name in inits:
            continue
        dims = v.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if i > 0 and not d.HasField("dim_value"):
                out.append(Finding("dynamic-dims", v.name, f"dimension {i} of '{v.name}' is dynamic "
                                   f"({d.dim_param or '?'}); only the batch dimension may be.",
                                   "export with a fixed clip size and frame count."))
    return out


def _scatternd(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    if not t.ignores_scatternd_reduction:
        return []
    return [Finding("scatternd-reduction", _name(n), f"ScatterND reduction is silently ignored by {t.label}.",
                    "avoid ScatterND with reduction (use ScatterElements or plain ops).")
            for n in g.model.graph.node
            if n.op_type == "ScatterND" and any(a.name == "reduction" and a.s not in (b"", b"none") for a in n.attribute)]


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]
