"""``python -m aknet_edge.flops``: FLOPs and parameters of AK-Net beside its TSM baseline.

FLOPs are counted by running the model under ``torch.utils.flop_counter.
FlopCounterMode`` (a multiply-add counts as 2 FLOPs), per stage, at batch 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .cli_common import CliParser, add_model_args, config_from_args, run_cli
from .cli_common import format_table as table
from .config import ModelConfig
from .model import build_model

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "scorer", "head")


def _stage_of(name: str) -> str:
    parts = name.split(".")
    if parts and parts[0] == "encoder":
        parts = parts[1:]
    first = parts[0] if parts else ""
    if first in ("conv1", "bn1", "relu", "maxpool"):
        return "stem"
    if first.startswith("layer"):
        return first
    if first in ("scorer", "coord_proj"):
        return "scorer"
    return "head"


@dataclass
class Cost:
    """GFLOPs and parameters (millions) of one model, total and per stage."""

    arch: str
    gflops: float
    mparams: float
    stage_gflops: dict[str, float] = field(default_factory=dict)
    stage_mparams: dict[str, float] = field(default_factory=dict)


def count_cost(model: nn.Module, cfg: ModelConfig) -> Cost:
    """Count one clip's forward FLOPs with a real counter, grouped by stage."""
    x = torch.zeros(1, cfg.clip.frames, 3, cfg.clip.size, cfg.clip.size)
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(x)
    root = type(model).__name__
    per_stage = {s: 0 for s in STAGES}
    for mod_name, ops in counter.get_flop_counts().items():
        parts = mod_name.split(".")
        if parts[0] != root or len(parts) < 2:
            continue
        # count only the leaf-most level under each stage to avoid double counting
        rel = ".".join(parts[1:])
        depth_needed = 2 if parts[1] == "encoder" else 1
        if len(parts) - 1 != depth_needed:
            continue
        per_stage[_stage_of(rel)] += sum(ops.values())
    total = counter.get_total_flops()
    per_stage["head"] += total - sum(per_stage.values())  # ops issued directly in forward (pooling, matmuls)
    params = {s: 0 for s in STAGES}
    for name, p in model.named_parameters():
        params[_stage_of(name)] += p.numel()
    return Cost(
        arch=cfg.arch,
        gflops=total / 1e9,
        mparams=sum(params.values()) / 1e6,
        stage_gflops={k: v / 1e9 for k, v in per_stage.items()},
        stage_mparams={k: v / 1e6 for k, v in params.items()},
    )


def compare(cfg: ModelConfig) -> tuple[Cost, Cost]:
    """AK-Net and the TSM baseline at the same input and backbone."""
    ak = cfg.replace(arch="aknet")
    tsm = cfg.replace(arch="tsm")
    return count_cost(build_model(ak), ak), count_cost(build_model(tsm), tsm)


def format_table(ak: Cost, tsm: Cost) -> str:
    rows = [("stage", "AK-Net GFLOPs", "TSM GFLOPs", "AK-Net Mparams", "TSM Mparams")]
    for s in STAGES:
        rows.append((s, f"{ak.stage_gflops[s]:.3f}", f"{tsm.stage_gflops[s]:.3f}",
                     f"{ak.stage_mparams[s]:.3f}", f"{tsm.stage_mparams[s]:.3f}"))
    rows.append(("total", f"{ak.gflops:.3f}", f"{tsm.gflops:.3f}", f"{ak.mparams:.3f}", f"{tsm.mparams:.3f}"))
    return (table(rows) + f"\nFLOPs ratio AK-Net/TSM: {ak.gflops / tsm.gflops:.3f}   "
            f"params ratio: {ak.mparams / tsm.mparams:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = CliParser(prog="python -m aknet_edge.flops", description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--json", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if args.json:
        from .io_utils import check_writable

        check_writable(args.json, "--json")
    torch.set_num_threads(2)
    ak, tsm = compare(cfg)
    t, h, w = cfg.grid
    print(f"{args.config or args.preset}: {cfg.backbone}, T={t}, {cfg.clip.size}x{cfg.clip.size}, cut={cfg.cut}, "
          f"N={cfg.num_points} points, K={cfg.num_keypoints} kept, criterion={cfg.criterion}, per clip at batch 1")
    print(format_table(ak, tsm))
    if args.json:
        from .io_utils import atomic_write_text

        atomic_write_text(args.json, json.dumps({"config": cfg.to_dict(), "aknet": asdict(ak), "tsm": asdict(tsm),
                                                 "ratio": ak.gflops / tsm.gflops}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
