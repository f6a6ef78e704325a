"""What each deployment target's ONNX importer accepts (see shared/design/tensorrt.md)."""

from __future__ import annotations

from dataclasses import dataclass

from aknet_edge.errors import ConfigError

TOPK_MAX_K = 3840  # TensorRT's TopK limit in every version


@dataclass(frozen=True)
class Target:
    """One engine family's import rules."""

    name: str
    tensorrt: tuple[int, int] | None  # None: ONNX Runtime
    max_opset: int
    functions: str  # "run" (ORT inlines them), "ignored" (8.x), "body" (9.0-10.6), "plugin-first" (10.7+)

    @property
    def is_tensorrt(self) -> bool:
        return self.tensorrt is not None

    @property
    def topk_max_k(self) -> int | None:
        return TOPK_MAX_K if self.is_tensorrt else None

    @property
    def needs_constant_k(self) -> bool:
        return self.tensorrt is not None and self.tensorrt < (8, 6)

    @property
    def casts_int64(self) -> bool:
        return self.tensorrt is not None and self.tensorrt < (10, 0)

    @property
    def requires_sorted_topk(self) -> bool:
        return self.tensorrt is not None and self.tensorrt >= (10, 0)

    @property
    def ignores_scatternd_reduction(self) -> bool:
        return self.tensorrt is not None and self.tensorrt < (10, 0)

    @property
    def label(self) -> str:
        return self.name if not self.is_tensorrt else f"TensorRT {self.tensorrt[0]}.{self.tensorrt[1]}"


TARGETS: dict[str, Target] = {
    "onnxruntime": Target("onnxruntime", None, 21, "run"),
    "tensorrt-8.5": Target("tensorrt-8.5", (8, 5), 17, "ignored"),
    "tensorrt-8.6": Target("tensorrt-8.6", (8, 6), 17, "ignored"),
    "tensorrt-10.3": Target("tensorrt-10.3", (10, 3), 20, "body"),
    # newest 10.x (10.7+ consult a plugin before a function body); opset kept conservative at 20
    "tensorrt-10": Target("tensorrt-10", (10, 16), 20, "plugin-first"),
    "tensorrt-11": Target("tensorrt-11", (11, 0), 20, "plugin-first"),
}
TENSORRT_TARGETS = tuple(n for n, t in TARGETS.items() if t.is_tensorrt)


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}")
    return TARGETS[name]
