"""Triton vs in process: camera-steps per second and step latency for 1 and N cameras, same results.

One grid step of C cameras, carried-state streaming, on the same frames (camera-sized BGR, resized at the edge):

* ``triton``: :class:`aknet_edge.runtime.triton_client.TritonStream` sends each camera's uint8 frame to
  ``aknet_stream`` on a real ``tritonserver`` on 127.0.0.1 (``tests/peers/triton_server.py``; pip's
  nvidia-pytriton with Triton's ONNX Runtime backend from ../shared/triton), all C requests at once so the
  sequence batcher (Oldest) can batch them; the server preprocesses, encodes, keeps the ring and runs the head.
* ``in-process``: ONNX Runtime in this process, batched as the multi-camera recogniser batches carried-state
  steps: preprocess C frames, one encoder call with C rows (each camera's shift state one row), one head call
  on the C windows (runtime/backends.py ``encode_frame``/``head``; the capture, sampling and events around
  them are left out of both sides).

Reported per camera count: camera-steps/s, p50/p95 of one step's wall time (all C cameras), tensor bytes on
the wire per camera-step (frame out; logits, keypoints, scores, steps and corrid back; gRPC framing adds a
few dozen bytes), and the largest logit difference between the two paths (windows full only). Server and
client share this machine's cores: compare only within one run. Prints a table and writes
``bench/results/triton_bench.json``.

    python bench/triton_bench.py                       # 1 and 8 cameras, 60 steps each
    python bench/triton_bench.py --steps 12 --cameras 1 8    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "peers"))


def _pct(xs: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")


def run_triton(stream: Any, frames: np.ndarray, warm: int) -> Dict[str, Any]:
    """frames (steps, C, H, W, 3) -> timings and logits (steps, C, classes; NaN until full)."""
    steps, cams = frames.shape[:2]
    lat, logits = [], np.full((steps, cams, len(stream.package.labels)), np.nan, np.float32)
    before = stream.stats()
    t0 = None
    for k in range(steps):
        if k == warm:
            t0 = time.perf_counter()
            before = stream.stats()
        t = time.perf_counter()
        res = stream.step_many([(c, frames[k, c], "BGR") for c in range(cams)])
        if k >= warm:
            lat.append(time.perf_counter() - t)
        for c, r in enumerate(res):
            if r is None:
                raise RuntimeError("the Triton server went away during the benchmark")
            if r.output is not None:
                logits[k, c] = r.output.logits[0]
    total = time.perf_counter() - t0
    after = stream.stats()
    n = (steps - warm) * cams
    return {"camera_steps_per_s": n / total, "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95),
            "bytes_out_per_step": (after.bytes_sent - before.bytes_sent) / n,
            "bytes_in_per_step": (after.bytes_received - before.bytes_received) / n, "logits": logits}


def run_local(backend: Any, frames: np.ndarray, warm: int) -> Dict[str, Any]:
    from aknet_edge.preprocess import preprocess_frame

    spec = backend.package.clip_spec
    steps, cams = frames.shape[:2]
    T = spec.frames
    state = backend.zero_state(cams)
    ring = np.zeros((cams, T, *backend.package.io("frame_encoder").outputs[0].static_shape), np.float32)
    batch = np.empty((cams, 3, spec.size, spec.size), np.float32)
    lat, logits = [], np.full((steps, cams, len(backend.package.labels)), np.nan, np.float32)
    t0 = None
    for k in range(steps):
        if k == warm:
            t0 = time.perf_counter()
        t = time.perf_counter()
        for c in range(cams):
            preprocess_frame(frames[k, c], spec, "BGR", out=batch[c])
        feats, state = backend.encode_frame(batch, state)
        ring[:, :-1] = ring[:, 1:]
        ring[:, -1] = feats
        if k >= T - 1:
            logits[k] = backend.head(ring).logits
        if k >= warm:
            lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    n = (steps - warm) * cams
    return {"camera_steps_per_s": n / total, "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95),
            "bytes_out_per_step": 0.0, "bytes_in_per_step": 0.0, "logits": logits}


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", help="model package (default: the bundled demo package)")
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=60, help="grid steps per camera count (after --warm)")
    p.add_argument("--warm", type=int, default=10, help="steps not timed (the window fills at T)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per camera count, the two paths alternating "
                   "which goes first; the median round is reported")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads, server and in process")
    p.add_argument("--frame-size", default="240x320", help="camera frames HxW (resized at the edge)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "triton_bench.json"))
    args = p.parse_args(argv)

    import triton_server

    from aknet_edge import package as pk
    from aknet_edge.runtime.backends import OnnxRuntimeBackend
    from aknet_edge.runtime.triton_client import TritonStream
    from aknet_edge.triton_repo import write_triton_repo

    why = triton_server.unavailable()
    if why:
        print(f"error: no Triton server here: {why}", file=sys.stderr)
        return 2
    if args.package:
        pkg_dir = Path(args.package)
    else:
        from aknet_edge.run import demo_package

        pkg_dir = demo_package()
    package = pk.load(pkg_dir)
    h, w = (int(v) for v in args.frame_size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="triton_bench-"))
    write_triton_repo(pkg_dir, work / "repo", instance_kind="cpu", threads=args.threads,
                      stream_max_batch=max(args.cameras))
    server = triton_server.TritonServer(work / "repo", work).start()
    rows = []
    try:
        local = OnnxRuntimeBackend(package, threads=args.threads)
        rng = np.random.default_rng(0)
        seq = 1
        for cams in args.cameras:
            frames = rng.integers(0, 256, (args.warm + args.steps, cams, h, w, 3), dtype=np.uint8)
            runs: Dict[str, List[Dict[str, Any]]] = {"triton": [], "in-process": []}
            diff = 0.0
            for rnd in range(args.rounds):
                for name in (("triton", "in-process") if rnd % 2 == 0 else ("in-process", "triton")):
                    if name == "triton":
                        stream = TritonStream(package, server.grpc_url, sequence_base=seq).connect()
                        seq += cams  # fresh sequences every round
                        r = run_triton(stream, frames, args.warm)
                        stream.close()
                    else:
                        r = run_local(local, frames, args.warm)
                    runs[name].append(r)
                delta = np.abs(runs["triton"][-1]["logits"] - runs["in-process"][-1]["logits"])
                diff = max(diff, float(np.nanmax(delta)))
            for name, rs in runs.items():
                med = sorted(rs, key=lambda r: r["camera_steps_per_s"])[len(rs) // 2]
                rows.append({"path": name, "cameras": cams, **{k: round(v, 3) for k, v in med.items() if k != "logits"},
                             "max_logit_diff": diff})
    finally:
        server.stop()
    print(f"{'path':<11} {'cams':>4} {'cam-steps/s':>11} {'p50 ms':>7} {'p95 ms':>7} {'B out/step':>10} "
          f"{'B in/step':>9} {'max |dlogit|':>12}")
    for r in rows:
        print(f"{r['path']:<11} {r['cameras']:>4} {r['camera_steps_per_s']:>11.1f} {r['p50_ms']:>7.2f} "
              f"{r['p95_ms']:>7.2f} {r['bytes_out_per_step']:>10.0f} {r['bytes_in_per_step']:>9.0f} "
              f"{r['max_logit_diff']:>12.2e}")
    by = {(r["path"], r["cameras"]): r for r in rows}
    ratios = {c: by[("triton", c)]["camera_steps_per_s"] / by[("in-process", c)]["camera_steps_per_s"]
              for c in args.cameras}
    for c, ratio in ratios.items():
        print(f"{c} camera(s): Triton at {ratio:.2f}x the in-process camera-steps/s")
    result = {"machine": platform.platform(), "cpus": __import__("os").cpu_count(), "package": str(pkg_dir),
              "steps": args.steps, "warm": args.warm, "rounds": args.rounds, "threads": args.threads,
              "frame_size": [h, w],
              "in_process": "ONNX Runtime, carried state, one batched encoder + one batched head call per step",
              "rows": rows, "triton_over_in_process": {str(c): round(v, 3) for c, v in ratios.items()},
              "note": ("smoke run: too few steps for numbers to quote" if args.steps < 30 else
                       "server and client share this machine's cores; compare only within one run")}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
