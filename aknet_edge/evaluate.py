"""``python -m aknet_edge.evaluate``: top-1 and cost of checkpoints on held-out clips.

With no arguments it evaluates the bundled demo AK-Net and the TSM baseline
trained the same way, on freshly generated synthetic clips whose seeds
training never used.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import load_checkpoint
from .config import ModelConfig
from .cli_common import run_cli
from .data import HELDOUT_SEED, LabelledFolder
from .errors import DataError
from .model import logits_of

from .config import WEIGHTS_DIR  # noqa: E402

DEMO_CHECKPOINTS = (WEIGHTS_DIR / "demo-tiny.safetensors", WEIGHTS_DIR / "demo-tiny-tsm.safetensors")


@dataclass
class EvalResult:
    """Accuracy of one model on one set, with its cost."""

    name: str
    arch: str
    top1: float
    clips: int
    per_class: dict[str, float]
    gflops: float
    mparams: float
    seconds: float


def heldout_synthetic(cfg: ModelConfig, clips_per_class: int, seed: int = HELDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic clips from seeds disjoint from every training seed, preprocessed."""
    from .preprocess import preprocess_batch
    from .synthetic import make_dataset

    clips, labels = make_dataset(clips_per_class, seed=seed, frames=cfg.clip.frames, size=cfg.clip.size)
    return preprocess_batch(clips, cfg.clip), labels


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Class predictions for preprocessed clips (B, T, 3, S, S)."""
    model.eval()
    out = [logits_of(model(torch.from_numpy(x[i : i + batch]))).argmax(1).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, name: str = "model") -> EvalResult:
    from .flops import count_cost

    cfg: ModelConfig = model.cfg
    start = time.time()
    pred = predict(model, x)
    elapsed = time.time() - start
    names = cfg.class_names
    per_class = {names[c]: float((pred[y == c] == c).mean()) for c in np.unique(y)}
    cost = count_cost(model, cfg)
    return EvalResult(name, cfg.arch, float((pred == y).mean()), len(y), per_class, cost.gflops, cost.mparams, elapsed)


def format_results(results: list[EvalResult]) -> str:
    rows = [("model", "arch", "clips", "top-1 %", "GFLOPs/clip", "Mparams")]
    for r in results:
        rows.append((r.name, r.arch, str(r.clips), f"{100 * r.top1:.2f}", f"{r.gflops:.3f}", f"{r.mparams:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aknet_edge.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="*", help="safetensors checkpoints (default: the bundled demo models)")
    p.add_argument("--data", default="synthetic", help="'synthetic' (held-out seeds) or a labelled clip folder")
    p.add_argument("--clips-per-class", type=int, default=100, help="synthetic held-out clips per class")
    p.add_argument("--seed", type=int, default=HELDOUT_SEED, help="held-out synthetic seed")
    p.add_argument("--per-class", action="store_true", help="also print per-class accuracy")
    p.add_argument("--json", help="write the results to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    paths = [Path(c) for c in args.checkpoints] or [c for c in DEMO_CHECKPOINTS if c.exists()]
    if not paths:
        raise DataError("no checkpoints given and no bundled demo weights found; train one with python -m aknet_edge.train")
    results = []
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for path in paths:
        model = load_checkpoint(path)
        cfg: ModelConfig = model.cfg
        key = (cfg.clip, args.data)
        if key not in cache:
            if args.data == "synthetic":
                cache[key] = heldout_synthetic(cfg, args.clips_per_class, args.seed)
            else:
                x, y, bad = LabelledFolder.scan(args.data, cfg.labels or None).load(cfg.clip)
                cache[key] = (x, y)
        x, y = cache[key]
        results.append(evaluate(model, x, y, name=path.stem))
    where = f"held-out synthetic clips (seed {args.seed})" if args.data == "synthetic" else args.data
    print(f"top-1 on {where}; FLOPs counted by torch FlopCounterMode (2 per multiply-add), batch 1")
    print(format_results(results))
    if args.per_class:
        for r in results:
            print(f"{r.name}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r.per_class.items()))
    if args.json:
        from .io_utils import atomic_write_text

        atomic_write_text(args.json, json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
