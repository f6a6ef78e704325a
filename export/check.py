"""Static compatibility check of an ONNX graph against one target's importer rules.

Each finding names the rule, the node, what is wrong and how to fix it.
``python -m aknet_edge.export --check`` prints them and exits non-zero on errors.

Each rule in :data:`RULES` says which versions it holds for (a predicate on
the target, whose version thresholds live once in ``aknet_edge.trt_eras``)
and where that behaviour comes from: a function of the onnx-tensorrt parser
(``builtin_op_importers.cpp`` up to 9.x, ``onnxOpImporters.cpp`` from 10.0,
read at the 8.5-GA, 8.6-GA, 9.x and 10.0/10.1-GA branches; later versions
from the parser's changelog), an NVIDIA header, or our own runtime. A rule is
an error only where the parser would reject the graph or silently compute
something else; a performance trap is a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from aknet_edge import trt_eras

from .targets import TARGETS, Target, get_target

STANDARD_DOMAINS = ("", "ai.onnx")
INT_TYPES = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
             TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}
FP16_EXACT_INT = 2048  # binary16 has an 11-bit significand: every integer up to 2048 is exact, 2049 is not
PARSER_8 = "builtin_op_importers.cpp"  # onnx-tensorrt 8.x/9.x
PARSER_10 = "onnxOpImporters.cpp"  # onnx-tensorrt 10.x


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str
    message: str
    fix: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.rule} @ {self.node or '<graph>'}: {self.message} Fix: {self.fix}"


@dataclass(frozen=True)
class Rule:
    """One rule: where it holds (``applies``), where it is an error rather than a warning, and why."""

    id: str
    applies: Callable[[Target], bool]
    source: str  # the parser function (or header / release note) the rule comes from
    error: Callable[[Target], bool] = lambda t: True

    def versions(self) -> str:
        """The TensorRT versions (and whether ONNX Runtime) the rule holds for, with its severity, as text."""
        def where(pred: Callable[[Target], bool]) -> str:
            trt = trt_eras.versions_where(lambda v: pred(Target.for_version(v)))
            every = f"{trt_eras.SUPPORTED_SINCE[0]}.{trt_eras.SUPPORTED_SINCE[1]}+"
            parts = [] if trt == "none" else ["every TensorRT" if trt == every else f"TensorRT {trt}"]
            if pred(TARGETS["onnxruntime"]):
                parts.append("ONNX Runtime")
            return " and ".join(parts) or "none"

        err = where(lambda t: self.applies(t) and self.error(t))
        warn = where(lambda t: self.applies(t) and not self.error(t))
        return "; ".join(p for p in (f"error: {err}" if err != "none" else "",
                                     f"warning: {warn}" if warn != "none" else "") if p)


def _trt(t: Target) -> bool:
    return t.is_tensorrt


def _body_imported(t: Target) -> bool:
    return t.is_tensorrt and t.has("onnx_functions")


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("opset-limit", lambda t: True, "NVIDIA's support matrix per release (the 8.x parser itself does not "
         "refuse a higher opset); ONNX Runtime's opset table"),
    Rule("custom-node", lambda t: True, "ModelImporter.cpp parseGraph (8.x): an op without a built-in importer goes to FallbackPluginImporter, "
         "functions unread; parseNode (9.0+): LocalFunctionImporter imports the body",
         error=lambda t: not t.is_tensorrt or not t.has("onnx_functions")),
    Rule("plugin-shadowed", lambda t: _body_imported(t) and not t.has("plugin_before_function"),
         "ModelImporter.cpp parseNode: localFunctions() is tried before FallbackPluginImporter until 10.7 "
         "(10.7 changelog: plugins first)"),
    Rule("function-input-shadowed", lambda t: _body_imported(t) and not t.has("function_input_scoping"),
         f"{PARSER_10} LocalFunctionImporter: an input whose inner name ctx->tensors() already holds is skipped, "
         "so the body reads the outer tensor (10.8 changelog: fixed)"),
    Rule("topk-k-constant", _trt, f"{PARSER_8} TopK: 8.5 assertIsWeights(K) \"only supports input K as an "
         "initializer\"; 8.6+ take K as a tensor, so the 3840 limit cannot be verified statically",
         error=lambda t: not t.has("runtime_topk_k")),
    Rule("topk-k-limit", _trt, "NvInfer.h INetworkDefinition::addTopK: K at most 3840 in every version "
         "(11.1 adds an optional TopkLastDim plugin)"),
    Rule("topk-integer-input", lambda t: t.is_tensorrt and not t.has("integer_topk"),
         f"{PARSER_8} TopK: 8.5 notInvalidType(input, {{INT32, UINT8}}); 8.6 casts INT32 to FP32; "
         f"10.x {PARSER_10} TopK takes INT32/INT64"),
    Rule("cumsum-loop", lambda t: t.is_tensorrt and not t.has_cumulative_layer,
         f"{PARSER_8} / {PARSER_10} CumSum: an ILoop over the axis, one sequential iteration per element "
         "(10.8 changelog: native, dynamic axes)", error=lambda t: False),
    Rule("cumsum-axis-constant", lambda t: t.is_tensorrt and not t.has_cumulative_layer,
         f"{PARSER_8} / {PARSER_10} CumSum: assertIsWeights(axis) \"Axis input for CumSum must be an initializer\" "
         "(10.8 changelog: dynamic axes)"),
    Rule("loop-node", _trt, f"{PARSER_8} / {PARSER_10} Loop and Scan: an ILoop, iterations run one after another",
         error=lambda t: False),
    Rule("scatternd-reduction-ignored", lambda t: t.is_tensorrt and not t.has("scatter_reduction_read"),
         f"{PARSER_8} ScatterND -> addScatterLayer (onnx2trt_utils.cpp): `reduction` is never read"),
    Rule("scatternd-reduction-attribute",
         lambda t: t.is_tensorrt and t.has("scatter_reduction_read") and not t.has("scatternd_reduction_attribute"),
         f"{PARSER_10} ScatterND: ASSERT_NODE(!attrs.count(\"reduction\")), even \"none\" "
         "(10.9 changelog: opset 18+ ScatterND fixed)"),
    Rule("scatterelements-reduction-ignored", lambda t: t.is_tensorrt and not t.has("scatter_reduction_read"),
         f"{PARSER_8} ScatterElements -> addScatterLayer (onnx2trt_utils.cpp): `reduction` is never read"),
    Rule("scatterelements-reduction-plugin", lambda t: t.is_tensorrt and t.has("scatter_reduction_read"),
         f"{PARSER_10} ScatterElements -> scatterPluginHelper: the ScatterElements plugin of libnvinfer_plugin",
         error=lambda t: False),
    Rule("gathernd-batch-dims", lambda t: True, f"{PARSER_10} GatherND -> addGatherV2(kND) + setNbElementWiseDims; "
         "NvInfer.h IGatherLayer: kND takes 0 to rank(data) - 1 element-wise dims, equal leading dims, "
         "a build-time constant last indices dim; the ONNX GatherND spec"),
    Rule("qdq-scale-constant", _trt, "TensorRT explicit quantization: scales are build-time constants "
         "(QuantDequantLinearHelper verifies them when they are weights)"),
    Rule("qdq-scale-positive", _trt, f"{PARSER_8} / {PARSER_10} QuantDequantLinearHelper: \"Scale coefficients "
         "must all be positive\""),
    Rule("qdq-zero-point", lambda t: t.is_tensorrt and not t.has("optional_qdq_zero_point"),
         f"{PARSER_8} QuantDequantLinearHelper: 8.5 requires 3 inputs, 8.6 reads inputs.at(2) for INT8; "
         "9.0+ `if (inputs.size() > 2)`"),
    Rule("qdq-int8", _trt, f"{PARSER_8} QuantDequantLinearHelper: notInvalidType(zero point, UINT8); "
         f"{PARSER_10}: a UINT8 zero point is replaced by INT8 (other values)"),
    Rule("qdq-symmetric", _trt, "QuantDequantLinearHelper: shiftIsAllZeros(zero point)"),
    Rule("qdq-axis", _trt, "QuantDequantLinearHelper: attrs.get(\"axis\", nbDims), 0 for per-channel scales "
         "(8.x-10.x); 11.0 defaults to ONNX's 1", error=lambda t: not t.has("onnx_default_qdq_axis")),
    Rule("int64-io", lambda t: t.is_tensorrt and not t.has("int64_tensors"),
         "onnx2trt_utils.cpp convertDtype / convertINT64 (8.x): INT64 inputs and weights become INT32", error=lambda t: False),
    Rule("dynamic-dims", lambda t: True, "aknet_edge's runtime: one optimization profile over the batch axis of "
         "the graph inputs (graph outputs follow from them)"),
    Rule("dla-unavailable", lambda t: t.is_tensorrt and not t.has("dla"),
         "TensorRT 11.0-11.3 release notes: no DLA; 11.4.1 brings it back on AGX Orin"),
    Rule("fp16-index", lambda t: True, f"IEEE binary16: integers are exact only up to {FP16_EXACT_INT}",
         error=lambda t: False),
)}
"""Every rule, by id. No rule for TopK's ``sorted``: no parser version reads it (the output is always sorted)."""


