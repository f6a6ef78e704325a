"""ONNX Runtime CPU latency of AK-Net vs the TSM baseline, and of the streaming split.

Side by side in one run: for each preset, both models exported and lowered for
``onnxruntime``, timed at batch 1 with 2 intra-op threads (median of repeated
runs after warm-up), with the FLOPs ratio beside the latency ratio. For
configs whose shift allows it, the split pipeline's cost per new frame
(frame_encoder on one frame + clip_head) over the whole-clip cost.

Every graph of a preset is timed in blocks taken round-robin (bench/timing.py);
each ratio is the median over rounds of that round's ratio, with the rounds'
quartiles beside it, because this machine's speed drifts by tens of percent
within seconds and only graphs timed next to each other compare fairly. The
head is fed the features the encoder graph makes of the same clip (not zeros:
an all-equal score vector is TopK's degenerate case and not what a camera gives).

The breakdown times the parts the two models share and the parts they do not:
the frame encoder (stem + stages up to the cut), AK-Net's clip head and its 1D
convolutions alone, and TSM's later 2D stages. From those, the cost of scoring,
selection and ranking (head minus its convolutions), their share of the
savings (what the 1D stages save over TSM's 2D stages), and the latency ratio
AK-Net would have if scoring, selection and ranking cost nothing.

    python bench/export_latency.py                 # demo-tiny and r50-paper
    python bench/export_latency.py --presets demo-tiny --repeats 20
    python bench/export_latency.py --presets r50-paper --set keep_ratio=0.125 --out bench/results/export_latency_r50_keep0125.json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch

from aknet_edge import graph_io as gio
from aknet_edge.config import preset
from aknet_edge.export.lower import lower
from aknet_edge.export.onnx_export import _to_onnx, split_names, to_onnx, to_split_onnx
from aknet_edge.flops import count_cost
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import build_model
from timing import interleaved, machine_name  # bench/timing.py


def _session(model, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class _Part(torch.nn.Module):
    """One part of a model as its own graph: ``model.<method>(x)``, or the frame encoder's features."""

    def __init__(self, model, method: str) -> None:
        super().__init__()
        self.m, self.method = model, method

    def forward(self, x):
        return self.m.encoder(x)[0] if self.method == "encoder" else getattr(self.m, self.method)(x)


def _plain(module, x: np.ndarray) -> onnx.ModelProto:
    return _to_onnx(module.eval(), (torch.from_numpy(x),), ["x"], ["y"], {})


