"""TSM-ResNet building blocks, written here (no torchvision on CPU).

Module names follow torchvision's ResNet (conv1, bn1, layerN.M.convK,
downsample.0/1) so public TSM checkpoints map by renaming alone. The same
blocks come in 2D (frames) and 1D (keypoint sequences) flavours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import BACKBONES, ModelConfig

State = list[Tensor]


class TemporalShift(nn.Module):
    """Shift a fraction of channels along time on a (B*T, C, H, W) tensor.

    ``offline``: 1/div of channels come from t+1 and 1/div from t-1 (TSM).
    ``online``: 1/div come from t-1 only; the previous frame's slice is the
    explicit state, so a clip can be processed in pieces, frame by frame.
    Written with ``cat`` (no in-place slice writes) so it exports cleanly.
    """

    def __init__(self, mode: str, div: int) -> None:
        super().__init__()
        self.mode, self.div = mode, div

    def fold(self, channels: int) -> int:
        return channels // self.div

    def forward(self, x: Tensor, frames: int, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.mode == "none":
            return x, None
        bt, c, h, w = x.shape
        v = x.view(bt // frames, frames, c, h, w)
        f = self.fold(c)
        if self.mode == "offline":
            pad = v.new_zeros(v.shape[0], 1, f, h, w)
            future = torch.cat([v[:, 1:, :f], pad], dim=1)
            past = torch.cat([pad, v[:, :-1, f : 2 * f]], dim=1)
            return torch.cat([future, past, v[:, :, 2 * f :]], dim=2).view(bt, c, h, w), None
        if state is None:
            state = v.new_zeros(v.shape[0], 1, f, h, w)
        past = torch.cat([state, v[:, :-1, :f]], dim=1)
        out = torch.cat([past, v[:, :, f:]], dim=2).view(bt, c, h, w)
        return out, v[:, -1:, :f]


class PointConv(nn.Conv1d):
    """A 1D convolution over the keypoint sequence that also takes it as a (B, C, 1, K) map.

    Same parameters as ``nn.Conv1d`` (checkpoints and ``compact_kernel`` see an
    ordinary (O, I, k) weight), but on 4D input it runs as a (1, k) 2D
    convolution: the same arithmetic, which ONNX Runtime's CPU kernels run
    1.2-1.6x faster than its 1D path (``bench/export_latency.py``) and which
    TensorRT's importer would make of a 1D convolution anyway.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return super().forward(x)
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), (0, self.padding[0]),
                        (1, self.dilation[0]), self.groups)


class PointBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also takes the (B, C, 1, K) form of the keypoint sequence."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or (B, C, 1, K) input, got {x.dim()}D")


