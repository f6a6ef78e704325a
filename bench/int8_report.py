"""INT8 and FP16 against FP32 with ONNX Runtime on the CPU: accuracy, keypoint overlap, speed.

One run, side by side: the FP32 graph, FP16, and INT8 Q/DQ with MinMax,
Entropy and Percentile (99.99) calibration, each INT8 once with the stem and the
scorer's feeding stage kept FP32 (the default) and once fully quantized, plus
Percentile at ONNX Runtime's own 99.999 and the previous default (only the
feeding stage in float) for comparison. Every variant is a set of module paths
(the model's ``float_modules("int8")`` declaration, or it less the stem and/or
the stage) mapped to graph nodes by ``nodes_of_modules``. Speed is the median batch-1 latency,
2 threads, all variants timed in interleaved blocks (bench/timing.py). Prints a
table and writes JSON.

    python bench/int8_report.py [--checkpoint aknet_edge/weights/demo-tiny.safetensors]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from aknet_edge.build import BASE_LOWERING
from aknet_edge.calibration import convert_fp16, load_calibration_set, quantize_int8
from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
from aknet_edge.evaluate import evaluate_variants, heldout_synthetic
from aknet_edge.graph_io import CLIP_INPUT
from aknet_edge.export.lower import lower
from aknet_edge.export.module_nodes import nodes_of_modules
from aknet_edge.export.onnx_export import to_onnx
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import STEM_CONV
from timing import interleaved_ms  # bench/timing.py

log = logging.getLogger("int8_report")


def float_module_ablations(model) -> dict[str, tuple[str, ...]]:
    """Label -> module paths kept FP32: the model's INT8 declaration, and it less the stem and/or the feeding stage.

    The keypoint path stays float in every variant (as in the build); "all
    quantized" means the whole encoder. Fails if the declaration no longer
    names the stem or the stage, so the labels cannot drift from what runs.
    """
    declared = model.float_modules("int8")
    stage = f"encoder.layer{model.cfg.cut}"
    missing = [p for p in (STEM_CONV, stage) if p not in declared]
    if missing:
        raise SystemExit(f"the model's INT8 float modules {declared} lack {missing}: update this report's variants")
    return {"stem + stage kept fp32": declared,
            "all quantized": tuple(p for p in declared if p not in (STEM_CONV, stage)),
            "only stage kept fp32": tuple(p for p in declared if p != STEM_CONV)}


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEMO_WEIGHTS))
    p.add_argument("--calib-clips", type=int, default=64)
    p.add_argument("--eval-clips-per-class", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30, help="at least this many timed runs per variant")
    p.add_argument("--seconds", type=float, default=30.0, help="or as many as fit in about this time, all variants")
    p.add_argument("--out", default="bench/results/int8_report.json")
    args = p.parse_args(argv)
    ort.set_default_logger_severity(3)
    model = load_checkpoint(args.checkpoint)
    cfg = model.cfg
    graph = lower(to_onnx(model), BASE_LOWERING)
    cal = load_calibration_set("synthetic", cfg.clip, args.calib_clips)
    x, y = heldout_synthetic(cfg, args.eval_clips_per_class)
    keep = {label: nodes_of_modules(graph, paths) for label, paths in float_module_ablations(model).items()}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        files = {"fp32": t / "fp32.onnx", "fp16": t / "fp16.onnx"}
        onnx.save(graph, files["fp32"])
        onnx.save(convert_fp16(graph, nodes_of_modules(graph, model.float_modules("fp16"))), files["fp16"])
        methods = {}
        default = keep["stem + stage kept fp32"]
        variants = [(m, label, keep[label], 99.99) for m in ("minmax", "entropy", "percentile")
                    for label in ("stem + stage kept fp32", "all quantized")]
        variants += [("percentile", "stem + stage kept fp32, 99.999", default, 99.999),
                     ("percentile", "only stage kept fp32", keep["only stage kept fp32"], 99.99)]
        weights = {}
        for i, (method, label, nodes, pct) in enumerate(variants):
            name = f"int8 {method}, {label}"
            files[name] = t / f"int8-{i}.onnx"
            log.info("%s: %d declared nodes kept fp32", name, len(nodes))
            onnx.save(quantize_int8(graph, cal.clips, method, nodes, pct), files[name])
            methods[name], weights[name] = method, "int8"
        # the build's default INT8 graph again in the form TensorRT 8.x takes: FP32 weights behind Q -> DQ pairs
        name = "int8 percentile, stem + stage kept fp32, Q->DQ weights (TensorRT 8.x)"
        files[name] = t / "int8-qdq.onnx"
        onnx.save(quantize_int8(graph, cal.clips, "percentile", default, 99.99, weights="qdq"), files[name])
        methods[name], weights[name] = "percentile", "qdq"
        reports = evaluate_variants(files, x, y, methods, cfg.grid, weights)
        one = x[:1]
        sessions = {name: _session(path, args.threads) for name, path in files.items()}
        lat, _ = interleaved_ms({name: (lambda s=s: s.run(None, {CLIP_INPUT: one})) for name, s in sessions.items()},
                                warmup=5, repeats=args.repeats, seconds=args.seconds)
    print(f"{args.checkpoint}: {len(y)} held-out synthetic clips, {len(cal.clips)} calibration clips; "
          f"ONNX Runtime {ort.__version__} CPU, batch 1, {args.threads} threads\n")
    print("| variant | top-1 % | agreement with FP32 % | keypoint IoU vs FP32 | latency ms | speed-up vs FP32 |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, r in zip(files, reports):
        rows.append({"variant": name, "top1": r.top1, "agreement": r.agreement, "keypoint_iou": r.keypoint_iou,
                     "latency_ms": lat[name], "speedup": lat["fp32"] / lat[name]})
        print(f"| {name} | {100 * r.top1:.2f} | {100 * r.agreement:.2f} | {r.keypoint_iou:.3f} | {lat[name]:.1f} | "
              f"{lat['fp32'] / lat[name]:.2f}x |")
    atomic_write_text(args.out, json.dumps({"command": " ".join(["python"] + sys.argv), "clips": int(len(y)),
                                            "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
