"""Which network layers a weakly typed build pins to FP32, decided from names alone (no TensorRT).

Why: with ``BuilderFlag.FP16``/``INT8`` (8.x, and 10.x when not strongly
typed) a Cast to FP32 in the ONNX is only a preference, and TensorRT may run
scoring, selection and ranking in FP16, where integers above 2048 are no
longer exact. Only ``OBEY_PRECISION_CONSTRAINTS`` plus FP32 layer precision
and output types on those layers keep them FP32 (build.py sets them). Which
ONNX nodes are FP32 islands is :func:`aknet_edge.calibration.islands.fp32_island_nodes`;
this module maps them onto the layers TensorRT's ONNX parser made.

How the parser names layers (onnx-tensorrt ``ImporterContext::registerLayer``
and ``generateUniqueName``, the same in 8.5-GA, 8.6-GA and 10.1-GA): a layer
made for node ``X`` is named ``X``, or ``X_<n>`` (a parser-wide counter) when
``X`` is taken, e.g. by an earlier layer of the same node; constants are named
after their initializer; helper layers it does not register keep TensorRT's
``(Unnamed Layer* <i>) [<type>]``. So a layer belongs to node ``X`` when its
name is ``X``, or ``X_<n>`` where ``X`` is a node and ``X_<n>`` is not. An
unnamed helper layer is pinned when the nearest node-named layer before or
after it is pinned (the parser adds a node's helpers right before or after the
layer it registers); pinning one layer too many costs speed, never accuracy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Collection, List, Optional, Sequence, Tuple

UNNAMED_PREFIX = "(Unnamed Layer"
_SUFFIXED = re.compile(r"^(.+)_(\d+)$")
FLOAT, HALF, OTHER = "float", "half", "other"  # tensor kinds a LayerView records


@dataclass(frozen=True)
class LayerView:
    """What the pinning decision needs to know about one network layer (build.py reads it off TensorRT).

    ``inputs``/``outputs`` are the kinds of the layer's tensors: :data:`FLOAT` (FP32), :data:`HALF`
    (FP16) or :data:`OTHER` (integers, booleans, INT8).
    """

    name: str
    inputs: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = (FLOAT,)
    is_qdq: bool = False
    shape_output: bool = False


@dataclass(frozen=True)
class PinPlan:
    """The layers to pin: (layer index, indices of its outputs whose type becomes FP32)."""

    layers: Tuple[Tuple[int, Tuple[int, ...]], ...]
    island_nodes: int  # FP32 island nodes of the graph
    matched_nodes: int  # of those, how many some layer was found for

    @property
    def count(self) -> int:
        return len(self.layers)


def layer_node(layer_name: str, node_names: Collection[str]) -> Optional[str]:
    """The ONNX node a parser-named layer was made for, or None (constants, unnamed helpers)."""
    if layer_name in node_names:
        return layer_name
    match = _SUFFIXED.match(layer_name)
    if match and match.group(1) in node_names:
        return match.group(1)
    return None


def plan_pinning(layers: Sequence[LayerView], node_names: Collection[str], fp32_nodes: Collection[str]) -> PinPlan:
    """Which layers get FP32 precision and which of their outputs FP32 types.

    A layer is pinned when it belongs to an FP32 island node (or is an unnamed helper next to one, see the
    module docstring), is not a Q/DQ layer, touches at least one FP32 tensor, and writes neither an FP16
    tensor (a Cast into an FP16 part of the graph stays one) nor a shape tensor. Its FP32 outputs get the
    FP32 output type; integer outputs are left alone.
    """
    nodes = set(node_names)
    islands = set(fp32_nodes) & nodes
    owners = [layer_node(view.name, nodes) for view in layers]
    in_island = [owner is not None and owner in islands for owner in owners]
    for i, view in enumerate(layers):
        if owners[i] is None and view.name.startswith(UNNAMED_PREFIX):
            before = next((owners[j] for j in range(i - 1, -1, -1) if owners[j] is not None), None)
            after = next((owners[j] for j in range(i + 1, len(owners)) if owners[j] is not None), None)
            in_island[i] = before in islands or after in islands
    chosen: List[Tuple[int, Tuple[int, ...]]] = []
    for i, view in enumerate(layers):
        if not in_island[i] or view.is_qdq or view.shape_output or HALF in view.outputs:
            continue
        if FLOAT not in view.inputs and FLOAT not in view.outputs:
            continue
        chosen.append((i, tuple(j for j, kind in enumerate(view.outputs) if kind == FLOAT)))
    matched = {owner for owner in owners if owner is not None} & islands
    return PinPlan(tuple(chosen), len(islands), len(matched))
