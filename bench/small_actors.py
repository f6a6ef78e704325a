"""Small actors in large frames: AK-Net against TSM at equal FLOPs, over seeds.

The case AK-Net is for: one small actor (its box a quarter of the frame side, the object 20-35 % of the box)
among shaking look-alikes and static clutter on a textured background
(:func:`aknet_edge.synthetic.make_small_actor_clip`, deterministic by seed). Every scene is drawn at 224 px
(the camera) and resized to each model's input, as the runtime resizes camera frames. Arms:

    aknet@HI   AK-Net at the high resolution, its K (kept points) the largest that keeps its FLOPs within
               TSM's at the low resolution
    tsm@LO     TSM at the low resolution (the frame shrunk to AK-Net's cost)
    tsm@HI     TSM at the high resolution (paying for the full frame)
    tsm@112    TSM at the demo's resolution (the frame shrunk to a quarter of its pixels), unless --no-112

The tiny backbone's shared encoder (stem + stages 1-2, on every pixel) is 68 % of TSM's cost at any size, so
equal FLOPs allows only a small resolution step: AK-Net at 224 costs at least what TSM costs at about 190.

Every arm continues from its bundled demo weights (trained on the whole-frame task at 112 px; the networks are
fully convolutional, so they load at any size) with the same recipe: ``python -m aknet_edge.train
--synthetic-clips small-actor`` for ``--epochs`` epochs, one run per seed (training seeds 10, 11, ...), each in
its own process (``--jobs`` at a time, one torch thread each, at low CPU priority). Each checkpoint is scored
on the same held-out scenes (``--eval-clips-per-class`` per class, the build's held-out seed). Prints a table
(top-1 mean, sample standard deviation over seeds, min, max, GFLOPs per clip) and writes JSON.

    python bench/small_actors.py                  # 3 seeds x 4 arms, 8 epochs: about 1 h 50 min of CPU on 2 cores
    python bench/small_actors.py --seeds 1 --epochs 1 --clips-per-class 2 --eval-clips-per-class 2 --lo 96 --hi 128
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from aknet_edge.checkpoint import load_checkpoint, save_checkpoint
from aknet_edge.config import ClipSpec, ModelConfig
from aknet_edge.evaluate import DEMO_CHECKPOINTS, evaluate, heldout_synthetic
from aknet_edge.flops import count_cost
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import build_model
from seeds import add_run_args, run_all, spread, work_folder  # bench/seeds.py

FIRST_SEED = 10


@dataclass(frozen=True)
class Arm:
    name: str
    init: Path  # the bundled checkpoint it continues from
    cfg: ModelConfig  # at its resolution (and K)
    gflops: float


def _at(cfg: ModelConfig, size: int, **changes) -> ModelConfig:
    return cfg.replace(clip=ClipSpec(**{**cfg.clip.__dict__, "size": size}), **changes)


def _gflops(cfg: ModelConfig) -> float:
    return count_cost(build_model(cfg), cfg).gflops


def matched_keypoints(cfg: ModelConfig, budget: float) -> int:
    """The largest K whose AK-Net costs at most ``budget`` GFLOPs (cost grows with K)."""
    lo, hi = 1, cfg.num_points
    if _gflops(cfg.replace(keypoints=lo)) > budget:
        raise SystemExit(f"error: AK-Net at {cfg.clip.size} px costs more than {budget:.3f} GFLOPs even with K=1 "
                         "(its shared encoder alone); pick a higher --lo or a lower --hi")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _gflops(cfg.replace(keypoints=mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def arms(lo: int, hi: int, with_112: bool) -> List[Arm]:
    aknet, tsm = (load_checkpoint(p).cfg for p in DEMO_CHECKPOINTS)
    tsm_lo = _at(tsm, lo)
    budget = _gflops(tsm_lo)
    ak = _at(aknet, hi)
    ak = ak.replace(keypoints=matched_keypoints(ak, budget))
    out = [Arm(f"aknet@{hi}", DEMO_CHECKPOINTS[0], ak, _gflops(ak)), Arm(f"tsm@{lo}", DEMO_CHECKPOINTS[1], tsm_lo, budget),
           Arm(f"tsm@{hi}", DEMO_CHECKPOINTS[1], _at(tsm, hi), _gflops(_at(tsm, hi)))]
    if with_112 and 112 not in (lo, hi):
        out.append(Arm("tsm@112", DEMO_CHECKPOINTS[1], _at(tsm, 112), _gflops(_at(tsm, 112))))
    return out


def _init_checkpoint(arm: Arm, path: Path) -> None:
    """The bundled weights under the arm's config (size, K): what ``--init`` continues from."""
    model = build_model(arm.cfg)
    model.load_state_dict(load_checkpoint(arm.init).state_dict())  # strict: every weight fits at any size and K
    save_checkpoint(model.eval(), path)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hi", type=int, default=224, help="the high resolution (AK-Net's and TSM's full frame)")
    p.add_argument("--lo", type=int, default=192, help="TSM's resolution at AK-Net's cost")
    p.add_argument("--no-112", dest="with_112", action="store_false", help="leave out the tsm@112 arm")
    add_run_args(p, epochs=8, lr=1e-3, out="bench/results/small_actors.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = work_folder(args, "aknet-small-actors-")
    plan = arms(args.lo, args.hi, args.with_112)
    for arm in plan:
        _init_checkpoint(arm, work / f"init-{arm.name}.safetensors")
    started = time.time()
    runs = [(arm, FIRST_SEED + i) for i in range(args.seeds) for arm in plan]

    def command(arm: Arm, seed: int) -> List[str]:
        return [sys.executable, "-m", "aknet_edge.train", "--init", str(work / f"init-{arm.name}.safetensors"),
                "--epochs", str(args.epochs), "--lr", str(args.lr), "--seed", str(seed), "--threads", "1",
                "--synthetic-clips", "small-actor", "--clips-per-class", str(args.clips_per_class),
                "--out", str(work / f"{arm.name}-{seed}.safetensors")]

    train_s = run_all({(arm.name, seed): (command(arm, seed), work / f"{arm.name}-{seed}.log") for arm, seed in runs},
                      args.jobs, args.nice)
    results: Dict[str, Dict] = {}
    for arm in plan:  # one resolution's held-out set in memory at a time
        x, y = heldout_synthetic(arm.cfg, args.eval_clips_per_class, scene="small-actor")
        n_eval = int(len(y))
        start = evaluate(load_checkpoint(work / f"init-{arm.name}.safetensors"), x, y, name=arm.name)
        row = results[arm.name] = {"size": arm.cfg.clip.size, "K": arm.cfg.num_keypoints if arm.cfg.arch == "aknet"
                                   else None, "gflops": arm.gflops, "untrained_top1": start.top1, "top1": [],
                                   "seeds": [], "train_s": []}
        for name, seed in ((a.name, s) for a, s in runs if a.name == arm.name):
            r = evaluate(load_checkpoint(work / f"{name}-{seed}.safetensors"), x, y, name=f"{name}-{seed}")
            row["top1"].append(r.top1)
            row["seeds"].append(seed)
            row["train_s"].append(round(train_s[(name, seed)], 1))
        del x, y
    budget = results[f"tsm@{args.lo}"]["gflops"]
    table = ["| model | input | K | runs | top-1 % mean | spread (sd) | min | max | GFLOPs/clip | FLOPs vs tsm@"
             f"{args.lo} | before training |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        st = spread(row["top1"])
        row.update(mean=st["mean"], sd=st["sd"])
        table.append(f"| {name} | {row['size']} px | {row['K'] or 'all'} | {len(row['top1'])} | {st['mean']:.2f} | "
                     f"{st['sd']:.2f} | {st['min']:.2f} | {st['max']:.2f} | {row['gflops']:.3f} | "
                     f"{row['gflops'] / budget:.3f}x | "
                     f"{100 * row['untrained_top1']:.2f} |")
    print("\n".join(table))
    meta = {"epochs": args.epochs, "clips_per_class": args.clips_per_class, "lr": args.lr, "hi": args.hi,
            "lo": args.lo, "eval_clips": n_eval,
            "wall_s": round(time.time() - started, 1), "command": " ".join(["python"] + sys.argv)}
    atomic_write_text(Path(args.out), json.dumps({"meta": meta, "rows": results}, indent=2))
    print(f"wrote {args.out} ({(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
