"""AK-Net (Action Keypoint Network) and the TSM-ResNet baseline.

Paper: "Action Keypoint Network for Efficient Video Recognition", IEEE TIP 2022
(arXiv 2201.06304). Our reading of it is in shared/design/aknet.md: a frame
encoder up to stage ``cut``, attention scores over every spatio-temporal
point, top-K keypoints ranked into a sequence, and the later ResNet stages
compacted to 1D convolutions over that sequence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops  # noqa: F401  (registers the aknet:: custom ops)
from .backbone import FrameEncoder, State, make_stage, stage_channels
from .config import ModelConfig
from .errors import ConfigError, InputShapeError

REDUCED_PRECISIONS = ("fp16", "int8")
STEM_CONV = "encoder.conv1"  # timm's ``first_conv``: the layer that sees the raw image
KEYPOINT_PATH = ("scorer", "coord_proj")  # AK-Net's keypoint scoring and coordinate embedding


def compact_kernel(w2d: Tensor, mode: str = "sum") -> Tensor:
    """Turn a 2D conv weight (O, I, kh, kw) into a 1D one (O, I, kh).

    ``sum`` adds the kernel's width axis (a 1D conv over a constant row then
    matches the 2D conv), ``center`` keeps the middle column, ``mean`` averages.
    """
    if w2d.dim() != 4:
        raise ConfigError(f"compact_kernel expects a 4D conv weight (O, I, kh, kw), got shape {tuple(w2d.shape)}")
    if mode == "sum":
        return w2d.sum(dim=-1)
    if mode == "center":
        return w2d[..., w2d.shape[-1] // 2].clone()
    if mode == "mean":
        return w2d.mean(dim=-1)
    raise ConfigError(f"compact mode {mode!r} is not supported; expected sum, center or mean")


def check_clip(x: Tensor, cfg: ModelConfig, frames: int | None = None) -> None:
    """Reject a wrongly shaped or typed clip with a message that says what to pass."""
    t = cfg.clip.frames if frames is None else frames
    want = f"(B, {t}, 3, {cfg.clip.size}, {cfg.clip.size})"
    if not isinstance(x, Tensor):
        raise InputShapeError(f"expected a torch.Tensor clip of shape {want}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputShapeError(
            f"expected a float clip normalised with the config's mean/std, got dtype {x.dtype}; "
            "use aknet_edge.preprocess.preprocess_clip on uint8 frames"
        )
    if x.dim() != 5 or tuple(x.shape[1:]) != (t, 3, cfg.clip.size, cfg.clip.size):
        raise InputShapeError(f"expected a clip of shape {want}, got {tuple(x.shape)}")


class KeypointScorer(nn.Module):
    """Self-attention score of every point, summing to 1 over the N points.

    ``global``: G learned queries offset from the clip's mean feature attend
    over all points, O(G*N*d). ``pairwise``: the mean attention each point
    receives from every other point, in chunks, O(N^2*d), for comparison.
    """

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        d = cfg.attn_dim
        self.kind = cfg.scorer
        self.key = nn.Linear(channels, d)
        self.pos = nn.Linear(3, d)
        self.query = nn.Linear(channels, d)
        self.embed = nn.Parameter(torch.randn(cfg.queries, d) * 0.02)
        self.scale = 1.0 / math.sqrt(d)
        # means over the points and over the queries as (1, R) @ x products: ONNX Runtime's ReduceMean over a
        # middle axis costs ~4x a GEMV of the same size (bench/export_latency.py), and the head is latency-bound
        self.register_buffer("point_mean", torch.full((1, cfg.num_points), 1.0 / cfg.num_points), persistent=False)
        self.register_buffer("query_mean", torch.full((1, cfg.queries), 1.0 / cfg.queries), persistent=False)

    def forward(self, f: Tensor, coords: Tensor) -> Tensor:
        """``f`` (B, N, C) features, ``coords`` (N, 3) the grid's constant coordinates -> scores (B, N)."""
        pos = self.pos(coords)  # (N, d): input-independent, a constant in the exported graph
        if self.kind == "global":
            # q k^T = (q Wk) f^T + q (bk + pos)^T: G x C x N instead of projecting every point to d
            # (the same product reassociated; it keeps the head's cost near its FLOPs on small models)
            q = self.query(self.point_mean @ f) + self.embed  # (B, G, d) from the mean feature (B, 1, C)
            logits = (q @ self.key.weight) @ f.transpose(1, 2) + q @ (self.key.bias + pos).t()
            return (self.query_mean @ torch.softmax(logits * self.scale, dim=-1)).squeeze(1)
        k = self.key(f) + pos
        q = self.query(f) + pos
        received = torch.zeros(f.shape[:2], dtype=f.dtype, device=f.device)
        for q_chunk in q.split(512, dim=1):
            attn = torch.softmax(q_chunk @ k.transpose(1, 2) * self.scale, dim=-1)
            received = received + attn.sum(dim=1)
        return received / f.shape[1]


