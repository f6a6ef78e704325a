"""AK-Net against TSM over seeds: does distillation from the TSM baseline close the gap?

Every arm continues from the bundled demo weights with the same last stage of ``bench/train_demo.sh``
(window clips, ``--lr 5e-4``) for ``--epochs`` epochs, one run per seed (training seeds 10, 11, ... are
disjoint from the recipe's 0-2 and from the held-out seed):

    aknet      the bundled AK-Net, continued
    aknet+kd   the same, with ``--teacher`` = the bundled TSM baseline (``--distill-weight``, ``--distill-temperature``)
    tsm        the bundled TSM baseline, continued

so every arm gets the same number of steps on the same clips; only the loss differs between ``aknet`` and
``aknet+kd``. Each run is ``python -m aknet_edge.train`` in its own process (``--jobs`` at a time, one torch
thread each, at low CPU priority so it can share the machine); each checkpoint is evaluated on the same
held-out clips (``--eval-clips-per-class`` per class, the build's held-out seed). Prints a table (top-1 mean,
sample standard deviation over seeds, min and max, GFLOPs per clip) and writes JSON.

What this measures is the spread of the last stage over seeds, not of the whole recipe from scratch (that
takes about 1 h 40 min per model on 2 CPU cores).

    python bench/distill.py                           # 3 seeds x 3 arms, 10 epochs: about 1.5 CPU hours
    python bench/distill.py --seeds 1 --epochs 1 --clips-per-class 8 --eval-clips-per-class 10   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List

from aknet_edge.checkpoint import load_checkpoint
from aknet_edge.evaluate import DEMO_CHECKPOINTS, evaluate, heldout_synthetic
from aknet_edge.io_utils import atomic_write_text
from seeds import add_run_args, run_all, spread, work_folder  # bench/seeds.py

ARMS = ("aknet", "aknet+kd", "tsm")
FIRST_SEED = 10


def _command(arm: str, seed: int, out: Path, args: argparse.Namespace) -> List[str]:
    student, teacher = (str(p) for p in DEMO_CHECKPOINTS)
    init = teacher if arm == "tsm" else student
    cmd = [sys.executable, "-m", "aknet_edge.train", "--init", init, "--epochs", str(args.epochs), "--lr",
           str(args.lr), "--seed", str(seed), "--threads", "1", "--synthetic-clips", "window", "--clips-per-class",
           str(args.clips_per_class), "--out", str(out)]
    if arm == "aknet+kd":
        cmd += ["--teacher", teacher, "--distill-weight", str(args.distill_weight), "--distill-temperature",
                str(args.distill_temperature)]
    return cmd


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p, epochs=10, lr=5e-4, out="bench/results/distill.json")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--distill-temperature", type=float, default=4.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = work_folder(args, "aknet-distill-")
    runs = [(arm, FIRST_SEED + i) for i in range(args.seeds) for arm in args.arms]
    started = time.time()
    train_s = run_all({(arm, seed): (_command(arm, seed, work / f"{arm}-{seed}.safetensors", args),
                                     work / f"{arm}-{seed}.log") for arm, seed in runs}, args.jobs, args.nice)
    models = {k: load_checkpoint(work / f"{k[0]}-{k[1]}.safetensors") for k in runs}
    x, y = heldout_synthetic(next(iter(models.values())).cfg, args.eval_clips_per_class)
    results: Dict[str, Dict] = {}
    start_rows = {"aknet (bundled)": DEMO_CHECKPOINTS[0], "tsm (bundled)": DEMO_CHECKPOINTS[1]}
    for name, path in start_rows.items():
        r = evaluate(load_checkpoint(path), x, y, name=name)
        results[name] = {"top1": [r.top1], "gflops": r.gflops, "seeds": []}
    for (arm, seed), model in models.items():
        r = evaluate(model, x, y, name=f"{arm}-{seed}")
        row = results.setdefault(arm, {"top1": [], "gflops": r.gflops, "seeds": [], "train_s": []})
        row["top1"].append(r.top1)
        row["seeds"].append(seed)
        row["train_s"].append(round(train_s[(arm, seed)], 1))
    table = ["| model | runs | top-1 % mean | spread (sd) | min | max | GFLOPs/clip |", "|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        st = spread(row["top1"])
        row.update(mean=st["mean"], sd=st["sd"])
        table.append(f"| {name} | {len(row['top1'])} | {st['mean']:.2f} | {st['sd']:.2f} | {st['min']:.2f} | "
                     f"{st['max']:.2f} | {row['gflops']:.3f} |")
    print("\n".join(table))
    meta = {"epochs": args.epochs, "clips_per_class": args.clips_per_class, "lr": args.lr,
            "distill_weight": args.distill_weight, "distill_temperature": args.distill_temperature,
            "eval_clips": int(len(y)), "wall_s": round(time.time() - started, 1),
            "command": " ".join(["python"] + sys.argv)}
    atomic_write_text(Path(args.out), json.dumps({"meta": meta, "rows": results}, indent=2))
    print(f"wrote {args.out} ({(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