def bench_preset(name: str, threads: int, warmup: int, repeats: int, seconds: float, split_shift: str | None,
                 overrides: dict | None = None, breakdown: bool = True) -> dict:
    torch.manual_seed(0)
    row: dict = {"preset": name + "".join(f" {k}={v}" for k, v in (overrides or {}).items())}
    fns = {}
    x = None
    models = {}
    for arch in ("aknet", "tsm"):
        cfg = preset(name, arch=arch, **(overrides or {}))
        model = models[arch] = build_model(cfg).eval()
        sess = _session(lower(to_onnx(model), "onnxruntime"), threads)
        if x is None:
            x = np.random.default_rng(0).normal(size=(1, cfg.clip.frames, 3, cfg.clip.size, cfg.clip.size)).astype(np.float32)
        fns[arch] = lambda sess=sess: sess.run(None, {gio.CLIP_INPUT: x})
        row[f"{arch}_gflops"] = count_cost(model, cfg).gflops
    if breakdown:  # the shared encoder, AK-Net's head and its 1D stages, TSM's later stages
        ak, tsm = models["aknet"], models["tsm"]
        shared = _session(_plain(_Part(tsm, "encoder"), x), threads)
        y = shared.run(None, {"x": x})[0]
        later = _session(_plain(_Part(tsm, "head"), y), threads)
        _, head_g = to_split_onnx(build_model(ak.cfg.replace(shift="none")).eval()) if ak.cfg.shift == "offline" \
            else to_split_onnx(ak)  # the head has no shift: the same graph whatever the encoder's shift
        ak_head = _session(lower(head_g, "onnxruntime"), threads)
        y_clip = y.reshape(1, ak.cfg.clip.frames, *y.shape[1:])
        z = np.random.default_rng(1).normal(size=(1, ak.encoder.out_channels, 1, ak.cfg.num_keypoints)).astype(np.float32)
        points = _session(_plain(_Part(ak, "classify"), z), threads)
        fns.update(b_encoder=lambda: shared.run(None, {"x": x}), b_head=lambda: ak_head.run(None, {gio.FEATURES: y_clip}),
                   b_head_convs=lambda: points.run(None, {"x": z}), b_tsm_later=lambda: later.run(None, {"x": y}))
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
            f, *new = enc.run(None, {gio.FRAME_INPUT: x[:, t], **carry})
            feats.append(f)
            carry = dict(zip(state_in, new))
        feats = np.stack(feats, axis=1)
        frame = x[:, -1]
        fns.update(whole=lambda: whole.run(None, {gio.CLIP_INPUT: x}),
                   encoder=lambda: enc.run(None, {gio.FRAME_INPUT: frame, **carry}),
                   head=lambda: head.run(None, {gio.FEATURES: feats}))
    tm = interleaved(fns, warmup, repeats, seconds)
    ms = {k: tm.median(k) for k in fns}
    row["repeats"], row["rounds"] = tm.fewest_runs, len(tm.rounds["aknet"])
    lat, q1, q3 = tm.ratio("aknet", "tsm")
    row.update(aknet_ms=ms["aknet"], tsm_ms=ms["tsm"], latency_ratio=lat, latency_ratio_iqr=[q1, q3],
               flops_ratio=row["aknet_gflops"] / row["tsm_gflops"])
    if shift:
        r, q1, q3 = tm.ratio(["encoder", "head"], "whole")
        row.update(split_shift=shift, whole_clip_ms=ms["whole"], frame_encoder_ms=ms["encoder"], clip_head_ms=ms["head"],
                   per_new_frame_ratio=r, per_new_frame_ratio_iqr=[q1, q3])
    if breakdown:
        r, q1, q3 = tm.ratio(["b_encoder", "b_head_convs"], ["b_encoder", "b_tsm_later"])
        savings = ms["b_tsm_later"] - ms["b_head_convs"]
        row["breakdown"] = {
            "encoder_ms": ms["b_encoder"], "head_ms": ms["b_head"], "head_convs_ms": ms["b_head_convs"],
            "tsm_later_ms": ms["b_tsm_later"], "score_select_rank_ms": ms["b_head"] - ms["b_head_convs"],
            "share_of_savings": (ms["b_head"] - ms["b_head_convs"]) / savings if savings > 0 else float("nan"),
            "ratio_if_selection_free": r, "ratio_if_selection_free_iqr": [q1, q3],
        }
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
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                   help="skip timing the shared encoder, the head's parts and TSM's later stages")
    p.add_argument("--out", default="bench/results/export_latency.json")
    args = p.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    rows = [bench_preset(n, args.threads, args.warmup, args.repeats, args.seconds, args.split_shift, overrides,
                         args.breakdown) for n in args.presets]
    machine = f"{machine_name()}, {args.threads} ORT threads, onnxruntime {ort.__version__}"
    print(f"ONNX Runtime CPU, batch 1, graphs timed in interleaved blocks after {args.warmup} warm-up rounds ({machine}); "
          "ms: median of all runs; ratios: median over rounds of each round's ratio [quartiles]\n")
    print("| preset | rounds | AK-Net ms | TSM ms | latency ratio | FLOPs ratio | split: encoder+head ms / whole ms | per-new-frame ratio |")
    print("|---|---|---|---|---|---|---|---|")
    iqr = lambda v: f"[{v[0]:.2f}-{v[1]:.2f}]"  # noqa: E731
    for r in rows:
        split = (f"{r['frame_encoder_ms']:.2f}+{r['clip_head_ms']:.2f} / {r['whole_clip_ms']:.2f} ({r['split_shift']})"
                 if "whole_clip_ms" in r else "n/a")
        ratio = f"{r['per_new_frame_ratio']:.3f} {iqr(r['per_new_frame_ratio_iqr'])}" if "per_new_frame_ratio" in r else "n/a"
        print(f"| {r['preset']} | {r['rounds']} | {r['aknet_ms']:.2f} | {r['tsm_ms']:.2f} | {r['latency_ratio']:.3f} "
              f"{iqr(r['latency_ratio_iqr'])} | {r['flops_ratio']:.3f} | {split} | {ratio} |")
    if any("breakdown" in r for r in rows):
        print("\nWhere the time goes: shared encoder, AK-Net's head (its 1D stages + scoring, selection and ranking), "
              "TSM's later 2D stages\n")
        print("| preset | encoder ms | AK head ms | of which 1D stages ms | score+select+rank ms | TSM later stages ms | "
              "score+select+rank / savings | latency ratio if score+select+rank were free |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            b = r.get("breakdown")
            if b:
                print(f"| {r['preset']} | {b['encoder_ms']:.2f} | {b['head_ms']:.3f} | {b['head_convs_ms']:.3f} | "
                      f"{b['score_select_rank_ms']:.3f} | {b['tsm_later_ms']:.3f} | {b['share_of_savings']:.2f} | "
                      f"{b['ratio_if_selection_free']:.3f} {iqr(b['ratio_if_selection_free_iqr'])} |")
    atomic_write_text(args.out, json.dumps({"machine": machine, "command": " ".join(["python"] + sys.argv), "rows": rows},
                                           indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
