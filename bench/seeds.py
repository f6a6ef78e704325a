"""Training runs over seeds for the benches that compare recipes (``distill.py``, ``small_actors.py``).

Each run is ``python -m aknet_edge.train`` in its own process, so runs share nothing but the disk; ``jobs`` of
them at a time, each at CPU niceness ``nice`` so a long comparison can share the machine. A failed run stops the
bench with its log's path: a mean over the runs that happened to succeed would not be the recipe's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Hashable, List, Sequence, Tuple


def add_run_args(p: argparse.ArgumentParser, epochs: int, lr: float, out: str) -> None:
    """The options every such bench takes: how many runs, of what length, how scored, how scheduled, where kept."""
    p.add_argument("--seeds", type=int, default=3, help="runs per arm")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--clips-per-class", type=int, default=64, help="fresh training clips per class per epoch")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--eval-clips-per-class", type=int, default=100, help="held-out clips per class (11 classes)")
    p.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    p.add_argument("--nice", type=int, default=10, help="CPU niceness of the training processes")
    p.add_argument("--keep", help="keep the checkpoints in this folder (default: a temporary one)")
    p.add_argument("--out", default=out)


def work_folder(args: argparse.Namespace, prefix: str) -> Path:
    """Where the runs' checkpoints and logs go: ``--keep``, or a fresh temporary folder."""
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


def _run(cmd: List[str], log: Path, nice: int) -> float:
    start = time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(nice)).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return time.time() - start


def run_all(runs: Dict[Hashable, Tuple[List[str], Path]], jobs: int, nice: int) -> Dict[Hashable, float]:
    """Run every ``key: (command, log)``, ``jobs`` at a time; return each run's wall seconds."""
    with ThreadPoolExecutor(jobs) as pool:
        futures = {key: pool.submit(_run, cmd, log, nice) for key, (cmd, log) in runs.items()}
        return {key: f.result() for key, f in futures.items()}


def spread(top1: Sequence[float]) -> Dict[str, float]:
    """Mean, sample standard deviation (0 for one run), min and max of top-1 fractions, in percent."""
    t = [100 * v for v in top1]
    return {"mean": statistics.mean(t), "sd": statistics.stdev(t) if len(t) > 1 else 0.0, "min": min(t),
            "max": max(t)}
