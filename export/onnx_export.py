"""PyTorch AK-Net -> ONNX with ``aknet`` custom-domain nodes and model-local function bodies.

We use the TorchScript exporter (``dynamo=False``) at opset 17 (TensorRT 8.x's
limit): its symbolic registry maps each custom op to exactly one named node
with our attributes, which is what a TensorRT plugin or Netron expects. The
dynamo exporter would need onnxscript translations that it inlines, losing
the custom nodes. A test pins this choice.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from aknet_edge import graph_io as gio
from aknet_edge import ops as _ops  # noqa: F401  registers aknet:: ops
from aknet_edge.config import ModelConfig
from aknet_edge.errors import ConfigError
from aknet_edge.io_utils import atomic_write_bytes

from .functions import DOMAIN, RANK, SELECT, rank_function, select_function

log = logging.getLogger(__name__)
OPSET = 17
CLIP_INPUT = gio.CLIP_INPUT
OUTPUTS = gio.CLIP_OUTPUTS
_registered = False


def _register_symbolics() -> None:
    global _registered
    if _registered:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "i", "f")
    def select_symbolic(g, features, scores, k, gate_max):
        kept, idx, vals = g.op(f"{DOMAIN}::{SELECT}", features, scores, k_i=k, gate_max_f=gate_max,
                               plugin_version_s="1", plugin_namespace_s="", outputs=3)
        sizes = features.type().varyingSizes()
        kept.setType(features.type().with_sizes([sizes[0], k, sizes[2]]))
        idx.setType(scores.type().with_dtype(torch.int64).with_sizes([sizes[0], k]))
        vals.setType(scores.type().with_sizes([sizes[0], k]))
        return kept, idx, vals

    @parse_args("v", "v", "v", "s", "is")
    def rank_symbolic(g, features, indices, scores, criterion, grid):
        outs = g.op(f"{DOMAIN}::{RANK}", features, indices, scores, criterion_s=criterion, grid_i=grid,
                    plugin_version_s="1", plugin_namespace_s="", outputs=3)
        for out, src in zip(outs, (features, indices, scores)):
            out.setType(src.type())
        return outs

    register_custom_op_symbolic("aknet::keypoint_select", select_symbolic, OPSET)
    register_custom_op_symbolic("aknet::keypoint_rank", rank_symbolic, OPSET)
    _registered = True


def _check_exportable(cfg: ModelConfig) -> None:
    if cfg.arch == "aknet" and not 1 <= cfg.num_keypoints <= cfg.num_points:
        raise ConfigError(f"K={cfg.num_keypoints} must lie in [1, N={cfg.num_points}] to export")


def _to_onnx(module: nn.Module, args: tuple, input_names: Sequence[str], output_names: Sequence[str],
             dynamic_axes: dict) -> onnx.ModelProto:
    _register_symbolics()
    from aknet_edge.backbone import fuse_point_bn

    module = fuse_point_bn(module)  # a copy: the caller's model is left as it is
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer notices
        torch.onnx.export(
            module, args, buf, dynamo=False, opset_version=OPSET, input_names=list(input_names),
            output_names=list(output_names), dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def attach_functions(model: onnx.ModelProto, cfg: ModelConfig) -> onnx.ModelProto:
    """Give every aknet node its function body, import the domain, and infer shapes through them."""
    uses = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    del model.functions[:]
    if SELECT in uses:
        model.functions.append(select_function(OPSET))
    if RANK in uses:
        model.functions.append(rank_function(cfg.criterion, cfg.grid, OPSET))
    if uses and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    model.producer_name = "aknet_edge"
    return finalize(model)


def finalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference and the full checker on every graph we write."""
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _dyn(names: Sequence[str]) -> dict:
    return {n: {0: gio.BATCH_AXIS} for n in names}


