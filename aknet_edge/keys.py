"""Ranking keys: one constant per grid position, for each ranking criterion.

Because a key depends only on the (t, y, x) position, ordering the kept
keypoints needs no data-dependent sort over all N points: gather the keys of
the kept points and order those. NumPy only, so export and the runtime can use
the same tables without torch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import ConfigError


def _hilbert_index(coords: np.ndarray, bits: int) -> np.ndarray:
    """Hilbert curve index of integer points (n_points, n_dims) in a 2**bits cube.

    Skilling's transpose algorithm ("Programming the Hilbert curve", 2004),
    vectorised over points.
    """
    x = coords.astype(np.int64).T.copy()  # (n_dims, n_points)
    n = x.shape[0]
    m = 1 << (bits - 1)
    q = m
    while q > 1:  # inverse undo of excess work
        p = q - 1
        for i in range(n):
            hit = (x[i] & q) != 0
            x[0] = np.where(hit, x[0] ^ p, x[0])
            t = (x[0] ^ x[i]) & p
            t = np.where(hit, 0, t)
            x[0] ^= t
            x[i] ^= t
        q >>= 1
    for i in range(1, n):  # Gray encode
        x[i] ^= x[i - 1]
    t = np.zeros_like(x[0])
    q = m
    while q > 1:
        t = np.where((x[n - 1] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    x ^= t
    out = np.zeros(x.shape[1], dtype=np.int64)
    for b in range(bits - 1, -1, -1):  # interleave the transposed bits
        for i in range(n):
            out = (out << 1) | ((x[i] >> b) & 1)
    return out


def grid_coords(grid: tuple[int, int, int]) -> np.ndarray:
    """(N, 3) integer (t, y, x) of every flat index t*h*w + y*w + x."""
    t, h, w = grid
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([tt.ravel(), yy.ravel(), xx.ravel()], axis=1)


@lru_cache(maxsize=32)
def _hilbert_keys(grid: tuple[int, int, int]) -> np.ndarray:
    side = max(grid)
    bits = max(1, int(np.ceil(np.log2(side))))
    h = _hilbert_index(grid_coords(grid), bits)
    keys = np.empty(len(h), dtype=np.int64)
    keys[np.argsort(h, kind="stable")] = np.arange(len(h))  # compact to 0..N-1
    keys.setflags(write=False)
    return keys


def rank_keys(criterion: str, grid: tuple[int, int, int]) -> np.ndarray:
    """(N,) int64 key per flat grid index; smaller keys come first in the sequence.

    ``score`` has no position key (it orders by the data), so it is rejected here.
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise ConfigError(f"grid={grid}: expected three positive sizes (T, h, w)")
    if criterion == "raster":
        return np.arange(grid[0] * grid[1] * grid[2], dtype=np.int64)
    if criterion == "hilbert":
        return _hilbert_keys(grid)
    raise ConfigError(f"criterion={criterion!r} has no per-position key; expected 'raster' or 'hilbert'")


def normalised_coords(indices: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Flat indices -> (..., 3) float32 (t, y, x): t in [0, 1], y/x at cell centres in (0, 1)."""
    t, h, w = grid
    ti = indices // (h * w)
    yi = (indices // w) % h
    xi = indices % w
    return np.stack([ti / max(t - 1, 1), (yi + 0.5) / h, (xi + 0.5) / w], axis=-1).astype(np.float32)
