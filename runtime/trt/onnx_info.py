"""What an ONNX file says about precision, node names and plugins, read without TensorRT.

Why: a strongly typed network takes its precision from the graph, so the build
plan needs to know whether the graph carries Q/DQ nodes or FP16 tensors before
it picks network and builder flags; a weakly typed build pins FP32 islands by
node name (islands.py); and a node no importer knows needs a plugin, which is
checked before parsing (plugins.py). ``onnx`` is imported only when asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Tuple, Union

from aknet_edge.errors import ConfigError, DependencyError

PathLike = Union[str, "os.PathLike[str]"]  # a path argument: str or Path


_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class PluginNode:
    """A node whose op type is no standard ONNX op: TensorRT imports it through a plugin or its function body.

    ``plugin_version``/``plugin_namespace`` are the node's attributes of those
    names (defaults "1" and ""), which the parser uses to find the creator.
    """

    name: str
    op_type: str
    domain: str
    plugin_version: str = "1"
    plugin_namespace: str = ""
    has_function: bool = False  # a model-local function of that (domain, op_type) exists


@dataclass(frozen=True)
class OnnxGraphInfo:
    """What the ONNX file says about precision (strong typing takes it from there), node names and plugins."""

    has_qdq: bool
    has_fp16: bool
    node_names: Tuple[str, ...] = ()  # main graph's nodes, in order (TensorRT names layers after them)
    plugin_nodes: Tuple[PluginNode, ...] = ()


def inspect_onnx(onnx_path: PathLike) -> OnnxGraphInfo:
    """Look for Q/DQ nodes and FP16 tensors without loading external weights."""
    path = Path(onnx_path)
    if not path.is_file():
        raise ConfigError(f"ONNX file {path} does not exist")
    try:
        import onnx  # noqa: WPS433 - only needed to build, not to run engines
    except ImportError as exc:
        raise DependencyError(f"onnx is needed to build engines ({exc}): pip install onnx") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from exc
    fp16 = onnx.TensorProto.FLOAT16
    has_qdq = False
    has_fp16 = False

    def visit_graph(graph: Any) -> None:
        nonlocal has_fp16
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type == fp16:
                has_fp16 = True
        if any(init.data_type == fp16 for init in graph.initializer):
            has_fp16 = True
        visit_nodes(graph.node)

    def visit_nodes(nodes: Iterable[Any]) -> None:
        nonlocal has_qdq, has_fp16
        for node in nodes:
            if node.op_type in _QDQ_OPS and node.domain in ("", "ai.onnx"):
                has_qdq = True
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == fp16:
                    has_fp16 = True
                if attr.HasField("t") and attr.t.data_type == fp16:
                    has_fp16 = True
                if attr.HasField("g"):
                    visit_graph(attr.g)
                for sub in attr.graphs:
                    visit_graph(sub)

    visit_graph(model.graph)
    for function in model.functions:
        visit_nodes(function.node)
    return OnnxGraphInfo(has_qdq=has_qdq, has_fp16=has_fp16, node_names=tuple(n.name for n in model.graph.node),
                         plugin_nodes=plugin_nodes(model))


def plugin_nodes(model: Any) -> Tuple[PluginNode, ...]:
    """The main graph's nodes with an op type ONNX does not define (TensorRT dispatches by op type only)."""
    import onnx

    functions = {(f.domain, f.name) for f in model.functions}
    found = []
    for node in model.graph.node:
        if onnx.defs.has(node.op_type):
            continue
        attrs = {a.name: a for a in node.attribute}
        version = attrs["plugin_version"].s.decode() if "plugin_version" in attrs else "1"
        namespace = attrs["plugin_namespace"].s.decode() if "plugin_namespace" in attrs else ""
        found.append(PluginNode(node.name, node.op_type, node.domain, version or "1", namespace,
                                (node.domain, node.op_type) in functions))
    return tuple(found)
