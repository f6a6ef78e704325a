"""Timing shared by the bench scripts: graphs timed side by side, in blocks, round-robin."""

from __future__ import annotations

import statistics
import time


def interleaved_ms(fns: dict, warmup: int, repeats: int, seconds: float, block_s: float = 0.3) -> tuple[dict[str, float], int]:
    """Median ms of each callable, timed in blocks of about ``block_s`` taken round-robin, first quarter of each dropped.

    Blocks, not single calls: a session's idle intra-op threads spin after a
    run, so alternating single calls of several sessions would time their
    contention for the cores instead of any one session. Round-robin blocks
    still share the machine's drift among all graphs.
    """
    calls = {}
    for k, fn in fns.items():
        for _ in range(warmup):
            t = time.perf_counter()
            fn()
            calls[k] = max(8, int(block_s / max(time.perf_counter() - t, 1e-6)))
    rounds = max(1, int(seconds / (block_s * len(fns))))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            for i in range(calls[k]):
                t = time.perf_counter()
                fn()
                if i >= calls[k] // 4:
                    times[k].append((time.perf_counter() - t) * 1e3)
    while min(len(v) for v in times.values()) < repeats:  # slow graphs: at least ``repeats`` timed runs each
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}, min(len(v) for v in times.values())
