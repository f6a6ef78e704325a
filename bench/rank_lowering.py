"""ONNX Runtime latency of the ranking lowerings TensorRT targets can get, side by side with today's graph.

Up to TensorRT 10.7 the ONNX parser builds ``CumSum`` as an ILoop with one
sequential iteration per element, so the JetPack targets (8.5, 8.6, 10.3)
must not see the prefix sum that mask-compaction ranking used. This bench
compares, on the clip head (the graph whose ranking changes; not for the
K = 4704 case, see CASES) and on selection + ranking alone, three forms of
the same ranking:

- ``cumsum``: today's compaction (mask over the N grid positions, CumSum gives each kept point its slot);
- ``matmul``: the same compaction with a blocked prefix sum, two small triangular MatMuls (loop-free);
- ``topk``: TopK (smallest first) over the K kept points' keys, in passes of at most 3840.

Every graph is lowered for ``tensorrt-8.5`` (the package's base lowering,
which every target and ONNX Runtime run) with only the rank form changed, and
timed in interleaved blocks (bench/timing.py), batch 1. Ratios are
new / cumsum per round, median over rounds with the quartiles. Each form's
outputs are compared with today's graph on the same input (exactness), and
the table says whether the graph still holds a CumSum or Loop node.

    python bench/rank_lowering.py                       # demo-tiny, r50-paper, r50-paper with K = 4704
    python bench/rank_lowering.py --presets demo-tiny --seconds 5

The r50-paper head runs about 0.6 s per call on a 2-core CPU and every timed
block holds at least 8 calls, so that case takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch

from aknet_edge import graph_io as gio
from aknet_edge.config import preset
from aknet_edge.export.functions import select_rank_model
from aknet_edge.export.lower import RANK_FORMS, lower
from aknet_edge.export.onnx_export import to_split_onnx
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import build_model
from timing import interleaved, machine_name  # bench/timing.py

BASELINE = "cumsum"
LOWERING_TARGET = "tensorrt-8.5"
CASES = {  # name -> (preset, overrides, time the clip head too)
    "demo-tiny": ("demo-tiny", {}, True),
    "r50-paper": ("r50-paper", {}, True),
    # the head at K = 4704 takes seconds per run on a CPU and its 1D stages swamp the ranking: selection +
    # ranking alone here (its head's parity with PyTorch is tests/test_rank_lowering.py's)
    "r50-paper K=4704": ("r50-paper", {"keep_ratio": 0.75}, False),
}


def _session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _feed_shape(model: onnx.ModelProto, name: str) -> list[int]:
    vi = next(i for i in model.graph.input if i.name == name)
    return [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]


def _loop_ops(model: onnx.ModelProto) -> dict[str, int]:
    ops = Counter(n.op_type for n in model.graph.node)
    return {op: ops.get(op, 0) for op in ("CumSum", "Loop", "Scan", "TopK", "MatMul")}


def bench_case(name: str, threads: int, warmup: int, repeats: int, seconds: float) -> dict:
    preset_name, overrides, with_head = CASES[name]
    torch.manual_seed(0)
    cfg = preset(preset_name, shift="none", **overrides)  # the head has no shift: same graph for any shift
    head_g = to_split_onnx(build_model(cfg).eval())[1] if with_head else None
    sr_g = select_rank_model(cfg.num_points, cfg.num_keypoints, cfg.criterion, cfg.grid)
    rng = np.random.default_rng(0)
    head_in = {gio.FEATURES: rng.normal(size=_feed_shape(head_g, gio.FEATURES)).astype(np.float32)} if with_head else {}
    sr_in = {"f": rng.normal(size=(1, cfg.num_points, 8)).astype(np.float32),
             "s": rng.random(size=(1, cfg.num_points)).astype(np.float32)}
    row: dict = {"case": name, "grid": list(cfg.grid), "N": cfg.num_points, "K": cfg.num_keypoints, "forms": {}}
    fns = {}
    outs = {}
    for form in RANK_FORMS:
        sr = lower(sr_g, LOWERING_TARGET, rank_form=form)
        ss = _session(sr, threads)
        fns[f"rank_{form}"] = lambda ss=ss: ss.run(None, sr_in)
        outs[form] = (ss.run(None, sr_in), None)
        row["forms"][form] = {"ops": _loop_ops(sr)}
        if with_head:
            head = lower(head_g, LOWERING_TARGET, rank_form=form)
            hs = _session(head, threads)
            fns[f"head_{form}"] = lambda hs=hs: hs.run(None, head_in)
            outs[form] = (outs[form][0], hs.run(None, head_in))
            row["forms"][form]["ops"] = _loop_ops(head)
    base_sr, base_head = outs[BASELINE]
    for form in RANK_FORMS:
        s, h = outs[form]
        same = all(np.array_equal(a, b) for a, b in zip(s, base_sr))
        if with_head:
            same = same and np.array_equal(h[1], base_head[1]) and np.abs(h[0] - base_head[0]).max() <= 1e-5
        row["forms"][form]["exact"] = bool(same)
    tm = interleaved(fns, warmup, repeats, seconds)
    row["rounds"] = len(tm.rounds[f"rank_{BASELINE}"])
    for form in RANK_FORMS:
        f = row["forms"][form]
        f["rank_ms"] = tm.median(f"rank_{form}")
        f["rank_ratio"], *f["rank_ratio_iqr"] = tm.ratio(f"rank_{form}", f"rank_{BASELINE}")
        if with_head:
            f["head_ms"] = tm.median(f"head_{form}")
            f["head_ratio"], *f["head_ratio_iqr"] = tm.ratio(f"head_{form}", f"head_{BASELINE}")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE",
                   help=f"cases to time (default: all of {', '.join(CASES)})")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=15, help="at least this many timed runs per graph")
    p.add_argument("--seconds", type=float, default=20.0, help="or as many as fit in about this time, per case")
    p.add_argument("--out", default="bench/results/rank_lowering.json")
    args = p.parse_args(argv)
    rows = [bench_case(c, args.threads, args.warmup, args.repeats, args.seconds) for c in args.presets]
    machine = f"{machine_name()}, {args.threads} ORT threads, onnxruntime {ort.__version__}"
    print(f"Ranking lowerings for {LOWERING_TARGET} graphs, ONNX Runtime CPU, batch 1, interleaved blocks after "
          f"{args.warmup} warm-up runs ({machine}); ms: median of all runs; ratio: form / {BASELINE}, median over "
          "rounds [quartiles]\n")
    print("| case | N | K | form | CumSum/Loop nodes | exact vs cumsum | clip head ms | head ratio | "
          "select+rank ms | select+rank ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    def ratio(f: dict, key: str) -> str:
        if f"{key}_ratio" not in f:
            return "n/a | n/a"
        q1, q3 = f[f"{key}_ratio_iqr"]
        return f"{f[f'{key}_ms']:.3f} | {f[f'{key}_ratio']:.3f} [{q1:.3f}-{q3:.3f}]"

    for r in rows:
        for form, f in r["forms"].items():
            loops = f["ops"]["CumSum"] + f["ops"]["Loop"] + f["ops"]["Scan"]
            print(f"| {r['case']} | {r['N']} | {r['K']} | {form} | {loops} | {'yes' if f['exact'] else 'NO'} | "
                  f"{ratio(f, 'head')} | {ratio(f, 'rank')} |")
    atomic_write_text(args.out, json.dumps({"machine": machine, "command": " ".join(["python"] + sys.argv),
                                            "target": LOWERING_TARGET, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
