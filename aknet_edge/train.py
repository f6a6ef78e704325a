"""``python -m aknet_edge.train``: train AK-Net or the TSM baseline.

Data is the synthetic generator (fresh clips every epoch, seeds disjoint from
the held-out evaluation set) or a labelled folder (one sub-folder per class).
With ``--teacher CHECKPOINT`` the model also learns from a trained teacher's
softened predictions (knowledge distillation, Hinton et al. 2015): a TSM
baseline of the same classes teaches AK-Net what its whole-frame view saw.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import save_checkpoint
from .cli_common import CliParser, UsageError, add_model_args, check_number, config_from_args, run_cli
from .config import ModelConfig
from .errors import ConfigError
from .data import SYNTHETIC_CLIPS, LabelledFolder, array_batches, synthetic_batches
from .model import build_model, logits_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the model's own config travels separately with the weights."""

    epochs: int = 30
    clips_per_class: int = 64  # synthetic clips per class per epoch
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2  # torch intra-op threads while training (restored afterwards); measured fastest on 2 cores
    label_smoothing: float = 0.05
    warmup: float = 0.05  # fraction of steps spent warming up the learning rate
    # "window": as the runtime samples (default); "whole": the whole action; "small-actor": window clips of a small
    # actor in a large cluttered frame
    synthetic_clips: str = "window"
    # With a teacher: the loss is (1 - w) * cross-entropy + w * T^2 * KL(teacher || student) at temperature T (the
    # T^2 keeps the soft term's gradients on the hard term's scale as T changes).
    distill_weight: float = 0.5
    distill_temperature: float = 4.0


@dataclass
class TrainResult:
    model: torch.nn.Module
    losses: list[float]
    seconds: float


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                    log_target=True) * (t * t)


def check_teacher(teacher: torch.nn.Module, cfg: ModelConfig) -> None:
    """The teacher must name the same classes in the same order and read the same clips as the student: both see
    one preprocessed batch, and its logits are compared class by class."""
    tcfg = teacher.cfg
    if tcfg.class_names != cfg.class_names:
        raise ConfigError(f"the teacher's classes ({', '.join(tcfg.class_names)}) are not the student's "
                          f"({', '.join(cfg.class_names)}): train the teacher on the same classes, in the same order")
    if tcfg.clip != cfg.clip:
        raise ConfigError(f"the teacher reads other clips ({tcfg.clip}) than the student ({cfg.clip}): "
                          "give both the same clip settings (frames, size, span, mean/std, colour)")