class AKNet(nn.Module):
    """Clip (B, T, 3, H, W) -> (logits, keypoints (B, K, 3) as normalised (t, y, x), scores (B, K))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "aknet":
            raise ConfigError(f"AKNet needs arch='aknet', got {cfg.arch!r}")
        self.cfg = cfg
        self.encoder = FrameEncoder(cfg)
        c = self.encoder.out_channels
        self.register_buffer("grid_coords", _grid_coords(cfg.grid), persistent=False)
        self.scorer = KeypointScorer(cfg, c)
        self.coord_proj = nn.Linear(3, c)
        for i in range(cfg.cut + 1, 5):
            self.add_module(f"layer{i}", make_stage(cfg, i, 1, cfg.stride_1d, shifted=False))
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(stage_channels(cfg)[4], cfg.num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        check_clip(x, self.cfg)
        feats, _ = self.encoder(x)
        return self.head(feats)

    def head(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Frame features (B*T, C, h, w) -> outputs; the clip head of the streaming split."""
        t, h, w = self.cfg.grid
        c = feats.shape[1]
        f = feats.reshape(-1, t, c, h * w).permute(0, 1, 3, 2).reshape(-1, t * h * w, c)  # flat = t*h*w + y*w + x
        scores = self.scorer(f, self.grid_coords)
        kept, idx, kept_scores = torch.ops.aknet.keypoint_select(f, scores, self.cfg.num_keypoints, self.cfg.gate_max)
        kept, idx, kept_scores = torch.ops.aknet.keypoint_rank(kept, idx, kept_scores, self.cfg.criterion, [t, h, w])
        coords = self.grid_coords[idx]  # (B, K, 3)
        z = (kept + self.coord_proj(coords)).transpose(1, 2).unsqueeze(2)  # (B, C, 1, K): see backbone.PointConv
        return self.classify(z), coords, kept_scores

    def classify(self, z: Tensor) -> Tensor:
        """The point-cloud classifier alone: ranked keypoint features (B, C, 1, K) -> logits."""
        for i in range(self.cfg.cut + 1, 5):
            z, _ = getattr(self, f"layer{i}")(z)
        return self.fc(self.dropout(z.mean(dim=(2, 3))))

    @staticmethod
    def float_modules_for(cfg: ModelConfig, precision: str) -> tuple[str, ...]:
        """Module paths (as in ``named_modules()``) that a ``precision`` graph keeps in FP32.

        Both FP16 and INT8 keep the keypoint path (``scorer``, ``coord_proj``):
        top-K over a peaked, near-tied score distribution flips on small
        errors. INT8 also keeps the stem convolution (it quantizes the raw
        image; its BatchNorm is folded into it, and ReLU and max-pool are not
        quantized) and ``encoder.layer{cut}``, the stage whose output the scorer
        reads. Measured on the demo (percentile calibration, README's INT8
        table from ``bench/int8_report.py``), the kept keypoints' IoU with FP32
        is 0.815 with the encoder fully quantized, 0.859 with only the stage
        kept and 0.910 with both.
        ``aknet_edge.export.module_nodes.nodes_of_modules`` maps these paths to
        graph nodes and fails when one names nothing, so renaming an attribute
        here cannot silently quantize the whole graph.
        """
        if precision == "fp16":
            return KEYPOINT_PATH
        return (STEM_CONV, f"encoder.layer{cfg.cut}", *KEYPOINT_PATH)

    def float_modules(self, precision: str = "int8") -> tuple[str, ...]:
        """This model's reduced-precision contract; see :meth:`float_modules_for`."""
        return float_modules(self.cfg, precision)

    def encode_frame(self, frame: Tensor, states: State | None = None,
                     parents: Tensor | None = None) -> tuple[Tensor, State]:
        """Frames (F, 3, H, W) -> features (R, C, h, w) and the next online shift state.

        Each shift layer's state may have more rows than its input: new rows
        join as copies of row 0 (``backbone.fork_rows``), so one frame can be
        encoded under several chains of state (R = the last layer's state rows)
        with the stem, and every layer before a chain's state first differs,
        computed once. With F rows in every state it is plain batched encoding.
        ``parents`` (int, one entry per output row) makes new row r a copy of row
        ``parents[r]`` instead of row 0: F cameras in one call, each forking its own chains.
        """
        if self.cfg.shift == "offline":
            raise ConfigError("shift='offline' needs the future frame; frame-by-frame encoding needs 'none' or 'online'")
        if states is None:
            states = self.encoder.init_state(frame.shape[0], frame.dtype)
        return self.encoder.layers(self.encoder.stem(frame), 1, states if states else None, parents)


