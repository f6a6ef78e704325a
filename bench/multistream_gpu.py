"""The batched multi-camera step on a GPU, in PyTorch: one exact-incremental step for N cameras as one call
(frame encoder with parent rows + clip head on N windows) against N per-camera calls.

    python bench/multistream_gpu.py [--device cuda] [--iters 200]

Why PyTorch: it needs neither TensorRT nor onnxruntime-gpu, so it runs on any CUDA machine; a small model on a
GPU is launch-bound, and this measures what batching buys there before engines are built. The step is the
exact mode's worst case: every camera with L fresh chains forked from its own row (``backbone.fork_rows``
with ``parents``). Weights are random (time does not depend on them). Prints a table and writes
bench/results/multistream_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench(fn, sync, n: int, warm: int = 20) -> float:
    for _ in range(warm):
        fn()
    sync()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t) / n * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--streams", default="1,2,4,8,16")
    p.add_argument("--presets", default="demo-tiny,r50-paper")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "multistream_gpu.json"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    from aknet_edge.config import preset
    from aknet_edge.model import build_model

    dev = args.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    rows, res = [], {"device": name, "torch": torch.__version__, "iters": args.iters, "runs": []}
    for pre in args.presets.split(","):
        cfg = preset(pre, shift="online")
        m = build_model(cfg).to(dev).eval()
        base = m.encoder.init_state(1)
        layers, size, frames = len(base), cfg.clip.size, cfg.clip.frames
        with torch.no_grad():
            f, _ = m.encode_frame(torch.zeros(1, 3, size, size, device=dev), [b.to(dev) for b in base])
        for n in [int(s) for s in args.streams.split(",")]:
            x = torch.randn(n, 3, size, size, device=dev)
            one = [torch.randn(2 + i, *b.shape[1:], device=dev) for i, b in enumerate(base)]
            many = [torch.randn(n * (2 + i), *b.shape[1:], device=dev) for i, b in enumerate(base)]
            parents = torch.tensor(list(range(n)) + [c for _ in range(layers) for c in range(n)], dtype=torch.int32,
                                   device=dev)
            f1 = torch.randn(frames, *f.shape[1:], device=dev)
            fn = torch.randn(n * frames, *f.shape[1:], device=dev)

            def separate():
                with torch.no_grad():
                    for c in range(n):
                        m.encode_frame(x[c:c + 1], one)
                        m.head(f1)

            def batched():
                with torch.no_grad():
                    m.encode_frame(x, many, parents)
                    m.head(fn)

            a, b = bench(separate, sync, args.iters), bench(batched, sync, args.iters)
            res["runs"].append({"preset": pre, "streams": n, "separate_ms": a, "batched_ms": b, "speedup": a / b})
            rows.append(f"{pre:<10} {n:>7} {a:>12.2f} {b:>11.2f} {a / b:>8.2f}")
    print(f"{name}, torch {torch.__version__}: one exact step for N cameras (encoder, L chains each, + head)")
    print(f"{'preset':<10} {'streams':>7} {'separate ms':>12} {'batched ms':>11} {'speedup':>8}")
    print("\n".join(rows))
    from aknet_edge.io_utils import atomic_write_text

    out = atomic_write_text(args.out, json.dumps(res, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
