"""PyTorch on one CUDA GPU: AK-Net against the TSM baseline, FP32 and FP16, eager and CUDA graphs, batch 1 and 8.

Why PyTorch and not TensorRT: TensorRT cannot be installed on our machines,
and a GPU is lent to a session only by chance, so this is the first evidence
of how AK-Net behaves on a GPU at all: what the point selection costs next to
the convolutions it saves, what launch overhead does at batch 1 (eager against
a captured CUDA graph), and whether the custom ops give the CPU reference's
answers on CUDA. It runs wherever PyTorch sees a CUDA device, and on the CPU
at tiny sizes (``--tiny --device cpu``, what CI runs) so that it cannot rot.

Side by side in one run, for ``demo-tiny`` (the bundled trained weights) and
``r50-paper`` (random weights, ResNet-50 at 224 px), AK-Net and TSM:

* **clip**: the whole-clip forward of a (B, T, 3, S, S) clip;
* **frame**: AK-Net's incremental step (the runtime's streaming split): one
  new frame through the frame encoder with its online shift state, its
  features written into the ring of the last T, and the clip head on the
  ring. Presets with offline shift use their online twin, as the runtime
  does. The TSM baseline has no streaming split (its later stages shift too).

each in FP32 (TF32 off: FP32 means FP32 here) and FP16 (weights and input in
half, ``model.half()``), eager and replayed from a CUDA graph, at batch 1 and
8. Every case is timed per call (CUDA events around one call, synchronised),
in rounds that take every case in turn, so drift hits all cases alike; the
table gives the median over all rounds. Peak memory is the caching
allocator's peak during a case's warm-up and capture.

Then the custom ops (``aknet::keypoint_select`` + ``keypoint_rank``, every
ranking criterion) on the device against the CPU reference on the same
inputs, with planted score ties (the tie rule: lower index first), at the demo
grid, the r50-paper grid and K = 4704 > 3840 (TensorRT's TopK limit); and the
trained demo AK-Net on synthetic clips: device FP32 and FP16 against CPU FP32
(logit difference, top-1 agreement, kept-keypoint IoU).

    python bench/gpu_bench.py                                  # on a GPU: < 5 min on one H100
    python bench/gpu_bench.py --tiny --device cpu --out /tmp/g.json   # CI: tiny sizes, CPU

Exit status 1 when a parity check fails (the table says which).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from aknet_edge import ops  # noqa: F401  (registers the aknet:: custom ops)
from aknet_edge.checkpoint import load_checkpoint
from aknet_edge.config import DEMO_WEIGHTS, WEIGHTS_DIR, ClipSpec, ModelConfig, preset
from aknet_edge.evaluate import keypoint_iou
from aknet_edge.io_utils import atomic_write_text
from aknet_edge.model import build_model
from aknet_edge.preprocess import preprocess_clip
from aknet_edge.synthetic import CLASSES, make_clip
from timing import machine_name  # bench/timing.py

PRESETS = ("demo-tiny", "r50-paper")
ARCHS = ("aknet", "tsm")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
BATCHES = (1, 8)
TINY_CLIP = ClipSpec(frames=4, size=32)  # CI: r50-paper's structure at a size a CPU runs in seconds
OPS_K_LARGE = 4704  # above TensorRT's TopK limit of 3840, on the r50-paper grid (N = 6272)
LOGIT_TOL = 1e-4  # device FP32 against CPU FP32, as the export's parity rule


@dataclass
class Case:
    """One timed configuration and its result."""

    preset: str
    arch: str
    step: str  # "clip" or "frame"
    precision: str
    batch: int
    mode: str  # "eager" or "graph"
    ms: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    graph_diff: float | None = None  # replay's first output against eager's, relative to its largest value
    error: str | None = None

    @property
    def key(self) -> tuple:
        return (self.preset, self.arch, self.step, self.precision, self.batch, self.mode)

    def median_ms(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None


class Clock:
    """Per-call wall time of device work: CUDA events on a GPU, the host clock on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def time_ms(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            self.start.record()
            fn()
            self.end.record()
            self.end.synchronize()
            return self.start.elapsed_time(self.end)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def model_for(name: str, arch: str, tiny: bool, step: str) -> torch.nn.Module:
    """The preset's model (eval mode, CPU): the demo's trained weights where they exist, else random."""
    overrides: dict = {"arch": arch}
    if tiny:
        overrides["clip"] = TINY_CLIP
    if step == "frame" and preset(name).shift == "offline":
        overrides["shift"] = "online"  # the runtime's streaming split needs online shift
    if name == "demo-tiny" and not tiny and step == "clip":
        path = DEMO_WEIGHTS if arch == "aknet" else WEIGHTS_DIR / "demo-tiny-tsm.safetensors"
        if path.exists():
            return load_checkpoint(path)
    if name == "demo-tiny" and not tiny and step == "frame":
        return load_checkpoint(DEMO_WEIGHTS)  # demo-tiny is online already: the same weights stream
    torch.manual_seed(0)
    return build_model(preset(name, **overrides)).eval()


def make_step(model: torch.nn.Module, step: str, batch: int, device: torch.device,
              dtype: torch.dtype) -> Callable[[], object]:
    """A no-argument callable on static device tensors (what a CUDA graph captures)."""
    cfg: ModelConfig = model.cfg
    gen = torch.Generator().manual_seed(batch)
    s, t = cfg.clip.size, cfg.clip.frames
    if step == "clip":
        x = torch.randn(batch, t, 3, s, s, generator=gen).to(device, dtype)
        return lambda: model(x)
    frame = torch.randn(batch, 3, s, s, generator=gen).to(device, dtype)
    states = [st.to(device, dtype) for st in model.encoder.init_state(batch)]
    with torch.no_grad():
        f, _ = model.encode_frame(frame, states)
    ring = torch.randn(batch, t, *f.shape[1:], generator=gen).to(device, dtype)

    def incremental() -> object:
        new, _ = model.encode_frame(frame, states)
        ring[:, -1].copy_(new)  # the newest slot of the ring (the runtime rotates an index; same copy)
        return model.head(ring.view(batch * t, *new.shape[1:]))

    return incremental


def _first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


def capture(fn: Callable[[], object], warmup: int) -> Callable[[], object]:
    """``fn`` captured into a CUDA graph after warm-up on a side stream (PyTorch's recipe); returns replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(3, warmup)):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> object:
        graph.replay()
        return out  # the closure keeps the static inputs (inside fn) and outputs alive as long as the graph

    replay.keep = fn  # type: ignore[attr-defined]
    return replay


def prepare(cases: list[Case], device: torch.device, tiny: bool, warmup: int) -> dict[tuple, Callable[[], object]]:
    """Build every case's callable (models shared per preset/arch/step/precision); failures are recorded."""
    runners: dict[tuple, Callable[[], object]] = {}
    models: dict[tuple, torch.nn.Module] = {}
    clock = Clock(device)
    for case in cases:
        mkey = (case.preset, case.arch, case.step, case.precision)
        try:
            if mkey not in models:
                base = model_for(case.preset, case.arch, tiny, case.step)
                models[mkey] = copy.deepcopy(base).to(device, PRECISIONS[case.precision]).eval()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                fn = make_step(models[mkey], case.step, case.batch, device, PRECISIONS[case.precision])
                if case.mode == "graph":
                    want = _first(fn()).float().clone()
                    fn = capture(fn, warmup)
                    got = _first(fn()).float()
                    case.graph_diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
                for _ in range(warmup):
                    fn()
            clock.sync()
            if device.type == "cuda":
                case.peak_mib = torch.cuda.max_memory_allocated() / 2**20
            runners[case.key] = fn
        except Exception as exc:  # noqa: BLE001 - a case that cannot run is reported, the others go on
            case.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return runners


def time_cases(cases: list[Case], runners: dict, device: torch.device, rounds: int, iters: int) -> None:
    """Rounds over all cases in turn; ``iters`` single-call timings per case per round."""
    clock = Clock(device)
    with torch.no_grad():
        for _ in range(rounds):
            for case in cases:
                fn = runners.get(case.key)
                if fn is None:
                    continue
                case.ms += [clock.time_ms(fn) for _ in range(iters)]


def plan(device: torch.device, presets: tuple[str, ...]) -> list[Case]:
    modes = ("eager", "graph") if device.type == "cuda" else ("eager",)  # CUDA graphs need CUDA
    cases = []
    for name in presets:
        for step in ("clip", "frame"):
            for arch in ARCHS if step == "clip" else ("aknet",):
                for precision in PRECISIONS:
                    for batch in BATCHES:
                        for mode in modes:
                            cases.append(Case(name, arch, step, precision, batch, mode))
    return cases


# -- custom ops on the device against the CPU reference ------------------------------------------

def ops_parity(device: torch.device, tiny: bool) -> list[dict]:
    """select + rank on ``device`` vs the CPU, every criterion, planted ties; times both."""
    rows = []
    sizes = []
    for name in PRESETS:
        cfg = preset(name, clip=TINY_CLIP) if tiny else preset(name)
        c = build_model(cfg).encoder.out_channels if tiny else {"demo-tiny": 64, "r50-paper": 512}[name]
        sizes.append((name, cfg.grid, c, cfg.num_keypoints))
    if not tiny:  # K above TensorRT's TopK limit, on the r50-paper grid
        name, grid, c, _ = sizes[-1]
        sizes.append((f"{name} K={OPS_K_LARGE}", grid, c, OPS_K_LARGE))
    clock_dev, clock_cpu = Clock(device), Clock(torch.device("cpu"))
    for label, grid, c, k in sizes:
        n = grid[0] * grid[1] * grid[2]
        gen = torch.Generator().manual_seed(n + k)
        feats = torch.randn(2, n, c, generator=gen)
        scores = torch.softmax(torch.randn(2, n, generator=gen) * 4, dim=1)
        scores[:, 10:40] = scores[:, 10:11]  # ties: the lower flat index must win, as on the CPU and in ONNX TopK
        scores[1] = torch.sort(scores[1], descending=True).values  # and a run of near-ties in order
        for criterion in ("score", "raster", "hilbert"):
            def run(f, s):
                kept, idx, ks = torch.ops.aknet.keypoint_select(f, s, k, 4.0)
                return torch.ops.aknet.keypoint_rank(kept, idx, ks, criterion, list(grid))

            ref = run(feats, scores)
            fd, sd = feats.to(device), scores.to(device)
            got = [t.cpu() for t in run(fd, sd)]
            cpu_ms = statistics.median(clock_cpu.time_ms(lambda: run(feats, scores)) for _ in range(5))
            for _ in range(3):
                run(fd, sd)
            dev_ms = statistics.median(clock_dev.time_ms(lambda: run(fd, sd)) for _ in range(20))
            same = bool(torch.equal(ref[1], got[1]))
            feat_err = float((ref[0] - got[0]).abs().max())
            score_err = float((ref[2] - got[2]).abs().max())
            rows.append({"size": label, "n": n, "k": k, "channels": c, "criterion": criterion, "same_indices": same,
                         "max_feature_diff": feat_err, "max_score_diff": score_err, "cpu_ms": cpu_ms,
                         "device_ms": dev_ms, "ok": same and feat_err <= 1e-5 and score_err <= 1e-7})
    return rows


# -- the trained demo model on the device against CPU FP32 ---------------------------------------

def model_parity(device: torch.device, clips: int) -> list[dict]:
    """Demo AK-Net, synthetic clips: device FP32/FP16 vs CPU FP32 (logits, top-1, kept keypoints)."""
    model = load_checkpoint(DEMO_WEIGHTS)
    cfg = model.cfg
    x = np.stack([preprocess_clip(make_clip(i % len(CLASSES), 1000 + i, cfg.clip.frames, cfg.clip.size,
                                            span_s=cfg.clip.span_s), cfg.clip) for i in range(clips)])
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref_logits, ref_kp, _ = model(xt)
    rows = []
    for precision, dtype in PRECISIONS.items():
        m = copy.deepcopy(model).to(device, dtype)
        with torch.no_grad():
            logits, kp, _ = m(xt.to(device, dtype))
        logits, kp = logits.float().cpu(), kp.float().cpu()
        diff = float((logits - ref_logits).abs().max())
        top1 = float((logits.argmax(1) == ref_logits.argmax(1)).float().mean())
        iou = keypoint_iou(ref_kp.numpy(), kp.numpy(), cfg.grid)
        ok = (diff <= LOGIT_TOL and iou == 1.0) if precision == "fp32" else True  # FP16: reported, not a gate
        rows.append({"precision": precision, "clips": clips, "max_logit_diff": diff, "top1_agreement": top1,
                     "keypoint_iou": iou, "ok": ok})
    return rows


# -- report --------------------------------------------------------------------------------------

def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return (f"{torch.cuda.get_device_name(device)} ({p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs), "
                f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    return f"CPU: {machine_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _ratio_table(by: dict, presets: list, title: str, num: tuple, den: tuple) -> list[str]:
    """A markdown table of median(num case) / median(den case) per preset, precision and batch, eager and graph."""
    lines = ["", title, "", "| preset | precision | batch | eager | CUDA graph |", "|---|---|---|---|---|"]
    for name in presets:
        for precision in PRECISIONS:
            for batch in BATCHES:
                cells = []
                for mode in ("eager", "graph"):
                    a, b = by.get((name, *num, precision, batch, mode)), by.get((name, *den, precision, batch, mode))
                    am, bm = (a.median_ms() if a else None), (b.median_ms() if b else None)
                    cells.append(_fmt(am / bm if am and bm else None, ".3f"))
                lines.append(f"| {name} | {precision} | {batch} | {cells[0]} | {cells[1]} |")
    return lines


def report(cases: list[Case], ops_rows: list[dict], parity_rows: list[dict], device: torch.device) -> str:
    by = {c.key: c for c in cases}
    lines = [f"Device: {device_line(device)}", "",
             "Latency: median ms per call (every case timed in turn, per call; FP32 with TF32 off). "
             "clips/s = batch / median; 'frame' = AK-Net's incremental step (one new frame + clip head)", "",
             "| preset | model | step | precision | batch | eager ms | CUDA graph ms | graph speed-up | clips/s | peak MiB | graph vs eager |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for c in cases:
        row = c.key[:5]
        if row in seen:
            continue
        seen.add(row)
        eager, graph = by.get(row + ("eager",)), by.get(row + ("graph",))
        e_ms, g_ms = eager.median_ms() if eager else None, graph.median_ms() if graph else None
        best = min(v for v in (e_ms, g_ms) if v is not None) if (e_ms or g_ms) else None
        err = "; ".join(x.error for x in (eager, graph) if x is not None and x.error)
        peak = max((x.peak_mib for x in (eager, graph) if x is not None and x.peak_mib is not None), default=None)
        name = "AK-Net" if c.arch == "aknet" else "TSM"
        lines.append(f"| {c.preset} | {name} | {c.step} | {c.precision} | {c.batch} | {_fmt(e_ms)} | {_fmt(g_ms)} | "
                     f"{_fmt(e_ms / g_ms if e_ms and g_ms else None)} | {_fmt(c.batch * 1e3 / best if best else None, '.0f')} | "
                     f"{_fmt(peak, '.0f')} | {_fmt(graph.graph_diff if graph else None, '.0e')} |"
                     + (f" error: {err}" if err else ""))
    presets = list(dict.fromkeys(c.preset for c in cases))
    lines += _ratio_table(by, presets, "AK-Net over TSM, whole clip (latency ratio; below 1 = AK-Net faster)",
                          ("aknet", "clip"), ("tsm", "clip"))
    lines += _ratio_table(by, presets, "Incremental step over the whole clip, AK-Net (per new frame; below 1 = "
                          "streaming saves)", ("aknet", "frame"), ("aknet", "clip"))
    lines += ["", f"Custom ops on {device.type} against the CPU reference (select + rank, batch 2, planted ties)", "",
              "| size | N | K | criterion | same indices | max feature diff | max score diff | CPU ms | device ms | ok |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ops_rows:
        lines.append(f"| {r['size']} | {r['n']} | {r['k']} | {r['criterion']} | {r['same_indices']} | "
                     f"{r['max_feature_diff']:.1e} | {r['max_score_diff']:.1e} | {r['cpu_ms']:.3f} | {r['device_ms']:.3f} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    if parity_rows:
        lines += ["", f"Trained demo AK-Net on {device.type} against CPU FP32 (synthetic clips)", "",
                  "| precision | clips | max logit diff | top-1 agreement | kept-keypoint IoU | ok |", "|---|---|---|---|---|---|"]
        for r in parity_rows:
            lines.append(f"| {r['precision']} | {r['clips']} | {r['max_logit_diff']:.2e} | {r['top1_agreement']:.3f} | "
                         f"{r['keypoint_iou']:.3f} | {'yes' if r['ok'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda when PyTorch sees one, else cpu)")
    p.add_argument("--tiny", action="store_true", help=f"tiny clips ({TINY_CLIP.frames}x{TINY_CLIP.size} px), random "
                   "weights, one short round: checks that the code runs (CI), measures nothing")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    p.add_argument("--rounds", type=int, default=None, help="rounds over all cases (default 5; 1 with --tiny)")
    p.add_argument("--iters", type=int, default=None, help="timed calls per case per round (default 20; 2 with --tiny)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per case (default 5; 1 with --tiny)")
    p.add_argument("--parity-clips", type=int, default=None, help="synthetic clips for the model parity (default 32)")
    p.add_argument("--out", default="bench/results/gpu_bench.json")
    args = p.parse_args(argv)
    try:
        device = torch.device(args.device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        print(f"error: --device {args.device} is not usable here ({str(exc).splitlines()[0]}); "
              "pass --device cpu (with --tiny) on a machine without CUDA", file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.tiny else 5)
    iters = args.iters or (2 if args.tiny else 20)
    warmup = args.warmup or (1 if args.tiny else 5)
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 means FP32 (PyTorch's cuDNN default would use TF32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    cases = plan(device, tuple(args.presets))
    runners = prepare(cases, device, args.tiny, warmup)
    time_cases(cases, runners, device, rounds, iters)
    t_cases = time.perf_counter() - t0
    ops_rows = ops_parity(device, args.tiny)
    parity_rows = model_parity(device, args.parity_clips or (4 if args.tiny else 32))
    text = report(cases, ops_rows, parity_rows, device)
    print(text)
    failed = [r for r in ops_rows + parity_rows if not r["ok"]]
    errors = [c for c in cases if c.error]
    result = {"device": device_line(device), "command": " ".join(["python"] + sys.argv), "tiny": args.tiny,
              "rounds": rounds, "iters": iters, "warmup": warmup, "seconds": time.perf_counter() - t0,
              "seconds_timing": t_cases,
              "cases": [{**asdict(c), "median_ms": c.median_ms()} for c in cases],
              "ops_parity": ops_rows, "model_parity": parity_rows, "table": text}
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"\n{len(cases) - len(errors)}/{len(cases)} cases ran, {len(failed)} parity failures, "
          f"{time.perf_counter() - t0:.0f} s; wrote {args.out}")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
