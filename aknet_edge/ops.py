"""The two AK-Net custom ops: ``aknet::keypoint_select`` and ``aknet::keypoint_rank``.

They are ``torch.library`` custom ops so that tracing and ONNX export see one
node each (later lowered per target), with a reference implementation, a fake
implementation for shape propagation, and autograd so the scorer trains
through the selection gate.

Tie rule, shared with ONNX TopK: among equal scores the lower flat index wins.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .keys import rank_keys


def _select_order(scores: Tensor, k: int) -> Tensor:
    # stable descending sort: equal scores keep ascending index order (ONNX TopK's rule)
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].contiguous()


def _gate(kept_scores: Tensor, n: int, gate_max: float) -> Tensor:
    return torch.clamp(kept_scores * n, max=gate_max)


@torch.library.custom_op("aknet::keypoint_select", mutates_args=())
def keypoint_select(features: Tensor, scores: Tensor, k: int, gate_max: float) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the top-k of ``scores`` (B, N) over all points of ``features`` (B, N, C).

    Returns the kept features times the gate ``min(N * s, gate_max)`` (B, K, C),
    their flat indices (B, K) int64 and scores (B, K), in descending score order.
    """
    n = scores.shape[1]
    idx = _select_order(scores, k)
    kept_scores = torch.gather(scores, 1, idx)
    kept = torch.gather(features, 1, idx.unsqueeze(-1).expand(-1, -1, features.shape[2]))
    return kept * _gate(kept_scores, n, gate_max).unsqueeze(-1), idx, kept_scores


@keypoint_select.register_fake
def _(features: Tensor, scores: Tensor, k: int, gate_max: float) -> tuple[Tensor, Tensor, Tensor]:
    b, _, c = features.shape
    return features.new_empty(b, k, c), scores.new_empty(b, k, dtype=torch.int64), scores.new_empty(b, k)


def _select_setup(ctx, inputs, output) -> None:
    features, scores, _, gate_max = inputs
    _, idx, kept_scores = output
    ctx.save_for_backward(features, idx, kept_scores)
    ctx.n = scores.shape[1]
    ctx.gate_max = gate_max


def _select_backward(ctx, grad_kept: Tensor, _grad_idx, grad_scores: Tensor):
    features, idx, kept_scores = ctx.saved_tensors
    c = features.shape[2]
    gate = _gate(kept_scores, ctx.n, ctx.gate_max)
    idx_c = idx.unsqueeze(-1).expand(-1, -1, c)
    grad_features = torch.zeros_like(features).scatter(1, idx_c, grad_kept * gate.unsqueeze(-1))
    raw = torch.gather(features, 1, idx_c)
    dgate = torch.where(kept_scores * ctx.n < ctx.gate_max, ctx.n, 0.0)
    g_s = (grad_kept * raw).sum(-1) * dgate
    if grad_scores is not None:
        g_s = g_s + grad_scores
    grad_all_scores = torch.zeros(features.shape[:2], dtype=g_s.dtype, device=g_s.device).scatter(1, idx, g_s)
    return grad_features, grad_all_scores, None, None


keypoint_select.register_autograd(_select_backward, setup_context=_select_setup)


@functools.lru_cache(maxsize=32)
def _keys_on(criterion: str, grid: tuple[int, ...], device: torch.device) -> Tensor:
    """The position keys of ``grid``, made once per device.

    Cached so a CUDA step copies no host array to the GPU on every call: the
    copy costs a synchronising transfer per inference, and a copy from
    pageable memory cannot be captured into a CUDA graph (bench/gpu_bench.py).
    """
    return torch.from_numpy(rank_keys(criterion, grid).copy()).to(device)


def _rank_order(indices: Tensor, scores: Tensor, criterion: str, grid: list[int]) -> Tensor:
    if criterion == "score":
        return torch.sort(scores, dim=1, descending=True, stable=True).indices
    if type(indices) is Tensor:  # real data: the per-device cache
        keys = _keys_on(criterion, tuple(int(g) for g in grid), indices.device)
    else:  # fake or functional tensors (tracing, export, opcheck) take a fresh constant, never a cached real one
        keys = torch.from_numpy(rank_keys(criterion, tuple(grid)).copy()).to(indices)
    return torch.argsort(keys[indices], dim=1)  # keys are unique per position: no ties


@torch.library.custom_op("aknet::keypoint_rank", mutates_args=())
def keypoint_rank(
    features: Tensor, indices: Tensor, scores: Tensor, criterion: str, grid: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Order kept points (B, K, ...) into the 1D sequence the classifier reads.

    ``criterion`` is ``score`` (descending), ``raster`` ((t, y, x) order) or
    ``hilbert`` (3D Hilbert curve over ``grid`` = (T, h, w)).
    """
    order = _rank_order(indices, scores, criterion, grid)
    c = features.shape[2]
    return (
        torch.gather(features, 1, order.unsqueeze(-1).expand(-1, -1, c)),
        torch.gather(indices, 1, order),
        torch.gather(scores, 1, order),
    )


@keypoint_rank.register_fake
def _(features, indices, scores, criterion, grid):
    return torch.empty_like(features), torch.empty_like(indices), torch.empty_like(scores)


def _rank_setup(ctx, inputs, output) -> None:
    features, indices, scores, criterion, grid = inputs
    ctx.save_for_backward(indices, scores)
    ctx.c, ctx.criterion, ctx.grid = features.shape[2], criterion, grid


def _rank_backward(ctx, grad_f: Tensor, _grad_i, grad_s: Tensor):
    indices, scores = ctx.saved_tensors
    order = _rank_order(indices, scores, ctx.criterion, ctx.grid)
    gf = torch.zeros_like(grad_f).scatter(1, order.unsqueeze(-1).expand(-1, -1, ctx.c), grad_f)
    gs = None if grad_s is None else torch.zeros_like(grad_s).scatter(1, order, grad_s)
    return gf, None, gs, None, None


keypoint_rank.register_autograd(_rank_backward, setup_context=_rank_setup)