class _Graph:
    """Constants, value types, shapes, producers and consumers of a graph, for the rules."""

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
        self.dims: dict[str, list[int | None]] = {}
        for v in list(g.input) + list(g.output) + list(g.value_info):
            self.types[v.name] = v.type.tensor_type.elem_type
            if v.type.tensor_type.HasField("shape"):
                self.dims[v.name] = [d.dim_value if d.HasField("dim_value") else None
                                     for d in v.type.tensor_type.shape.dim]
        for name, arr in self.consts.items():
            self.types.setdefault(name, numpy_helper.from_array(arr).data_type)
            self.dims.setdefault(name, list(arr.shape))
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for n in g.node:
            for i, name in enumerate(n.input):
                self.consumers.setdefault(name, []).append((n, i))


def check(model: onnx.ModelProto, target: Union[str, Target], plugins: tuple[str, ...] = (),
          dla: bool = False) -> list[Finding]:
    """All findings of ``model`` for ``target``.

    ``target``: a target name, or ``Target.for_version(installed)`` where the real version is known.
    ``plugins``: custom op types the target has plugins for. ``dla``: the engine is to run on a DLA core.
    """
    t = get_target(target) if isinstance(target, str) else target
    g = _Graph(model)
    out: list[Finding] = []
    for rule in (_opset, _custom_nodes, _function_inputs, _topk, _cumsum, _loops, _scatter, _gathernd, _qdq,
                 _int64_io, _dynamic_dims, _fp16_index):
        out += rule(g, t, set(plugins))
    if dla and RULES["dla-unavailable"].applies(t):
        entry = trt_eras.FEATURES["dla"]
        out.append(_finding("dla-unavailable", t, "", f"a DLA core was requested; {t.label} has no DLA.",
                            entry.instead + "."))
    return out