class TSMBaseline(nn.Module):
    """TSM-ResNet on the same code: the same frame encoder, later stages in 2D, average over T."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "tsm":
            raise ConfigError(f"TSMBaseline needs arch='tsm', got {cfg.arch!r}")
        self.cfg = cfg
        self.encoder = FrameEncoder(cfg)
        for i in range(cfg.cut + 1, 5):
            self.add_module(f"layer{i}", make_stage(cfg, i, 2, 2, shifted=True))
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(stage_channels(cfg)[4], cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_clip(x, self.cfg)
        y, _ = self.encoder(x)
        return self.head(y)

    def head(self, y: Tensor) -> Tensor:
        """The stages after the cut alone: frame features (B*T, C, h, w) -> logits (B, classes)."""
        t = self.cfg.clip.frames
        for i in range(self.cfg.cut + 1, 5):
            y, _ = getattr(self, f"layer{i}")(y, t)
        logits = self.fc(self.dropout(F.adaptive_avg_pool2d(y, 1).flatten(1)))
        return logits.view(-1, t, self.cfg.num_classes).mean(dim=1)  # static class dim in the export

    @staticmethod
    def float_modules_for(cfg: ModelConfig, precision: str) -> tuple[str, ...]:
        """Nothing: the baseline quantizes fully.

        AK-Net's float modules protect its keypoint selection (the measured
        gain is keypoint overlap with FP32); the baseline selects nothing, and
        no measurement asks to keep any of its stages in float.
        """
        return ()

    def float_modules(self, precision: str = "int8") -> tuple[str, ...]:
        """This model's reduced-precision contract; see :meth:`float_modules_for`."""
        return float_modules(self.cfg, precision)


def _grid_coords(grid: tuple[int, int, int]) -> Tensor:
    from .keys import grid_coords, normalised_coords

    flat = grid_coords(grid)
    t, h, w = grid
    return torch.from_numpy(normalised_coords(flat[:, 0] * h * w + flat[:, 1] * w + flat[:, 2], grid))


ARCHITECTURES: dict[str, type[nn.Module]] = {"aknet": AKNet, "tsm": TSMBaseline}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The registry: config in, untrained model out."""
    return ARCHITECTURES[cfg.arch](cfg)


def float_modules(cfg: ModelConfig, precision: str = "int8") -> tuple[str, ...]:
    """Module paths a ``precision`` (``fp16`` or ``int8``) graph of ``cfg``'s model keeps in FP32.

    A function of the config, so code holding only a config (a graph's
    builder, a benchmark) reads the same declaration the model class makes.
    """
    if precision not in REDUCED_PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {', '.join(REDUCED_PRECISIONS)}")
    return ARCHITECTURES[cfg.arch].float_modules_for(cfg, precision)


def logits_of(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    """Logits from either model's forward output."""
    return output[0] if isinstance(output, tuple) else output
