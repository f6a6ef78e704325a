"""What each deployment target's ONNX importer accepts (see shared/design/tensorrt.md).

Targets are data: ONNX Runtime plus one target per TensorRT release in
:data:`aknet_edge.trt_eras.RELEASES`. Every rule below asks that table whether
the target's version has a feature, so a version threshold is written once,
there, and shared with runtime/trt/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from aknet_edge import trt_eras
from aknet_edge.errors import ConfigError
from aknet_edge.trt_eras import TOPK_MAX_K

__all__ = ["TOPK_MAX_K", "ONNXRUNTIME_MAX_OPSET", "Target", "TARGETS", "TENSORRT_TARGETS", "get_target"]

ONNXRUNTIME_MAX_OPSET = 21


@dataclass(frozen=True)
class Target:
    """One engine family's import rules."""

    name: str
    tensorrt: Optional[Tuple[int, int]]  # None: ONNX Runtime
    max_opset: int

    @property
    def is_tensorrt(self) -> bool:
        return self.tensorrt is not None

    def _lacks(self, feature: str) -> bool:
        """True for a TensorRT target whose version lacks ``feature``; ONNX Runtime lacks nothing here."""
        return self.tensorrt is not None and not trt_eras.available(feature, self.tensorrt)

    @property
    def functions(self) -> str:
        """How custom nodes with function bodies import: "run" (ORT inlines them), "ignored" (8.x),
        "body" (9.0-10.6), "plugin-first" (10.7+)."""
        if self.tensorrt is None:
            return "run"
        if self._lacks("onnx_functions"):
            return "ignored"
        return "body" if self._lacks("plugin_before_function") else "plugin-first"

    @property
    def topk_max_k(self) -> Optional[int]:
        return TOPK_MAX_K if self.is_tensorrt else None

    @property
    def needs_constant_k(self) -> bool:
        return self._lacks("runtime_topk_k")

    @property
    def casts_int64(self) -> bool:
        return self._lacks("int64_tensors")

    @property
    def requires_sorted_topk(self) -> bool:
        return self._lacks("unsorted_topk")

    @property
    def ignores_scatternd_reduction(self) -> bool:
        return self._lacks("scatternd_reduction")

    @property
    def label(self) -> str:
        return self.name if self.tensorrt is None else trt_eras.label(self.tensorrt)


TARGETS: Dict[str, Target] = {"onnxruntime": Target("onnxruntime", None, ONNXRUNTIME_MAX_OPSET)}
TARGETS.update((r.target, Target(r.target, r.version, r.max_opset)) for r in trt_eras.RELEASES)
TENSORRT_TARGETS = tuple(n for n, t in TARGETS.items() if t.is_tensorrt)


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}")
    return TARGETS[name]