def _finding(rule: str, t: Target, node: str, message: str, fix: str) -> Finding:
    """A finding whose severity the rule table decides for ``t``."""
    return Finding(rule, node, message, fix, "error" if RULES[rule].error(t) else "warning")


def _applies(rule: str, t: Target) -> bool:
    return RULES[rule].applies(t)


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}->{node.output[0] if node.output else '?'}"


def _attr(node: onnx.NodeProto, name: str, default=None):
    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def _standard(node: onnx.NodeProto, *ops: str) -> bool:
    return node.op_type in ops and node.domain in STANDARD_DOMAINS


def _opset(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    v = next((o.version for o in g.model.opset_import if o.domain in STANDARD_DOMAINS), None)
    if v is not None and v > t.max_opset:
        return [_finding("opset-limit", t, "", f"graph uses opset {v}; {t.label} parses at most opset {t.max_opset}.",
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
        if plugin and has_body and _applies("plugin-shadowed", t):
            out.append(_finding("plugin-shadowed", t, _name(n),
                                f"{n.domain}.{n.op_type} has a function body; {t.label} imports the body and never "
                                "consults the plugin.", f"lower(model, '{t.name}', plugins=['{n.op_type}']) drops "
                                "the body."))
        elif t.is_tensorrt and not plugin and t.functions == "ignored":
            out.append(_finding("custom-node", t, _name(n),
                                f"{n.domain}.{n.op_type} is a custom node; {t.label} ignores model-local functions, "
                                "so it would need a plugin.", f"run lower(model, '{t.name}') to inline it into "
                                "standard ops."))
        elif not has_body and not plugin:
            out.append(Finding("custom-node", _name(n), f"{n.domain}.{n.op_type} has neither a function body nor a "
                               "declared plugin.", "re-export with aknet_edge.export (which attaches bodies) or "
                               "declare the plugin."))
        elif t.is_tensorrt and not plugin:
            out.append(_finding("custom-node", t, _name(n), f"{n.domain}.{n.op_type} will be imported through its "
                                "function body.", f"lower(model, '{t.name}') inlines and simplifies it ahead of "
                                "time."))
    return out


def _function_inputs(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    """9.0-10.7: a body input named like a tensor the parser already holds reads that tensor instead."""
    if not _applies("function-input-shadowed", t):
        return []
    funcs = {(f.domain, f.name): f for f in g.model.functions}
    graph = g.model.graph
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    out = []
    for n in graph.node:
        f = funcs.get((n.domain, n.op_type))
        plugin_used = n.op_type in plugins and t.functions == "plugin-first"
        if f is not None and not plugin_used:
            for formal, actual in zip(f.input, n.input):
                if formal != actual and formal in defined:
                    out.append(_finding("function-input-shadowed", t, _name(n),
                                        f"function input '{formal}' of {n.domain}.{n.op_type} has the name of a graph "
                                        f"tensor; {t.label} then feeds the body '{formal}' instead of '{actual}'.",
                                        f"run lower(model, '{t.name}') to inline the body, or rename the graph "
                                        "tensor."))
        defined.update(o for o in n.output if o)
    return out


def _topk(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    for n in g.model.graph.node:
        if not _standard(n, "TopK"):
            continue
        k_name = n.input[1] if len(n.input) > 1 else ""
        if k_name not in g.consts:
            if _applies("topk-k-constant", t):
                out.append(_finding("topk-k-constant", t, _name(n), f"TopK's K ({k_name}) is computed at run time; "
                                    + (f"{t.label} needs a constant initializer." if RULES["topk-k-constant"].error(t)
                                       else f"{t.label} takes it, but K <= {t.topk_max_k} cannot be verified here."),
                                    "fold constants (lower()) or make K a static attribute of the export."))
        else:
            k = int(np.asarray(g.consts[k_name]).reshape(-1)[0])
            if t.topk_max_k is not None and k > t.topk_max_k:
                out.append(_finding("topk-k-limit", t, _name(n), f"TopK K={k} exceeds TensorRT's limit of "
                                    f"{t.topk_max_k}.", f"lower(model, '{t.name}') selects in passes of at most "
                                    f"{t.topk_max_k}."))
        if _applies("topk-integer-input", t) and g.types.get(n.input[0]) in INT_TYPES:
            out.append(_finding("topk-integer-input", t, _name(n), f"TopK sorts an integer tensor ({n.input[0]}); "
                                f"{t.label} rejects integer TopK inputs.", "Cast the keys to float before TopK."))
    return out


def _cumsum(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    if not _applies("cumsum-loop", t):
        return []
    out = []
    for n in g.model.graph.node:
        if not _standard(n, "CumSum"):
            continue
        axis = n.input[1] if len(n.input) > 1 else ""
        dims = g.dims.get(n.input[0])
        steps = ""
        if axis in g.consts and dims:
            a = int(np.asarray(g.consts[axis]).reshape(-1)[0])
            if -len(dims) <= a < len(dims) and dims[a]:
                steps = f" ({dims[a]} steps)"
        out.append(_finding("cumsum-loop", t, _name(n), f"{t.label} builds CumSum as an ILoop with one sequential "
                            f"iteration per element of the axis{steps}, every inference; the native cumulative layer "
                            "arrives in TensorRT 10.8.", f"run lower(model, '{t.name}'), whose ranking needs no prefix "
                            "sum, or compute the sum with matrix products."))
        if axis not in g.consts:
            out.append(_finding("cumsum-axis-constant", t, _name(n), f"CumSum's axis ({axis}) is not an "
                                f"initializer; {t.label} needs a constant axis.", "fold constants (lower())."))
    return out


def _loops(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    if not _applies("loop-node", t):
        return []
    return [_finding("loop-node", t, _name(n), f"{n.op_type} becomes an ILoop in {t.label}: its iterations run one "
                     "after another.", "unroll it or express it with tensor ops at export.")
            for n in g.model.graph.node if _standard(n, "Loop", "Scan")]


def _scatter(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    for n in g.model.graph.node:
        if not _standard(n, "ScatterND", "ScatterElements"):
            continue
        has = any(a.name == "reduction" for a in n.attribute)
        red = _attr(n, "reduction", b"none")
        red = red.decode() if isinstance(red, bytes) else red
        if n.op_type == "ScatterND":
            if has and _applies("scatternd-reduction-attribute", t):
                out.append(_finding("scatternd-reduction-attribute", t, _name(n), f"ScatterND has a reduction "
                                    f"attribute ('{red}'); {t.label} rejects any reduction attribute, even 'none'.",
                                    "drop the attribute (the default is 'none') or use ScatterElements."))
            elif red != "none" and _applies("scatternd-reduction-ignored", t):
                out.append(_finding("scatternd-reduction-ignored", t, _name(n), f"ScatterND reduction '{red}' is "
                                    f"silently ignored by {t.label}: it computes a plain scatter.",
                                    "avoid scatter reductions (sum with a one-hot MatMul or plain ops)."))
        elif red != "none":
            if _applies("scatterelements-reduction-ignored", t):
                out.append(_finding("scatterelements-reduction-ignored", t, _name(n), f"ScatterElements reduction "
                                    f"'{red}' is silently ignored by {t.label}: it computes a plain scatter.",
                                    "avoid scatter reductions (sum with a one-hot MatMul or plain ops)."))
            elif _applies("scatterelements-reduction-plugin", t):
                out.append(_finding("scatterelements-reduction-plugin", t, _name(n), f"ScatterElements reduction "
                                    f"'{red}' runs as TensorRT's ScatterElements plugin in {t.label}.",
                                    "load libnvinfer_plugin (initLibNvInferPlugins) before parsing."))
    return out


def _gathernd(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    out = []
    for n in g.model.graph.node:
        if not _standard(n, "GatherND"):
            continue
        b = int(_attr(n, "batch_dims", 0))
        data, idx = g.dims.get(n.input[0]), g.dims.get(n.input[1])
        if data is None or idx is None:
            continue
        r, q = len(data), len(idx)
        problem = ""
        if not 0 <= b < min(r, q):
            problem = f"batch_dims={b} needs 0 <= batch_dims < min(rank(data)={r}, rank(indices)={q})."
        elif any(x is not None and y is not None and x != y for x, y in zip(data[:b], idx[:b])):
            problem = f"the first {b} dimensions of data {data[:b]} and indices {idx[:b]} differ."
        elif idx[-1] is None:
            problem = "the last dimension of the indices is not a build-time constant."
        elif not 1 <= idx[-1] <= r - b:
            problem = f"the indices' last dimension ({idx[-1]}) must be between 1 and rank(data) - batch_dims = {r - b}."
        if problem:
            out.append(_finding("gathernd-batch-dims", t, _name(n), f"GatherND: {problem}",
                                "reshape the indices to (batch..., points, index tuple) with static last dimension."))
    return out


def _qdq(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    if not t.is_tensorrt:
        return []
    out = []
    for n in g.model.graph.node:
        if not _standard(n, "QuantizeLinear", "DequantizeLinear"):
            continue
        scale = n.input[1] if len(n.input) > 1 else ""
        zp = n.input[2] if len(n.input) > 2 else ""
        if scale not in g.consts:
            out.append(_finding("qdq-scale-constant", t, _name(n), "Q/DQ scale is not a build-time constant.",
                                "quantize with static calibration so scales are initializers."))
        else:
            sarr = np.asarray(g.consts[scale])
            if np.any(sarr <= 0):
                out.append(_finding("qdq-scale-positive", t, _name(n), "Q/DQ scale has zero or negative values.",
                                    "recalibrate; TensorRT needs strictly positive scales."))
            if sarr.size > 1 and not any(a.name == "axis" for a in n.attribute):
                out.append(_finding("qdq-axis", t, _name(n), "per-channel Q/DQ without an `axis` attribute: ONNX "
                                    "(and ONNX Runtime, TensorRT 11) take axis 1, TensorRT 8.x-10.x take axis 0.",
                                    "write `axis` explicitly."))
        if not zp:
            if _applies("qdq-zero-point", t):
                out.append(_finding("qdq-zero-point", t, _name(n), f"Q/DQ node has no zero-point input; {t.label} "
                                    "needs it present (all zeros) to fix the INT8 type.", "quantize with zero points "
                                    "of type INT8 (ActivationSymmetric=True, QInt8)."))
            continue
        zarr = g.consts.get(zp)
        ztype = g.types.get(zp)
        if ztype is not None and ztype != TensorProto.INT8:
            out.append(_finding("qdq-int8", t, _name(n), f"Q/DQ zero point is {TensorProto.DataType.Name(ztype)}; "
                                "TensorRT supports INT8 only.", "quantize with activation_type=QInt8, "
                                "weight_type=QInt8."))
        if zarr is not None and np.any(np.asarray(zarr) != 0):
            out.append(_finding("qdq-symmetric", t, _name(n), "Q/DQ zero point is non-zero (asymmetric); TensorRT "
                                "needs symmetric quantization.", "quantize with extra_options="
                                "{'ActivationSymmetric': True}."))
    return out


def _int64_io(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    if not _applies("int64-io", t):
        return []
    return [_finding("int64-io", t, v.name, f"graph I/O '{v.name}' is INT64; {t.label} casts it to INT32.",
                     "expose INT32 or float I/O (our exports give float keypoint coordinates).")
            for v in list(g.model.graph.input) + list(g.model.graph.output)
            if v.type.tensor_type.elem_type == TensorProto.INT64]


def _dynamic_dims(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    """Inputs only: the optimization profile covers the inputs, and the outputs' shapes follow from them."""
    out = []
    inits = {i.name for i in g.model.graph.initializer}
    for v in g.model.graph.input:
        if v.name in inits:
            continue
        for i, d in enumerate(v.type.tensor_type.shape.dim):
            if i > 0 and not d.HasField("dim_value"):
                out.append(_finding("dynamic-dims", t, v.name, f"dimension {i} of input '{v.name}' is dynamic "
                                    f"({d.dim_param or '?'}); only the batch dimension may be.",
                                    "export with a fixed clip size and frame count."))
    return out


# -- FP16 tensors that carry an index or a count ------------------------------------------------

_PASS_THROUGH = ("Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand", "Cast", "Concat", "Transpose")
_INDEX_INPUT = {"Gather": 1, "GatherElements": 1, "GatherND": 1, "ScatterElements": 1, "ScatterND": 1}


def _index_bound(g: _Graph, name: str, seen: set[str] | None = None) -> int | None:
    """The largest value ``name`` can hold as an index, from the axes it indexes (None: not used as an index)."""
    seen = seen if seen is not None else set()
    if name in seen:
        return None
    seen.add(name)
    best = None
    for node, i in g.consumers.get(name, []):
        bound = None
        if node.op_type in _PASS_THROUGH and i == 0:
            bound = _index_bound(g, node.output[0], seen)
        elif _INDEX_INPUT.get(node.op_type) == i:
            dims = g.dims.get(node.input[0])
            if dims:
                if node.op_type in ("GatherND", "ScatterND"):
                    sizes = [d for d in dims if d is not None]
                    bound = max(sizes) - 1 if sizes else None
                else:
                    axis = int(_attr(node, "axis", 0))
                    if -len(dims) <= axis < len(dims) and dims[axis] is not None:
                        bound = dims[axis] - 1
        if bound is not None:
            best = bound if best is None else max(best, bound)
    return best


def _value_bound(g: _Graph, name: str, depth: int = 0) -> int | None:
    """The largest magnitude an integer tensor can hold, where the graph shows it (None: unknown)."""
    if depth > 16:
        return None
    if name in g.consts:
        arr = np.asarray(g.consts[name])
        return int(np.abs(arr).max()) if arr.size else 0
    node = g.producer.get(name)
    if node is None:
        return None
    if node.op_type in _PASS_THROUGH:
        return _value_bound(g, node.input[0], depth + 1)
    if node.op_type in ("Gather", "GatherElements", "GatherND"):
        return _value_bound(g, node.input[0], depth + 1)  # values come from the data input
    if node.op_type in ("TopK", "ArgMax", "ArgMin", "NonZero") and name == node.output[-1]:
        dims = g.dims.get(node.input[0])
        axis = int(_attr(node, "axis", -1 if node.op_type == "TopK" else 0))
        if dims and -len(dims) <= axis < len(dims) and dims[axis] is not None:
            return dims[axis] - 1
    if node.op_type == "Shape":
        dims = g.dims.get(node.input[0])
        return max((d for d in dims or [] if d is not None), default=None)
    return None


def _fp16_index(g: _Graph, t: Target, plugins: set[str]) -> list[Finding]:
    """FP16 tensors that carry an index or a count above 2048: Casts between FP16 and integer types."""
    out = []
    for n in g.model.graph.node:
        if not _standard(n, "Cast"):
            continue
        src, dst = g.types.get(n.input[0]), int(_attr(n, "to", 0))
        if src == TensorProto.FLOAT16 and dst in INT_TYPES:
            bound, what = _index_bound(g, n.output[0]), "an index computed in FP16"
        elif src in INT_TYPES and dst == TensorProto.FLOAT16:
            bound, what = _value_bound(g, n.input[0]), "integers converted to FP16"
        else:
            continue
        if bound is not None and bound > FP16_EXACT_INT:
            out.append(_finding("fp16-index", t, _name(n), f"{what} ({n.input[0]} -> {n.output[0]}) reaches "
                                f"{bound}; FP16 holds integers exactly only up to {FP16_EXACT_INT}.",
                                "keep this node in FP32 (node_block_list / precision constraints)."))
    return out


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def rule_table() -> list[tuple[str, str, str]]:
    """(rule, versions and severity, source) for every rule, in :data:`RULES` order: the README's table."""
    return [(r.id, r.versions(), r.source) for r in RULES.values()]


def rule_table_markdown() -> str:
    rows = ["| rule | where (severity) | from |", "|---|---|---|"]
    rows += [f"| `{rule}` | {versions} | {source} |" for rule, versions, source in rule_table()]
    return "\n".join(rows)
