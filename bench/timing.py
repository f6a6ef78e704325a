"""Timing shared by the bench scripts: graphs timed side by side, in blocks, round-robin."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Timings:
    """Per-callable times of one interleaved run: every timed call, and each round's median."""

    calls: dict[str, list[float]] = field(default_factory=dict)  # ms, every timed call
    rounds: dict[str, list[float]] = field(default_factory=dict)  # ms, median of each round's block

    def median(self, key: str) -> float:
        return statistics.median(self.calls[key])

    @property
    def fewest_runs(self) -> int:
        return min(len(v) for v in self.calls.values())

    def ratio(self, num: str | list[str], den: str | list[str]) -> tuple[float, float, float]:
        """Median over rounds of sum(num) / sum(den), with the rounds' quartiles.

        Each round's blocks ran next to each other in time, so a round's ratio
        compares the graphs under the same machine load; the median over rounds
        then discards the rounds a neighbour's burst of work distorted.
        """
        nums, dens = ([num] if isinstance(num, str) else num), ([den] if isinstance(den, str) else den)
        return median_quartiles([sum(self.rounds[k][r] for k in nums) / sum(self.rounds[k][r] for k in dens)
                                 for r in range(len(self.rounds[nums[0]]))])


def median_quartiles(per_round: list[float]) -> tuple[float, float, float]:
    """Median of per-round ratios with their quartiles (min and max when under 4 rounds)."""
    if len(per_round) < 4:
        return statistics.median(per_round), min(per_round), max(per_round)
    q1, m, q3 = statistics.quantiles(per_round, n=4)
    return m, q1, q3


def interleaved(fns: dict, warmup: int, repeats: int, seconds: float, block_s: float = 0.3) -> Timings:
    """Time each callable in blocks of about ``block_s`` taken round-robin, first quarter of each block dropped.

    Blocks, not single calls: a session's idle intra-op threads spin after a
    run, so alternating single calls of several sessions would time their
    contention for the cores instead of any one session. Round-robin blocks
    still share the machine's drift among all graphs, and per-round medians
    let callers take ratios within a round (:meth:`Timings.ratio`).
    """
    per_call = {}
    for k, fn in fns.items():
        for _ in range(warmup):
            t = time.perf_counter()
            fn()
            per_call[k] = max(8, int(block_s / max(time.perf_counter() - t, 1e-6)))
    n_rounds = max(1, int(seconds / (block_s * len(fns))))
    out = Timings({k: [] for k in fns}, {k: [] for k in fns})
    for _ in range(n_rounds):
        for k, fn in fns.items():
            block = []
            for i in range(per_call[k]):
                t = time.perf_counter()
                fn()
                if i >= per_call[k] // 4:
                    block.append((time.perf_counter() - t) * 1e3)
            out.calls[k] += block
            out.rounds[k].append(statistics.median(block))
    while out.fewest_runs < repeats:  # slow graphs: at least ``repeats`` timed runs each
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out.calls[k].append((time.perf_counter() - t) * 1e3)
    return out


def interleaved_ms(fns: dict, warmup: int, repeats: int, seconds: float, block_s: float = 0.3) -> tuple[dict[str, float], int]:
    """Median ms of each callable (see :func:`interleaved`) and the fewest timed runs of any."""
    t = interleaved(fns, warmup, repeats, seconds, block_s)
    return {k: t.median(k) for k in fns}, t.fewest_runs


def machine_name() -> str:
    """The CPU model and count, for the JSON beside every absolute time."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"
