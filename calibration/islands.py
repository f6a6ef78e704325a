"""The FP32 islands of a graph: which nodes reduced precision must leave in FP32, from the graph's own names.

Why one definition: three consumers ask the same question. The INT8 quantizer
and the FP16 converter (:mod:`.precision`) leave these nodes in float, and a
weakly typed TensorRT build (8.x, or 10.x without strong typing) pins the
layers these nodes become to FP32 (``runtime/trt/islands.py``), because there
a Cast to FP32 in the ONNX is only a preference. FP16 holds integers exactly
only up to 2048, so slot and index arithmetic in selection and ranking breaks
silently when it drifts to FP16.

What is an island comes from two places. The model declares module paths
(``model.float_modules(precision)`` in ``aknet_edge/model.py``; the package
records them, :class:`aknet_edge.package.Manifest` ``float_modules``), mapped
to node names by :func:`aknet_edge.export.module_nodes.nodes_of_modules`. The
graph decides the rest: every node of keypoint selection and ranking (the
``aknet`` custom nodes and, once inlined, their bodies) and the selection op
types, which have no module to name.

Torch-free (onnx only), so ``python -m aknet_edge.build --from`` uses it on the device.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Sequence

from aknet_edge.errors import ConfigError
from aknet_edge.export.functions import RANK, SELECT

CUSTOM_OP_SCOPES = tuple(f"/{op}" for op in (SELECT, RANK))  # the custom nodes and, once inlined, their bodies
FLOAT_OP_TYPES = ("TopK", "CumSum", "ScatterElements", "GatherElements", "Gather", "Softmax", "Min", "Expand")


def float_kept_nodes(model: Any, keep_float_nodes: Sequence[str] = ()) -> List[str]:
    """Names of the nodes that stay FP32, in graph order: ``keep_float_nodes`` plus selection and ranking.

    Raises ConfigError for a name not in the graph: a stale list would
    otherwise quantize what it meant to keep.
    """
    names = {n.name for n in model.graph.node}
    unknown = [k for k in keep_float_nodes if k not in names]
    if unknown:
        raise ConfigError(f"keep_float_nodes names {len(unknown)} node(s) not in the graph, e.g. {unknown[:3]}; "
                          "map module paths with aknet_edge.export.module_nodes.nodes_of_modules on this graph")
    keep = set(keep_float_nodes)
    return [n.name for n in model.graph.node
            if n.name in keep or n.name.startswith(CUSTOM_OP_SCOPES) or n.op_type in FLOAT_OP_TYPES]


def fp32_island_nodes(model: Any, module_paths: Iterable[str] = ()) -> List[str]:
    """The FP32 islands of ``model`` (an ONNX ModelProto): the declared modules' nodes plus selection and ranking.

    ``module_paths`` is the model's declaration for the graph's precision
    (``model.float_modules(precision)``, or the package's record of it).
    Raises ConfigError when a path names no node (a renamed module must fail,
    not silently run in FP16).
    """
    from aknet_edge.export.module_nodes import nodes_of_modules

    paths = tuple(module_paths)
    return float_kept_nodes(model, nodes_of_modules(model, paths) if paths else ())
