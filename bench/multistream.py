"""Many cameras, one engine: the multi-stream recogniser against N separate recognisers in one process.

    python bench/multistream.py [--package DIR] [--streams 1,2,4,8] [--seconds 20] [--rounds 3] [--quick]

Two measurements, each in incremental (exact) and whole-clip mode:

* throughput: N unpaced synthetic streams (frames rendered once, replayed from
  memory, each stream its own scenes), side by side in one run: windows per
  second of one :class:`~aknet_edge.runtime.multistream.MultiRecognizer` (one
  backend, one batched encoder call and one batched head call per step)
  against N independent :class:`~aknet_edge.runtime.Recognizer` objects in this
  process (N backends, N inference and head threads), rounds interleaved; the
  ratio is the median of the per-round ratios (target: >= 1.25x at N = 8,
  incremental);
* capacity: how many 15 fps cameras at stride 1 this machine keeps in real
  time: N paced streams (live semantics: a full capture buffer drops its oldest
  frame), N grown until a run drops a frame or skips a window. A run passes
  when no stream dropped a frame and every window was recognised.

Prints a table and writes bench/results/multistream.json (machine and CPU count
included). ``--quick`` only checks the script runs (tiny durations): its numbers
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from aknet_edge.io_utils import atomic_write_text
from timing import machine_name  # bench/timing.py

REPO = Path(__file__).resolve().parents[1]
FPS = 15.0
MODES = {"incremental": True, "whole_clip": False}


def footage(n: int, seconds: float, size: int = 112) -> List[List[np.ndarray]]:
    """``n`` streams of ``seconds`` of synthetic video, each its own seed (rendered once, reused by every run)."""
    from aknet_edge.synthetic import iter_long_video

    out = []
    for i in range(n):
        frames: List[np.ndarray] = []
        while len(frames) < int(seconds * FPS):
            _, it = iter_long_video(100 + i + len(frames), 4, FPS, size)
            frames += [f for _, f in it]
        out.append(frames[: int(seconds * FPS)])
    return out


def _sources(frames: List[List[np.ndarray]], paced: bool, gate: threading.Event) -> list:
    """Replays of ``frames`` that deliver nothing before ``gate`` is set: every recogniser is started (sessions made)
    before the clock starts and the first frame flows."""
    from aknet_edge.runtime.sources.memory import ArraySource

    class Gated(ArraySource):
        def _grab(self):
            gate.wait()
            return super()._grab()

    # paced: a camera (drops its oldest frame when the reader lags); unpaced: a backlog read as fast as it goes
    return [Gated(f, fps=FPS, speed=1.0 if paced else 0.0, block=not paced) for f in frames]


def run_multi(pkg: Path, frames, incremental: bool, threads, paced: bool = False) -> dict:
    from aknet_edge.runtime import MultiRecognizer

    gate = threading.Event()
    srcs = _sources(frames, paced, gate)
    with MultiRecognizer(pkg, srcs, incremental=incremental, threads=threads, queue_size=4096) as rec:
        t = time.perf_counter()  # from a started recogniser (sessions made, sources open), as for the others
        gate.set()
        n = sum(1 for _ in rec)
        wall = time.perf_counter() - t
        stats = rec.stats().streams
        steps = rec.steps
    return {"windows": n, "seconds": wall, "windows_per_s": n / wall, "steps": steps,
            "dropped": sum(s.dropped for s in stats.values()),
            "skipped": sum(s.skipped_windows for s in stats.values()),
            "p95_ms": max(s.latency_p95_ms for s in stats.values())}


def run_separate(pkg: Path, frames, incremental: bool, threads, paced: bool = False) -> dict:
    from aknet_edge.runtime import Recognizer
    from aknet_edge.runtime.sources import EndOfStream

    gate = threading.Event()
    recs = [Recognizer(pkg, s, incremental=incremental, threads=threads, queue_size=4096)
            for s in _sources(frames, paced, gate)]
    counts = [0] * len(recs)

    def drain(i: int) -> None:
        while True:
            try:
                if recs[i].next_result(timeout=0.5) is not None:
                    counts[i] += 1
            except EndOfStream:
                return

    for r in recs:
        r.start()
    t = time.perf_counter()
    gate.set()
    workers = [threading.Thread(target=drain, args=(i,)) for i in range(len(recs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t
    stats = [r.stats() for r in recs]
    for r in recs:
        r.close()
    n = sum(counts)
    return {"windows": n, "seconds": wall, "windows_per_s": n / wall,
            "dropped": sum(s.dropped for s in stats), "skipped": sum(s.skipped_windows for s in stats),
            "p95_ms": max(s.latency_p95_ms for s in stats)}


def throughput(pkg: Path, streams: List[int], seconds: float, rounds: int, threads) -> dict:
    frames = footage(max(streams), seconds)
    out: Dict[str, dict] = {}
    for mode, incremental in MODES.items():
        for n in streams:
            multi, separate = [], []
            for _ in range(rounds):  # interleaved: drifting load hits both alike
                multi.append(run_multi(pkg, frames[:n], incremental, threads))
                separate.append(run_separate(pkg, frames[:n], incremental, threads))
            ratios = [m["windows_per_s"] / s["windows_per_s"] for m, s in zip(multi, separate)]
            out[f"{mode}/{n}"] = {
                "mode": mode, "streams": n,
                "multi_windows_per_s": float(np.median([m["windows_per_s"] for m in multi])),
                "separate_windows_per_s": float(np.median([s["windows_per_s"] for s in separate])),
                "ratio": float(np.median(ratios)), "ratio_per_round": ratios,
                "multi_steps": [m["steps"] for m in multi], "runs": {"multi": multi, "separate": separate}}
    return out


def capacity(pkg: Path, seconds: float, limit: int, threads) -> dict:
    """The most paced 15 fps streams at stride 1 with no dropped frame and no skipped window, per mode and way."""
    frames = footage(limit, seconds)
    out: Dict[str, dict] = {}
    for mode, incremental in MODES.items():
        for way, fn in (("multi", run_multi), ("separate", run_separate)):
            best, trials = 0, []
            for n in range(1, limit + 1):
                r = fn(pkg, frames[:n], incremental, threads, paced=True)
                ok = r["dropped"] == 0 and r["skipped"] == 0
                trials.append({"streams": n, "ok": ok, **r})
                if not ok:
                    break
                best = n
            out[f"{mode}/{way}"] = {"mode": mode, "way": way, "real_time_streams": best,
                                    "limit_reached": best == limit, "trials": trials}
    return out


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package", help="model package (default: the bundled demo package)")
    p.add_argument("--streams", default="1,2,4,8", help="stream counts for the throughput runs")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of footage per stream (throughput)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of multi and separate runs")
    p.add_argument("--capacity-seconds", type=float, default=20.0, help="length of each real-time run")
    p.add_argument("--capacity-limit", type=int, default=16, help="most streams tried for real time")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads per backend")
    p.add_argument("--quick", action="store_true", help="tiny run to check the script works (numbers mean nothing)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "multistream.json"))
    args = p.parse_args(argv)
    streams = [int(s) for s in args.streams.split(",")]
    if args.quick:
        args.seconds, args.rounds, args.capacity_seconds, args.capacity_limit = 3.0, 1, 3.0, 2
        streams = [s for s in streams if s <= 2] or [1]

    import logging

    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))
    from aknet_edge.run import demo_package

    pkg = Path(args.package) if args.package else demo_package()
    thr = throughput(pkg, streams, args.seconds, args.rounds, args.threads)
    cap = capacity(pkg, args.capacity_seconds, args.capacity_limit, args.threads)
    res = {"package": str(pkg), "machine": machine_name(), "cpus": os.cpu_count(), "threads": args.threads,
           "quick": args.quick, "seconds": args.seconds, "rounds": args.rounds, "throughput": thr, "capacity": cap}
    print(f"{machine_name()}, threads {args.threads or 'default'}; {args.seconds:g} s of 15 fps footage per stream, "
          f"{args.rounds} rounds (w/s: medians; ratio: median of per-round ratios)")
    print(f"{'mode':<12} {'streams':>7} {'multi w/s':>10} {'separate w/s':>12} {'ratio':>6}")
    for row in thr.values():
        print(f"{row['mode']:<12} {row['streams']:>7} {row['multi_windows_per_s']:>10.1f} "
              f"{row['separate_windows_per_s']:>12.1f} {row['ratio']:>6.2f}")
    print(f"15 fps cameras at stride 1 kept in real time (no dropped frame, no skipped window; "
          f"{args.capacity_seconds:g} s runs, up to {args.capacity_limit}):")
    for row in cap.values():
        more = "+" if row["limit_reached"] else ""
        print(f"  {row['mode']:<12} {row['way']:<9} {row['real_time_streams']}{more}")
    out = atomic_write_text(args.out, json.dumps(res, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
