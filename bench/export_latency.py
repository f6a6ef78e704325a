"""ONNX Runtime CPU latency of AK-Net vs the TSM baseline, and of the streaming split.

Side by side in one run: for each preset, both models exported and lowered for
``onnxruntime``, timed at batch 1 with 2 intra-op threads (median of repeated
runs after warm-up), with the FLOPs ratio beside the latency ratio. For
configs whose shift allows it, the split pipeline's cost per new frame
(frame_encoder on one frame + clip_head) over the whole-clip cost.

Every timed call of a preset runs round-robin in one loop (one call of each
per repeat), so machine drift hits all of them alike; the head is fed the
features the encoder graph makes of the same clip (not zeros: an all-equal
score vector is TopK's degenerate case and not what a camera gives).

    python bench/export_latency.py                 # demo-tiny and r50-paper
    python bench/export_latency.py --presets demo-tiny --repeats 20
    python bench/export_latency.py --presets r50-paper --set keep_ratio=0.125 --out bench/results/export_latency_r50_keep0125.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np
import onnxruntime as ort
import torch

from aknet_edge.config import preset
from aknet_edge.export.lower import lower
from aknet_edge.export.onnx_export import split_names, to_onnx, to_split_onnx
from aknet_edge.flops import count_cost
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import build_model
from timing import interleaved_ms  # bench/timing.py


def _session(model, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_preset(name: str, threads: int, warmup: int, repeats: int, seconds: float, split_shift: str | None,
                 overrides: dict | None = None) -> dict:
    torch.manual_seed(0)
    row: dict = {"preset": name + "".join(f" {k}={v}" for k, v in (overrides or {}).items())}
    fns = {}
    x = None
    for arch in ("aknet", "tsm"):
        cfg = preset(name, arch=arch, **(overrides or {}))
        model = build_model(cfg).eval()
        sess = _session(lower(to_onnx(model), "onnxruntime"), threads)
        if x is None:
            x = np.random.default_rng(0).normal(size=(1, cfg.clip.frames, 3, cfg.clip.size, cfg.clip.size)).astype(np.float32)
        fns[arch] = lambda sess=sess: sess.run(None, {"clip": x})
        row[f"{arch}_gflops"] = count_cost(model, cfg).gflops
    # streaming split: an online-shift (or no-shift) variant of the same preset
    shift = preset(name).shift if preset(name).shift != "offline" else split_shift
    if shift:
        cfg = preset(name, **{**(overrides or {}), "shift": shift})
        model = build_model(cfg).eval()
        whole = _session(lower(to_onnx(model), "onnxruntime"), threads)
        enc_g, head_g = to_split_onnx(model)
        enc, head = _session(lower(enc_g, "onnxruntime"), threads), _session(lower(head_g, "onnxruntime"), threads)
        state_in, _ = split_names(model)
        states = {n: np.zeros(tuple(s.shape), np.float32) for n, s in zip(state_in, model.encoder.init_state(1))}
        feats, carry = [], dict(states)
        for t in range(cfg.clip.frames):  # the clip's own features, frame by frame with the shift state carried
            f, *new = enc.run(None, {"frame": x[:, t], **carry})
            feats.append(f)
            carry = dict(zip(state_in, new))
        feats = np.stack(feats, axis=1)
        frame = x[:, -1]
        fns.update(whole=lambda: whole.run(None, {"clip": x}),
                   encoder=lambda: enc.run(None, {"frame": frame, **carry}),
                   head=lambda: head.run(None, {"features": feats}))
    ms, row["repeats"] = interleaved_ms(fns, warmup, repeats, seconds)
    row.update(aknet_ms=ms["aknet"], tsm_ms=ms["tsm"], latency_ratio=ms["aknet"] / ms["tsm"],
               flops_ratio=row["aknet_gflops"] / row["tsm_gflops"])
    if shift:
        row.update(split_shift=shift, whole_clip_ms=ms["whole"], frame_encoder_ms=ms["encoder"], clip_head_ms=ms["head"],
                   per_new_frame_ratio=(ms["encoder"] + ms["head"]) / ms["whole"])
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["demo-tiny", "r50-paper"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=15, help="at least this many timed runs per graph")
    p.add_argument("--seconds", type=float, default=20.0, help="or as many as fit in about this time")
    p.add_argument("--split-shift", default="online", help="shift used for the split of presets that are 'offline'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field of every preset, e.g. --set keep_ratio=0.125")
    p.add_argument("--out", default="bench/results/export_latency.json")
    args = p.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    rows = [bench_preset(n, args.threads, args.warmup, args.repeats, args.seconds, args.split_shift, overrides) for n in args.presets]
    machine = f"{platform.processor() or platform.machine()}, {args.threads} ORT threads, onnxruntime {ort.__version__}"
    print(f"ONNX Runtime CPU, batch 1, median of runs timed in interleaved blocks after {args.warmup} warm-up rounds ({machine})\n")
    print("| preset | runs | AK-Net ms | TSM ms | latency ratio | FLOPs ratio | split: encoder+head ms / whole ms | per-new-frame ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        split = (f"{r['frame_encoder_ms']:.2f}+{r['clip_head_ms']:.2f} / {r['whole_clip_ms']:.2f} ({r['split_shift']})"
                 if "whole_clip_ms" in r else "n/a")
        ratio = f"{r['per_new_frame_ratio']:.3f}" if "per_new_frame_ratio" in r else "n/a"
        print(f"| {r['preset']} | {r['repeats']} | {r['aknet_ms']:.2f} | {r['tsm_ms']:.2f} | {r['latency_ratio']:.3f} | "
              f"{r['flops_ratio']:.3f} | {split} | {ratio} |")
    atomic_write_text(args.out, json.dumps({"machine": machine, "command": " ".join(["python"] + sys.argv), "rows": rows},
                                           indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
