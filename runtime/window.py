"""From timestamped frames to model inputs: time-based sampling and incremental encoding.

Why a fixed sample-time grid: a clip is the package's ``frames`` (T) samples
over ``span_s`` seconds, so samples sit ``span_s / (T - 1)`` apart. Anchoring
those times to a grid (from the first frame's timestamp) means every sample
time is resolved exactly once -- to the nearest frame actually captured, so
dropped frames and uneven camera rates only move which frame is picked -- and
consecutive windows share samples. That makes the incremental path exact: each
grid sample is encoded once, in order, and the head runs on the cached
features of the window's T samples.

Exactness with online temporal shift: the shift state couples consecutive
encoder calls, and a whole-clip run starts from zero state at the window's
first frame. With L shift layers a frame's features depend on at most the L
previous frames, so a window starting at sample s needs "fresh" features (state
zeroed at s) only for its first L samples; from s+L on the carried chain is
identical. :class:`IncrementalEncoder` therefore runs, per new sample, one
encoder call for the carried chain plus the fresh chains still in their first
L steps, and is equal to the whole-clip graph on the same frames. It is cheaper
than L+1 full encodes: a chain at step j equals the carried chain through
shift layer j, so the new frame goes in once and layer i runs 1 + min(L, i + 1)
rows, new rows forked from the carried row inside the graph (the stem and the
first layers run once; for demo-tiny 1, 2 and 3 rows at stem, layer 1 and
layer 2 instead of 3 everywhere, for r50-paper's 7 shifted blocks 2..8 rows
instead of 8). ``exact=False`` keeps only the carried chain (TSM-online style, one
encode per sample, not equal to whole-clip near the window start).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aknet_edge.config import ClipSpec
from aknet_edge.errors import ConfigError
from aknet_edge.sampling import TimeGrid, sample_period

from .backends import Backend, State
from .sources import Frame

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """Grid sample ``k`` at time ``time``, resolved to the nearest captured frame."""

    k: int
    time: float
    frame: Frame
    tensor: np.ndarray | None = None  # (3, S, S) preprocessed, filled by the caller


class GridSampler:
    """Resolves grid times ``t0 + k * period`` to the nearest frame, each exactly once.

    The rule itself is :class:`aknet_edge.sampling.TimeGrid`, shared with training and
    calibration (the same T frames of a video make a training clip and the live window). A
    gap longer than ``max_gap_s`` (a reconnect, a stalled file) or a clock going backwards
    restarts the grid, and the window must fill again.
    """

    def __init__(self, frames: int, span_s: float, max_gap_s: float | None = None) -> None:
        self.period = sample_period(frames, span_s)
        self.max_gap_s = span_s if max_gap_s is None else max_gap_s
        self._grid: TimeGrid[Frame] = TimeGrid(self.period)
        self.resets = 0

    @property
    def t0(self) -> float | None:
        return self._grid.t0

    def reset(self) -> None:
        self._grid.reset()

    def push(self, frame: Frame) -> tuple[list[Sample], bool]:
        """New frame -> (newly resolved samples, whether the grid restarted)."""
        t = frame.timestamp
        restarted = False
        last = self._grid.last_time
        if last is not None and (t < last or t - last > self.max_gap_s):
            log.info("sample grid restarted: frame at %.3f s after %.3f s", t, last)
            self.reset()
            self.resets += 1
            restarted = True
        return [Sample(r.k, r.time, r.item) for r in self._grid.push(t, frame)], restarted


@dataclass
class _Chain:
    state: list  # one array per shift layer; None where the chain equals the carried chain
    feats: list[np.ndarray] = field(default_factory=list)


class IncrementalEncoder:
    """Encodes each grid sample once and assembles a window's features for the head.

    See the module docstring for why ``exact=True`` keeps L chains besides the carried one.
    With ``stride`` s, windows start only at every s-th sample (counted from the first
    push), so fresh chains start only there: s times fewer extra rows.
    """

    def __init__(self, backend: Backend, frames: int, exact: bool = True, stride: int = 1) -> None:
        if stride < 1:
            raise ConfigError(f"stride={stride}: expected a whole number of samples >= 1")
        self.backend = backend
        self.frames = frames
        self.exact = exact
        self.stride = stride
        self.layers = len(backend.state_names)
        self._zero = backend.zero_state(1)  # shared by every fresh chain: states are only read, never written
        self._carried_state = backend.zero_state(1)
        self._carried: collections.deque[np.ndarray] = collections.deque(maxlen=frames)
        self._fresh: dict[int, _Chain] = {}
        self.count = 0  # samples encoded
        self.encoded_frames = 0  # frames run through the encoder (batch rows)

    def push(self, tensor: np.ndarray) -> None:
        """Encode the next sample (3, S, S)."""
        active = self._begin()
        if self.backend.state_fork:
            self._push_forking(tensor, active)
        else:  # packages before 0.2.0: every chain runs every layer
            n = 1 + len(active)
            states = [np.concatenate([self._carried_state[i]] + [c.state[i] for c in active], axis=0)
                      for i in range(self.layers)]
            batch = np.broadcast_to(tensor[None], (n, *tensor.shape))
            feats, new_state = self.backend.encode_frame(batch, states)
            self.encoded_frames += n
            self._take(feats, new_state, active)
        self._end()

    def _begin(self) -> list[_Chain]:
        """Count the next sample, open its fresh chain if a window starts there; the chains still in their
        first L steps, newest first (steps 0, 1, ... L-1)."""
        k = self.count
        self.count += 1
        if self.exact and self.layers and k % self.stride == 0:  # a window will start here
            self._fresh[k] = _Chain(self._zero)
        return [c for c in self._fresh.values() if len(c.feats) < self.layers][::-1]

    def _end(self) -> None:
        """Forget the chains of windows that can no longer be asked for."""
        k = self.count - 1
        for start in [s for s in self._fresh if s < k - self.frames + 1]:
            del self._fresh[start]

    def _push_forking(self, tensor: np.ndarray, chains: list[_Chain]) -> None:
        """One frame in; shift layer i gets the carried state plus the chains at step <= i.

        A chain at step j equals the carried chain through shift layer j (its
        older state has washed out), so it needs its own row only from layer
        j + 1 on; the graph forks that row from row 0 there (``backbone.fork_rows``).
        """
        states = [np.concatenate([self._carried_state[i]] + [c.state[i] for c in chains if len(c.feats) <= i], axis=0)
                  for i in range(self.layers)]
        feats, new_state = self.backend.encode_frame(tensor[None], states)
        self.encoded_frames += len(chains) + 1
        self._take(feats, new_state, chains)

    def _take(self, feats: np.ndarray, new_state: State, chains: list[_Chain]) -> None:
        """Row 0 is the carried chain, row j the j-th chain; a chain without a row at a layer needs no state there."""
        self._take_rows(feats, new_state, 0, chains, range(1, len(chains) + 1))

    def _take_rows(self, feats: np.ndarray, new_state: State, carried: int, chains: list[_Chain],
                   rows: Sequence[int]) -> None:
        """The carried chain's outputs from row ``carried``, each chain's from its row in ``rows``."""
        self._carried.append(feats[carried])
        self._carried_state = [s[carried:carried + 1] for s in new_state]
        for r, chain in zip(rows, chains):
            chain.feats.append(feats[r])
            chain.state = [s[r:r + 1] if r < s.shape[0] else None for s in new_state]

    @property
    def ready(self) -> bool:
        return self.count >= self.frames

    def window(self) -> np.ndarray:
        """Features (T, C, h, w) of the window ending at the last pushed sample."""
        if not self.ready:
            raise ConfigError(f"window not full: {self.count} of {self.frames} samples encoded")
        feats = list(self._carried)
        if self.exact and self.layers:
            start = self.count - self.frames
            chain = self._fresh.get(start)
            if chain is None:
                raise ConfigError(f"no window starts at sample {start}: with stride {self.stride} windows start at "
                                  f"multiples of {self.stride}")
            feats[: self.layers] = chain.feats[: self.layers]
        return np.stack(feats)


def encode_batch(encoders: Sequence[IncrementalEncoder], tensors: Sequence[np.ndarray]) -> None:
    """The next sample of each of several streams' encoders (one backend) in one encoder call.

    Equal to ``enc.push(t)`` for each pair, in one batch: row e of the frames is stream e,
    rows 0..N-1 of every state the streams' carried chains, then every stream's fresh chains,
    ordered by their step so that each shift layer's rows are a prefix of the next layer's.
    An encoder with a parent-row input (``Backend.parent_rows``) forks each fresh chain from its
    own stream's row, as one stream forks from row 0; other encoders get full rows: each
    fresh chain its own frame row, and where a forking chain still equals its carried chain, the
    carried state (exact too, more rows through the first layers).
    """
    if len(encoders) != len(tensors):
        raise ConfigError(f"{len(encoders)} encoders but {len(tensors)} samples")
    if len(encoders) == 1:
        encoders[0].push(tensors[0])
        return
    backend = encoders[0].backend
    if any(e.backend is not backend for e in encoders):
        raise ConfigError("encode_batch: every encoder must share one backend")
    n = len(encoders)
    layers = encoders[0].layers
    chains = [e._begin() for e in encoders]
    if not layers:  # no shift state: plain batched frames
        feats, new_state = backend.encode_frame(np.stack(tensors), [])
        for i, e in enumerate(encoders):
            e._take_rows(feats, new_state, i, [], ())
            e.encoded_frames += 1
    elif backend.state_fork and backend.parent_rows:
        order = sorted(((len(c.feats), i, c) for i, cs in enumerate(chains) for c in cs), key=lambda x: x[0])
        states = [np.concatenate([e._carried_state[layer] for e in encoders]
                                 + [c.state[layer] for step, _, c in order if step <= layer], axis=0)
                  for layer in range(layers)]
        parents = np.array(list(range(n)) + [i for _, i, _ in order], np.int32)
        feats, new_state = backend.encode_frame(np.stack(tensors), states, parents)
        rows: list[list[int]] = [[] for _ in range(n)]
        for g, (_, i, _) in enumerate(order):
            rows[i].append(n + g)
        for i, e in enumerate(encoders):
            mine = [c for _, j, c in order if j == i]
            e._take_rows(feats, new_state, i, mine, rows[i])
            e.encoded_frames += 1 + len(mine)
    else:
        frames, starts = [], []
        states = [[] for _ in range(layers)]
        for e, t, cs in zip(encoders, tensors, chains):
            starts.append(len(frames))
            frames += [t] * (1 + len(cs))
            for layer in range(layers):
                carried = e._carried_state[layer]
                states[layer] += [carried] + [carried if c.state[layer] is None else c.state[layer] for c in cs]
        feats, new_state = backend.encode_frame(np.stack(frames), [np.concatenate(s, axis=0) for s in states])
        for e, cs, r in zip(encoders, chains, starts):
            e._take_rows(feats, new_state, r, cs, range(r + 1, r + 1 + len(cs)))
            e.encoded_frames += 1 + len(cs)
    for e in encoders:
        e._end()


class WindowBuffer:
    """The last T resolved samples (frames and preprocessed tensors) for whole-clip runs and drawing.

    Tensors go into a ring of 2T slots, each written twice (``i`` and ``i + T``), so
    the window is always one contiguous view: no per-window stack of T frames.
    """

    def __init__(self, spec: ClipSpec, keep_tensors: bool = True) -> None:
        self.spec = spec
        self.keep_tensors = keep_tensors  # False in incremental mode: the encoder caches features instead
        self.samples: collections.deque[Sample] = collections.deque(maxlen=spec.frames)
        self._ring: np.ndarray | None = None
        self._n = 0

    def slot(self, shape: tuple[int, ...]) -> np.ndarray:
        """Where the next pushed sample's tensor goes: preprocess into it, then push the sample."""
        t = self.spec.frames
        if self._ring is None or self._ring.shape[1:] != tuple(shape):
            self._ring = np.empty((2 * t, *shape), np.float32)
        return self._ring[self._n % t]

    def push(self, sample: Sample) -> None:
        self.samples.append(sample)
        if sample.tensor is None or not self.keep_tensors:
            return
        t = self.spec.frames
        dst = self.slot(sample.tensor.shape)
        if sample.tensor is not dst:  # not preprocessed in place
            dst[...] = sample.tensor
        i = self._n % t
        self._ring[i + t] = dst  # the mirror that keeps every window one contiguous view
        self._n += 1

    def clear(self) -> None:
        self.samples.clear()
        self._n = 0

    @property
    def full(self) -> bool:
        return len(self.samples) == self.spec.frames

    def clip(self) -> np.ndarray:
        """(T, 3, S, S) float32, oldest first: a view valid until the next push."""
        t = self.spec.frames
        if self._ring is None or self._n < t:
            raise ConfigError(f"window not full: {self._n} of {t} samples")
        start = self._n % t
        return self._ring[start:start + t]


def stride_steps(stride_s: float | None, period: float) -> int:
    """A stride in seconds as a whole number of grid periods (at least one)."""
    if stride_s is None:
        return 1
    if stride_s <= 0:
        raise ConfigError(f"stride_s={stride_s}: expected > 0 seconds")
    return max(1, int(round(stride_s / period)))


__all__ = ["GridSampler", "IncrementalEncoder", "Sample", "WindowBuffer", "encode_batch", "stride_steps"]