def fuse_point_bn(module: nn.Module) -> nn.Module:
    """An eval copy with each PointConv + PointBatchNorm pair folded into one convolution.

    The ONNX exporter folds BatchNorm into a Conv whose weight is a parameter;
    a PointConv's weight reaches Conv through an Unsqueeze, so we fold these
    pairs ourselves before export (one Conv node per 1D conv, as in 2D).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    module = copy.deepcopy(module).eval()
    for m in module.modules():
        for i in (1, 2, 3):
            conv, bn = getattr(m, f"conv{i}", None), getattr(m, f"bn{i}", None)
            if isinstance(conv, PointConv) and isinstance(bn, PointBatchNorm):
                setattr(m, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(m, f"bn{i}", nn.Identity())
        if isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], PointConv) \
                and isinstance(m[1], PointBatchNorm):
            m[0], m[1] = fuse_conv_bn_eval(m[0], m[1]), nn.Identity()
    return module


def _conv(dim: int, cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
    cls = nn.Conv2d if dim == 2 else PointConv
    return cls(cin, cout, k, stride=stride, padding=k // 2, bias=False)


def _bn(dim: int, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if dim == 2 else PointBatchNorm(c)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, dim: int, cin: int, width: int, stride: int, shift: TemporalShift | None) -> None:
        super().__init__()
        cout = width * self.expansion
        self.shift = shift
        self.conv1 = _conv(dim, cin, width, 3, stride)
        self.bn1 = _bn(dim, width)
        self.conv2 = _conv(dim, width, cout, 3)
        self.bn2 = _bn(dim, cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(dim, cin, cout, stride)

    def residual(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor, frames: int = 1, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        y, new_state = (x, None) if self.shift is None else self.shift(x, frames, state)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(y) + identity), new_state


class Bottleneck(BasicBlock):
    """ResNet v1.5 bottleneck (stride on the 3x3), as torchvision and TSM use."""

    expansion = 4

    def __init__(self, dim: int, cin: int, width: int, stride: int, shift: TemporalShift | None) -> None:
        nn.Module.__init__(self)
        cout = width * self.expansion
        self.shift = shift
        self.conv1 = _conv(dim, cin, width, 1)
        self.bn1 = _bn(dim, width)
        self.conv2 = _conv(dim, width, width, 3, stride)
        self.bn2 = _bn(dim, width)
        self.conv3 = _conv(dim, width, cout, 1)
        self.bn3 = _bn(dim, cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(dim, cin, cout, stride)

    def residual(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))


def _downsample(dim: int, cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(dim, cin, cout, 1, stride), _bn(dim, cout))


def fork_rows(x: Tensor, rows: int | Tensor, parents: Tensor | None = None) -> Tensor:
    """``x`` grown to ``rows`` rows, each new row a copy of row 0 (or of row ``parents[r]``).

    Frame-by-frame encoding with one state row per chain: a chain that starts
    from zero state equals the carried chain (row 0) up to the shift layer its
    own state first differs at, so it joins there as a copy of row 0 instead of
    being computed from the stem (``runtime.window.IncrementalEncoder``). With
    as many state rows as input rows this is the identity.

    ``parents`` (int, at least ``rows`` long) names the row each new row ``r`` copies: several
    cameras in one call, each with its carried chain in its own row and its fresh chains forked
    from that row (``runtime.window.encode_batch``). Without it, row 0 (one camera).
    """
    if parents is None:
        return torch.cat([x, x[:1].expand(rows - x.shape[0], *x.shape[1:])])
    return torch.cat([x, x.index_select(0, parents[x.shape[0]:rows])])


class Stage(nn.ModuleList):
    """A ResNet stage; threads the online shift state through its blocks."""

    def forward(self, x: Tensor, frames: int = 1, states: State | None = None,
                parents: Tensor | None = None) -> tuple[Tensor, State]:
        out_states: State = []
        for i, block in enumerate(self):
            state = None if states is None else states[i]
            if state is not None and frames == 1:
                x = fork_rows(x, state.shape[0], parents)
            x, s = block(x, frames, state)
            if s is not None:
                out_states.append(s)
        return x, out_states


def block_class(cfg: ModelConfig) -> type[BasicBlock]:
    return Bottleneck if BACKBONES[cfg.backbone]["block"] == "bottleneck" else BasicBlock


def stage_channels(cfg: ModelConfig) -> list[int]:
    """Output channels after the stem (index 0) and after each stage 1..4."""
    spec = BACKBONES[cfg.backbone]
    exp = block_class(cfg).expansion
    return [spec["stem"]] + [w * exp for w in spec["widths"]]


def make_stage(cfg: ModelConfig, index: int, dim: int, stride: int, shifted: bool) -> Stage:
    """Stage ``index`` (1..4) in 2D or 1D; TSM shift only in shifted 2D stages."""
    spec = BACKBONES[cfg.backbone]
    cls = block_class(cfg)
    cin = stage_channels(cfg)[index - 1]
    width = spec["widths"][index - 1]
    blocks = []
    for b in range(spec["layers"][index - 1]):
        shift = TemporalShift(cfg.shift, cfg.shift_div) if shifted and cfg.shift != "none" else None
        blocks.append(cls(dim, cin, width, stride if b == 0 else 1, shift))
        cin = width * cls.expansion
    return Stage(blocks)


class FrameEncoder(nn.Module):
    """Stem + stages 1..cut with temporal shift: (B, T, 3, H, W) -> (B*T, C, h, w)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        stem = stage_channels(cfg)[0]
        self.frames, self.size = cfg.clip.frames, cfg.clip.size
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i in range(1, cfg.cut + 1):
            self.add_module(f"layer{i}", make_stage(cfg, i, 2, 1 if i == 1 else 2, shifted=True))
        self.cut = cfg.cut
        self.out_channels = stage_channels(cfg)[cfg.cut]

    def stages(self) -> list[Stage]:
        return [getattr(self, f"layer{i}") for i in range(1, self.cut + 1)]

    def forward(self, x: Tensor, states: State | None = None) -> tuple[Tensor, State]:
        """``states``: the online shift state of every shifted block (None = zeros)."""
        b, t = x.shape[:2]
        return self.layers(self.stem(x.reshape(b * t, *x.shape[2:])), t, states)

    def stem(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) frames -> stem features; no temporal shift before stage 1."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def layers(self, y: Tensor, t: int, states: State | None = None,
               parents: Tensor | None = None) -> tuple[Tensor, State]:
        """Stages 1..cut on stem features of clips of ``t`` frames, threading the online shift state
        (``parents``: which row each forked row copies, see :func:`fork_rows`)."""
        out_states: State = []
        pos = 0
        for stage in self.stages():
            n = len(stage)
            y, s = stage(y, t, None if states is None else states[pos : pos + n], parents)
            out_states += s
            pos += n
        return y, out_states

    def init_state(self, batch: int, dtype: torch.dtype = torch.float32) -> State:
        """Zero online shift state (one per shifted block); empty unless shift is online."""
        states: State = []
        side = self.size // 4
        for i, stage in enumerate(self.stages(), start=1):
            for j, block in enumerate(stage):
                s = side // 2 if (i > 1 and j > 0) else side  # blocks after a stride see the halved map
                if block.shift is not None and block.shift.mode == "online":
                    f = block.shift.fold(block.conv1.in_channels)
                    states.append(torch.zeros(batch, 1, f, s, s, dtype=dtype))
            if i > 1:
                side //= 2
        return states
