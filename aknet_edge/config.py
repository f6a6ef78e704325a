"""Model configuration: frozen dataclasses that carry the clip contract.

The config travels with the weights (checkpoint metadata) and later with the
model package, so that training, export and the runtime read frame count,
clip span, input size, mean/std and labels from one place.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

BACKBONES: dict[str, dict[str, Any]] = {
    # block type, blocks per stage, stage widths (before expansion), stem width
    "resnet18": {"block": "basic", "layers": (2, 2, 2, 2), "widths": (64, 128, 256, 512), "stem": 64},
    "resnet34": {"block": "basic", "layers": (3, 4, 6, 3), "widths": (64, 128, 256, 512), "stem": 64},
    "resnet50": {"block": "bottleneck", "layers": (3, 4, 6, 3), "widths": (64, 128, 256, 512), "stem": 64},
    "tiny": {"block": "basic", "layers": (1, 1, 1, 1), "widths": (16, 32, 64, 128), "stem": 16},
}
ARCHS = ("aknet", "tsm")
SHIFT_MODES = ("none", "offline", "online")
CRITERIA = ("score", "raster", "hilbert")
SCORERS = ("global", "pairwise")
COMPACT_MODES = ("sum", "center", "mean")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The synthetic generator's action classes (aknet_edge.synthetic draws them; the demo-tiny preset is trained on
# them). Defined here, in the ground, so a config needs neither the generator nor OpenCV.
SYNTHETIC_CLASSES: tuple[str, ...] = (
    "no_action",
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "approach",
    "recede",
    "appear",
    "disappear",
)
DEMO_WEIGHTS = WEIGHTS_DIR / "demo-tiny.safetensors"  # the bundled demo AK-Net (its TSM twin: demo-tiny-tsm)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ClipSpec:
    """What one model input is: T frames sampled by time over ``span_s`` seconds."""

    frames: int = 8
    size: int = 112
    span_s: float = 2.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: str = "RGB"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"clip.frames={self.frames}: expected at least 1 frame")
        if self.size < 32 or self.size % 16:
            raise ConfigError(f"clip.size={self.size}: expected a multiple of 16, at least 32 (e.g. 112 or 224)")
        if self.span_s <= 0:
            raise ConfigError(f"clip.span_s={self.span_s}: expected a positive clip duration in seconds")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("clip.mean/clip.std: expected three values each, std positive")
        _choice("clip.color", self.color, ("RGB", "BGR"))


@dataclass(frozen=True)
class ModelConfig:
    """One AK-Net or TSM baseline; every open design choice is a field."""

    arch: str = "aknet"
    backbone: str = "tiny"
    num_classes: int = 11
    labels: tuple[str, ...] = ()
    clip: ClipSpec = field(default_factory=ClipSpec)
    cut: int = 2
    shift: str = "online"
    shift_div: int = 8
    keep_ratio: float = 0.25
    keypoints: int | None = None  # explicit K; overrides keep_ratio
    criterion: str = "hilbert"
    scorer: str = "global"
    attn_dim: int = 64
    queries: int = 4
    gate_max: float = 4.0
    stride_1d: int = 2
    compact: str = "sum"
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.clip, dict):
            object.__setattr__(self, "clip", ClipSpec(**_tuples(self.clip)))
        object.__setattr__(self, "labels", tuple(self.labels))
        _choice("arch", self.arch, ARCHS)
        _choice("backbone", self.backbone, tuple(BACKBONES))
        _choice("shift", self.shift, SHIFT_MODES)
        _choice("criterion", self.criterion, CRITERIA)
        _choice("scorer", self.scorer, SCORERS)
        _choice("compact", self.compact, COMPACT_MODES)
        if self.num_classes < 1:
            raise ConfigError(f"num_classes={self.num_classes}: expected at least 1")
        if self.labels and len(self.labels) != self.num_classes:
            raise ConfigError(
                f"labels has {len(self.labels)} names but num_classes={self.num_classes}; give one label per class"
            )
        if not 1 <= self.cut <= 3:
            raise ConfigError(f"cut={self.cut}: expected 1, 2 or 3 (the stage after which keypoints are taken)")
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ConfigError(f"keep_ratio={self.keep_ratio}: expected a fraction in (0, 1]")
        if self.shift_div < 2:
            raise ConfigError(f"shift_div={self.shift_div}: expected at least 2 (1/shift_div of channels shifts)")
        if self.stride_1d < 1 or self.attn_dim < 1 or self.queries < 1:
            raise ConfigError("stride_1d, attn_dim and queries must be positive integers")
        if self.gate_max <= 0:
            raise ConfigError(f"gate_max={self.gate_max}: expected a positive clip value for the keypoint gate")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout}: expected a probability in [0, 1)")
        n = self.num_points
        if self.keypoints is not None and not 1 <= self.keypoints <= n:
            raise ConfigError(
                f"keypoints={self.keypoints}: K must lie in [1, N] where N = T*h*w = {n} points at cut={self.cut}"
            )

    # -- derived shapes -------------------------------------------------
    @property
    def feature_stride(self) -> int:
        """Spatial stride of the frame encoder's output (stem 4, then x2 per stage after the first)."""
        return 4 * 2 ** (self.cut - 1)

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T, h, w) of the point grid the keypoints are chosen from."""
        s = self.clip.size // self.feature_stride
        return (self.clip.frames, s, s)

    @property
    def num_points(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def num_keypoints(self) -> int:
        if self.keypoints is not None:
            return self.keypoints
        return max(1, min(self.num_points, round(self.keep_ratio * self.num_points)))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.labels or tuple(f"class_{i}" for i in range(self.num_classes))

    # -- serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields are {sorted(known)}")
        return cls(**_tuples(data))

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("config JSON must be an object of field names to values")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _presets() -> dict[str, ModelConfig]:
    paper_clip = ClipSpec(frames=8, size=224, span_s=2.0)
    return {
        "r50-paper": ModelConfig(backbone="resnet50", num_classes=400, clip=paper_clip, shift="offline", dropout=0.5),
        "r18": ModelConfig(backbone="resnet18", num_classes=400, clip=paper_clip, shift="offline", dropout=0.5),
        "demo-tiny": ModelConfig(backbone="tiny", num_classes=len(SYNTHETIC_CLASSES), labels=SYNTHETIC_CLASSES,
                                 clip=ClipSpec()),
    }


PRESET_NAMES = ("r50-paper", "r18", "demo-tiny")


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, optionally with fields replaced (e.g. ``arch="tsm"``)."""
    presets = _presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    return presets[name].replace(**overrides) if overrides else presets[name]


def load_config(path: str) -> ModelConfig:
    """Read a config JSON file with a clear error when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return ModelConfig.from_json(text)
