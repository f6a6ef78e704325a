"""The custom ops against brute force, their tie rule, gradients, and the ranking keys."""

import numpy as np
import pytest
import torch

from aknet_edge import ops
from aknet_edge.keys import grid_coords, normalised_coords, rank_keys


def brute_select(scores: np.ndarray, k: int) -> np.ndarray:
    # highest score first; equal scores: lower index first (ONNX TopK's rule)
    return np.array(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


@pytest.mark.parametrize("seed", range(5))
def test_select_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(3, 50, 4, generator=g)
    s = torch.rand(3, 50, generator=g)
    kept, idx, ks = ops.keypoint_select(f, s, 12, 1e9)
    for b in range(3):
        want = brute_select(s[b].numpy(), 12)
        assert idx[b].tolist() == want.tolist()
        torch.testing.assert_close(ks[b], s[b, want])
        torch.testing.assert_close(kept[b], f[b, want] * (s[b, want] * 50).unsqueeze(-1))


def test_select_ties_prefer_lower_index():
    s = torch.tensor([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    f = torch.arange(6.0).view(1, 6, 1)
    _, idx, _ = ops.keypoint_select(f, s, 4, 1e9)
    assert idx.tolist() == [[1, 3, 0, 2]]
    s_all = torch.full((1, 10), 0.1)
    _, idx, _ = ops.keypoint_select(torch.zeros(1, 10, 2), s_all, 3, 1e9)
    assert idx.tolist() == [[0, 1, 2]]


def test_gate_is_clipped():
    s = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    kept, _, _ = ops.keypoint_select(torch.ones(1, 4, 1), s, 2, 2.0)
    assert kept.flatten().tolist() == pytest.approx([2.0, 0.4])


@pytest.mark.parametrize("criterion", ["score", "raster", "hilbert"])
def test_rank_matches_brute_force(criterion):
    grid = (2, 3, 4)
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 24, 3, generator=g)
    s = torch.rand(2, 24, generator=g)
    kept, idx, ks = ops.keypoint_select(f, s, 9, 1e9)
    rf, ri, rs = ops.keypoint_rank(kept, idx, ks, criterion, list(grid))
    for b in range(2):
        if criterion == "score":
            want = sorted(range(9), key=lambda j: -ks[b, j].item())
        else:
            keys = rank_keys(criterion, grid)
            want = sorted(range(9), key=lambda j: keys[idx[b, j].item()])
        assert ri[b].tolist() == idx[b, want].tolist()
        torch.testing.assert_close(rf[b], kept[b, want])
        torch.testing.assert_close(rs[b], ks[b, want])
    assert sorted(ri[0].tolist()) == sorted(idx[0].tolist())


def test_ops_pass_torch_opcheck():
    f = torch.randn(2, 30, 5, requires_grad=True)
    s = torch.rand(2, 30).softmax(1).requires_grad_()
    torch.library.opcheck(ops.keypoint_select, (f, s, 7, 4.0))
    kept, idx, ks = ops.keypoint_select(f, s, 7, 4.0)
    for criterion in ("score", "raster", "hilbert"):
        torch.library.opcheck(
            ops.keypoint_rank, (kept.detach().requires_grad_(), idx, ks.detach().requires_grad_(), criterion, [2, 3, 5])
        )


def test_gradients_reach_scores_and_features():
    f = torch.randn(1, 16, 3, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(1, 16, dtype=torch.float64) / 16).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: ops.keypoint_select(a, b, 5, 4.0)[0], (f, s))
    kept, idx, ks = ops.keypoint_select(f, s, 5, 4.0)
    torch.autograd.gradcheck(lambda a, c: ops.keypoint_rank(a, idx, c, "hilbert", [1, 4, 4])[0], (kept, ks))


@pytest.mark.parametrize("grid", [(8, 8, 8), (8, 14, 14), (8, 28, 28), (3, 5, 7), (1, 1, 1)])
def test_hilbert_keys_are_a_bijection(grid):
    keys = rank_keys("hilbert", grid)
    assert sorted(keys.tolist()) == list(range(int(np.prod(grid))))


def test_hilbert_curve_steps_to_a_neighbour_on_power_of_two_grids():
    for grid in [(4, 4, 4), (8, 8, 8), (16, 16, 16)]:
        coords = grid_coords(grid)[np.argsort(rank_keys("hilbert", grid))]
        steps = np.abs(np.diff(coords, axis=0)).sum(axis=1)
        assert (steps == 1).all()


def test_hilbert_keeps_neighbours_closer_than_raster():
    grid = (8, 14, 14)
    def mean_step(criterion):
        c = grid_coords(grid)[np.argsort(rank_keys(criterion, grid))]
        return np.abs(np.diff(c, axis=0)).sum(axis=1).mean()
    assert mean_step("hilbert") < 0.6 * mean_step("raster")


def test_normalised_coords():
    c = normalised_coords(np.array([0, 8 * 14 * 14 - 1]), (8, 14, 14))
    np.testing.assert_allclose(c[0], [0.0, 0.5 / 14, 0.5 / 14], rtol=1e-6)
    np.testing.assert_allclose(c[1], [1.0, 13.5 / 14, 13.5 / 14], rtol=1e-6)
