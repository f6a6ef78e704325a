"""ONNX Runtime CPU latency of AK-Net vs the TSM baseline, and of the streaming split.

Side by side in one run: for each preset, both models exported and lowered for
``onnxruntime``, timed at batch 1 with 2 intra-op threads (median of repeated
runs after warm-up), with the FLOPs ratio beside the latency ratio. For
configs whose shift allows it, the split pipeline's cost per new frame
(frame_encoder on one frame + clip_head) over the whole-clip cost.

    python bench/export_latency.py                 # demo-tiny and r50-paper
    python bench/export_latency.py --presets demo-tiny --repeats 20
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

from aknet_edge.config import preset
from aknet_edge.export.lower import lower
from aknet_edge.export.onnx_export import split_names, to_onnx, to_split_onnx
from aknet_edge.flops import count_cost
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import build_model


def _session(model, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench_preset(name: str, threads: int, warmup: int, repeats: int, split_shift: str | None) -> dict:
    torch.manual_seed(0)
    row: dict = {"preset": name}
    x = None
    for arch in ("aknet", "tsm"):
        cfg = preset(name, arch=arch)
        model = build_model(cfg).eval()
        sess = _session(lower(to_onnx(model), "onnxruntime"), threads)
        if x is None:
            x = np.random.default_rng(0).normal(size=(1, cfg.clip.frames, 3, cfg.clip.size, cfg.clip.size)).astype(np.float32)
        row[f"{arch}_ms"] = _median_ms(lambda: sess.run(None, {"clip": x}), warmup, repeats)
        row[f"{arch}_gflops"] = count_cost(model, cfg).gflops
    row["latency_ratio"] = row["aknet_ms"] / row["tsm_ms"]
    row["flops_ratio"] = row["aknet_gflops"] / row["tsm_gflops"]
    # streaming split: an online-shift (or no-shift) variant of the same preset
    shift = preset(name).shift if preset(name).shift != "offline" else split_shift
    if shift:
        cfg = preset(name, shift=shift)
        model = build_model(cfg).eval()
        whole = _session(lower(to_onnx(model), "onnxruntime"), threads)
        enc_g, head_g = to_split_onnx(model)
        enc, head = _session(lower(enc_g, "onnxruntime"), threads), _session(lower(head_g, "onnxruntime"), threads)
        state_in, _ = split_names(model)
        states = {n: np.zeros(tuple(s.shape), np.float32) for n, s in zip(state_in, model.encoder.init_state(1))}
        frame = x[:, 0]
        with torch.no_grad():
            f, _ = model.encode_frame(torch.from_numpy(frame))
        feats = np.zeros((1, cfg.clip.frames, *f.shape[1:]), np.float32)
        whole_ms = _median_ms(lambda: whole.run(None, {"clip": x}), warmup, repeats)
        enc_ms = _median_ms(lambda: enc.run(None, {"frame": frame, **states}), warmup, repeats)
        head_ms = _median_ms(lambda: head.run(None, {"features": feats}), warmup, repeats)
        row.update(split_shift=shift, whole_clip_ms=whole_ms, frame_encoder_ms=enc_ms, clip_head_ms=head_ms,
                   per_new_frame_ratio=(enc_ms + head_ms) / whole_ms)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["demo-tiny", "r50-paper"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--split-shift", default="online", help="shift used for the split of presets that are 'offline'")
    p.add_argument("--out", default="bench/results/export_latency.json")
    args = p.parse_args(argv)
    rows = [bench_preset(n, args.threads, args.warmup, args.repeats, args.split_shift) for n in args.presets]
    machine = f"{platform.processor() or platform.machine()}, {args.threads} ORT threads, onnxruntime {ort.__version__}"
    print(f"ONNX Runtime CPU, batch 1, median of {args.repeats} after {args.warmup} warm-up runs ({machine})\n")
    print("| preset | AK-Net ms | TSM ms | latency ratio | FLOPs ratio | split: encoder+head ms / whole ms | per-new-frame ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        split = (f"{r['frame_encoder_ms']:.1f}+{r['clip_head_ms']:.1f} / {r['whole_clip_ms']:.1f} ({r['split_shift']})"
                 if "whole_clip_ms" in r else "n/a")
        ratio = f"{r['per_new_frame_ratio']:.3f}" if "per_new_frame_ratio" in r else "n/a"
        print(f"| {r['preset']} | {r['aknet_ms']:.1f} | {r['tsm_ms']:.1f} | {r['latency_ratio']:.3f} | "
              f"{r['flops_ratio']:.3f} | {split} | {ratio} |")
    atomic_write_text(args.out, json.dumps({"machine": machine, "command": " ".join(["python"] + sys.argv), "rows": rows},
                                           indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