def to_onnx(model: nn.Module) -> onnx.ModelProto:
    """The whole-clip graph: ``clip`` (B, T, 3, H, W) -> logits (+ keypoints, keypoint_scores for AK-Net)."""
    cfg: ModelConfig = model.cfg
    _check_exportable(cfg)
    model = model.eval()
    x = torch.zeros(1, cfg.clip.frames, 3, cfg.clip.size, cfg.clip.size)
    outs = OUTPUTS if cfg.arch == "aknet" else OUTPUTS[:1]
    proto = _to_onnx(model, (x,), [CLIP_INPUT], outs, _dyn([CLIP_INPUT, *outs]))
    return attach_functions(proto, cfg)


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Export the whole-clip graph to ``path`` (written atomically)."""
    return save(to_onnx(model), path)


def save(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(path, model.SerializeToString())


# -- streaming split ------------------------------------------------------------

class _FrameEncoder(nn.Module):
    def __init__(self, model: nn.Module, parent_rows: bool = False) -> None:
        super().__init__()
        self.model = model
        self.parent_rows = parent_rows  # the last input is the parent-row index (several cameras per call)

    def forward(self, frame: torch.Tensor, *inputs: torch.Tensor):
        states, parents = (inputs[:-1], inputs[-1]) if self.parent_rows else (inputs, None)
        feats, new_states = self.model.encode_frame(frame, list(states) if states else None, parents)
        return (feats, *new_states)


class _ClipHead(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor):
        return self.model.head(features.flatten(0, 1))


def split_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """State input and output names of the frame encoder (empty unless shift is online)."""
    n = len(model.encoder.init_state(1))
    names = [gio.state_input(i) for i in range(n)]
    return names, [gio.state_output(name) for name in names]


def to_split_onnx(model: nn.Module, parent_rows: bool = False) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """``frame_encoder`` (one frame + shift state) and ``clip_head`` (T cached feature maps -> outputs).

    ``parent_rows``: the encoder also takes ``parent_rows`` (int32, one entry per output row): a
    row that a state adds copies row ``parent_rows[r]`` instead of row 0, so the exact incremental
    mode of several cameras runs in one call, each camera's fresh chains forked from its own carried
    row (``runtime.window.encode_batch``). Off by default: the graph is then the one earlier
    versions wrote. Only where the encoder carries shift state.
    """
    cfg: ModelConfig = model.cfg
    if cfg.arch != "aknet":
        raise ConfigError("the streaming split is defined for AK-Net (arch='aknet')")
    if cfg.shift == "offline":
        raise ConfigError(
            "shift='offline' mixes in the next frame, so a frame cannot be encoded until its successor arrives; "
            "the streaming split needs shift 'none' or 'online' (train or fine-tune with --set shift=online)"
        )
    _check_exportable(cfg)
    model = model.eval()
    state_in, state_out = split_names(model)
    frame = torch.zeros(1, 3, cfg.clip.size, cfg.clip.size)
    states = tuple(model.encoder.init_state(1))
    # the frame and each state have their own row axis: a state with more rows than its layer's input
    # forks new rows from row 0 (backbone.fork_rows; the runtime's exact incremental mode relies on it)
    dyn = {gio.FRAME_INPUT: {0: gio.FRAMES_AXIS if state_in else gio.BATCH_AXIS}, gio.FEATURES: {0: gio.ROWS_AXIS},
           **{n: {0: gio.rows_axis(i)} for i, n in enumerate(state_in)},
           **{n: {0: gio.rows_axis(i)} for i, n in enumerate(state_out)}}
    parent_rows = parent_rows and bool(state_in)
    inputs: tuple = (frame, *states)
    names = [gio.FRAME_INPUT, *state_in]
    if parent_rows:
        inputs += (torch.zeros(1, dtype=torch.int32),)
        names.append(gio.PARENT_ROWS)
        dyn[gio.PARENT_ROWS] = {0: gio.PARENT_ROWS}
    enc = _to_onnx(_FrameEncoder(model, parent_rows), inputs, names, [gio.FEATURES, *state_out], dyn)
    enc = finalize(enc)
    with torch.no_grad():
        f, _ = model.encode_frame(frame)
    feats = torch.zeros(1, cfg.clip.frames, *f.shape[1:])
    head = _to_onnx(_ClipHead(model), (feats,), [gio.FEATURES], list(OUTPUTS), _dyn([gio.FEATURES, *OUTPUTS]))
    return enc, attach_functions(head, cfg)


def export_split(model: nn.Module, out_dir: str | os.PathLike, parent_rows: bool = False) -> tuple[Path, Path]:
    enc, head = to_split_onnx(model, parent_rows)
    out_dir = Path(out_dir)
    return save(enc, out_dir / f"{gio.FRAME_ENCODER}.onnx"), save(head, out_dir / f"{gio.CLIP_HEAD}.onnx")
