"""Ablation on the synthetic task: ranking criterion x keep ratio -> top-1 and FLOPs.

Every cell starts from the same neutral point, the bundled TSM baseline
(trained here, no criterion or keep ratio involved) imported into AK-Net the
way a public TSM checkpoint would be (2D later stages compacted to 1D with
``compact_kernel``), then fine-tunes with the same seed and budget and is
evaluated on held-out synthetic clips. Training every cell from scratch would
need about 35 min each on 2 CPU cores; ``--scratch`` does that. Prints a table
and writes JSON.

    python bench/ablation.py                      # full grid, about 25 min on 2 CPU cores
    python bench/ablation.py --epochs 2 --criteria raster --keep 0.25   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from aknet_edge.config import preset
from aknet_edge.checkpoint import import_tsm, load_checkpoint
from aknet_edge.evaluate import DEMO_CHECKPOINTS, evaluate, heldout_synthetic
from aknet_edge.model import build_model
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.train import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--criteria", nargs="+", default=["score", "raster", "hilbert"])
    p.add_argument("--keep", nargs="+", type=float, default=[0.125, 0.25, 0.5])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--clips-per-class", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed-from", default=str(DEMO_CHECKPOINTS[1]), help="TSM baseline checkpoint every cell starts from")
    p.add_argument("--scratch", action="store_true", help="train every cell from scratch instead")
    p.add_argument("--eval-clips-per-class", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/ablation.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    base = preset("demo-tiny")
    x, y = heldout_synthetic(base, args.eval_clips_per_class)
    tc = TrainConfig(epochs=args.epochs, clips_per_class=args.clips_per_class, threads=args.threads, lr=args.lr,
                     seed=3)  # training seeds 3000+epoch: unused by the demo weights and disjoint from held-out
    tsm = None if args.scratch else load_checkpoint(args.seed_from)
    rows = []
    for criterion in args.criteria:
        for keep in args.keep:
            cfg = base.replace(criterion=criterion, keep_ratio=keep)
            start = time.time()
            init = None
            if tsm is not None:
                init = build_model(cfg)
                report = import_tsm(init, tsm.state_dict())
                if report.unexpected or report.skipped_shape:
                    raise RuntimeError(f"TSM seed does not fit {cfg.criterion}/{keep}: {report}")
            model = train(cfg, tc, progress=False, init=init).model
            r = evaluate(model, x, y, name=f"{criterion}/{keep}")
            rows.append({"criterion": criterion, "keep_ratio": keep, "K": cfg.num_keypoints, "top1": r.top1,
                         "gflops": r.gflops, "train_s": time.time() - start})
            print(f"{criterion:8s} keep {keep:<6} K {cfg.num_keypoints:4d}  top-1 {100 * r.top1:6.2f}%  "
                  f"GFLOPs {r.gflops:.4f}", flush=True)
    print("\n| criterion | keep ratio | K | top-1 % | GFLOPs/clip |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['criterion']} | {r['keep_ratio']} | {r['K']} | {100 * r['top1']:.2f} | {r['gflops']:.4f} |")
    meta = {"train": tc.__dict__, "init": "scratch" if tsm is None else args.seed_from, "eval_clips": int(len(y)),
            "command": " ".join(["python"] + sys.argv)}
    atomic_write_text(Path(args.out), json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