def train(cfg: ModelConfig, tc: TrainConfig, data: str = "synthetic", out: str | Path | None = None,
          progress: bool = True, init: torch.nn.Module | None = None,
          teacher: torch.nn.Module | None = None) -> TrainResult:
    """Train with a fixed seed (from scratch, or continuing ``init``); checkpoint every epoch when ``out`` is given.

    ``teacher``: a trained model (e.g. the TSM baseline) whose softened predictions the model also learns from
    (``tc.distill_weight``, ``tc.distill_temperature``); it is only run forward, in eval mode.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(tc.threads)
    try:
        return _train(cfg, tc, data, out, progress, init, teacher)
    finally:
        torch.set_num_threads(previous_threads)  # a library call leaves the process as it found it


def _train(cfg: ModelConfig, tc: TrainConfig, data: str, out: str | Path | None, progress: bool,
           init: torch.nn.Module | None, teacher: torch.nn.Module | None) -> TrainResult:
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    folder = None
    if data != "synthetic":
        folder = LabelledFolder.scan(data)  # the folder's sub-folders are the classes
        if folder.classes != cfg.labels:
            log.info("classes from %s: %s", data, ", ".join(folder.classes))
            cfg = cfg.replace(num_classes=len(folder.classes), labels=folder.classes)
        x_all, y_all, bad = folder.load(cfg.clip)
        log.info("loaded %d clips from %s (%d unreadable, skipped)", len(y_all), data, bad)
    if teacher is not None:
        check_teacher(teacher, cfg)  # after a folder set the classes
        teacher.eval()
    model = build_model(cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    n_batches = (
        math.ceil(tc.clips_per_class * cfg.num_classes / tc.batch) if folder is None else math.ceil(len(y_all) / tc.batch)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=tc.epochs * n_batches, pct_start=tc.warmup)
    losses: list[float] = []
    start = time.time()
    for epoch in range(tc.epochs):
        model.train()
        batches = (
            synthetic_batches(cfg.clip, tc.clips_per_class, seed=tc.seed * 1000 + epoch, batch=tc.batch,
                              clips=tc.synthetic_clips)
            if folder is None
            else array_batches(x_all, y_all, tc.batch, seed=tc.seed * 1000 + epoch)
        )
        bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=None if progress else True,
                   leave=False)  # None: no bar off a terminal (logs, CI get the per-epoch log lines)
        epoch_loss, correct, seen = 0.0, 0, 0
        for xb, yb in bar:
            x, y = torch.from_numpy(xb), torch.from_numpy(yb)
            logits = logits_of(model(x))
            loss = F.cross_entropy(logits, y, label_smoothing=tc.label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    soft = logits_of(teacher(x))
                loss = (1 - tc.distill_weight) * loss + tc.distill_weight * distillation_loss(
                    logits, soft, tc.distill_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            epoch_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
        log.info("epoch %d/%d: loss %.4f, train acc %.3f", epoch + 1, tc.epochs, epoch_loss / seen, correct / seen)
        if out is not None:
            extra = {"epoch": str(epoch + 1), "train_seed": str(tc.seed)}
            if teacher is not None:
                extra.update(distill_teacher=teacher.cfg.arch, distill_weight=str(tc.distill_weight),
                             distill_temperature=str(tc.distill_temperature))
            save_checkpoint(model.eval(), out, extra=extra)
    return TrainResult(model.eval(), losses, time.time() - start)


def check_args(args: argparse.Namespace) -> None:
    """Every numeric option's range and the checkpoint's place, before any data is read or a step runs."""
    check_number("--epochs", args.epochs, minimum=1, whole=True, optional=False)
    check_number("--clips-per-class", args.clips_per_class, minimum=1, whole=True, optional=False)
    check_number("--batch", args.batch, minimum=1, whole=True, optional=False)
    check_number("--lr", args.lr, above=0, optional=False)
    check_number("--seed", args.seed, minimum=0, maximum=2**32 - 1, whole=True, optional=False)  # numpy's range
    check_number("--threads", args.threads, minimum=1, whole=True, optional=False)
    check_number("--distill-weight", args.distill_weight, minimum=0, maximum=1)
    check_number("--distill-temperature", args.distill_temperature, above=0)
    if args.teacher is None:
        given = [f for f, v in (("--distill-weight", args.distill_weight),
                                ("--distill-temperature", args.distill_temperature)) if v is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} without --teacher: give the teacher checkpoint to distil from")
    from .io_utils import check_writable

    check_writable(args.out, "--out")  # now, not after the first epoch


def main(argv: list[str] | None = None) -> int:
    p = CliParser(prog="python -m aknet_edge.train", description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--data", default="synthetic", help="'synthetic' or a folder with one sub-folder per class")
    p.add_argument("--init", help="continue from this checkpoint (its config is used; a new LR schedule starts)")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors), rewritten after every epoch")
    d = TrainConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--clips-per-class", type=int, default=d.clips_per_class, help="synthetic clips per class per epoch")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--synthetic-clips", choices=SYNTHETIC_CLIPS, default=d.synthetic_clips,
                   help="synthetic clips sampled as the live window sees an action (window), spread over the "
                        "whole action (whole: an easier first stage), or window clips of a small actor among "
                        "shaking look-alikes in a large cluttered frame (small-actor)")
    p.add_argument("--teacher", metavar="CHECKPOINT",
                   help="distil from this trained checkpoint (e.g. a TSM baseline of the same classes and clips): "
                        "the loss mixes its softened predictions with the labels")
    p.add_argument("--distill-weight", type=float, metavar="W",
                   help=f"share of the teacher's term in the loss, 0..1 (default {d.distill_weight}; with --teacher)")
    p.add_argument("--distill-temperature", type=float, metavar="T",
                   help=f"softening temperature of both models' logits (default {d.distill_temperature}; with --teacher)")
    args = p.parse_args(argv)
    check_args(args)
    from .checkpoint import load_checkpoint

    init = teacher = None
    if args.init:
        init = load_checkpoint(args.init)
        cfg = init.cfg
    else:
        cfg = config_from_args(args)
    if args.teacher:
        teacher = load_checkpoint(args.teacher)
        if args.data == "synthetic":
            check_teacher(teacher, cfg)  # before any clip is made (a folder's classes are checked once it is read)
    distill = {k: v for k, v in (("distill_weight", args.distill_weight),
                                 ("distill_temperature", args.distill_temperature)) if v is not None}
    tc = TrainConfig(epochs=args.epochs, clips_per_class=args.clips_per_class, batch=args.batch, lr=args.lr,
                     seed=args.seed, threads=args.threads, synthetic_clips=args.synthetic_clips, **distill)
    res = train(cfg, tc, data=args.data, out=args.out, init=init, teacher=teacher)
    print(f"trained {cfg.arch}/{cfg.backbone} in {res.seconds / 60:.1f} min; final loss "
          f"{np.mean(res.losses[-20:]):.4f}; checkpoint {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
