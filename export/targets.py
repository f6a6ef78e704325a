"""What each deployment target's ONNX importer accepts (see shared/design/tensorrt.md).

Targets are data: ONNX Runtime plus one target per TensorRT release in
:data:`aknet_edge.trt_eras.RELEASES`. Every rule below asks that table whether
the target's version has a feature, so a version threshold is written once,
there, and shared with runtime/trt/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

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
    def ignores_scatternd_reduction(self) -> bool:
        """8.x and 9.x never read a scatter's ``reduction``: the node imports and computes a plain scatter."""
        return self._lacks("scatter_reduction_read")

    @property
    def has_cumulative_layer(self) -> bool:
        """False where the parser builds CumSum as a loop of one step per element (TensorRT before 10.8)."""
        return self.tensorrt is not None and not self._lacks("cumulative_layer")

    def has(self, feature: str) -> bool:
        """Whether this TensorRT target has ``feature`` (a key of trt_eras.FEATURES); ONNX Runtime has them all."""
        return not self._lacks(feature)

    @classmethod
    def for_version(cls, version: Sequence[int]) -> "Target":
        """The rules of an installed TensorRT ``version`` (e.g. ``(10, 3, 0)``), which may not be a named target.

        Used where the real version is known (a build on the device); the opset
        limit is that of the newest named release at or below the version.
        """
        mm = (int(version[0]), int(version[1]))
        if not trt_eras.is_supported(mm):
            raise ConfigError(f"TensorRT {'.'.join(map(str, version))} is outside the supported "
                              f"{trt_eras.label(trt_eras.SUPPORTED_SINCE)} to "
                              f"{trt_eras.label(trt_eras.SUPPORTED_UNTIL)} (exclusive)")
        release = [r for r in trt_eras.RELEASES if r.version <= mm][-1]
        named = next((r.target for r in trt_eras.RELEASES if r.version == mm), None)
        return cls(named or f"tensorrt-{mm[0]}.{mm[1]}", mm, release.max_opset)

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
