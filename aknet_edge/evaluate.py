"""``python -m aknet_edge.evaluate``: top-1 and cost of checkpoints on held-out clips.

With no arguments it evaluates the bundled demo AK-Net and the TSM baseline
trained the same way, on freshly generated synthetic clips whose seeds
training never used.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import graph_io
from .cli_common import CliParser, check_number, format_table, run_cli
from .config import WEIGHTS_DIR, ModelConfig
from .data import HELDOUT_SEED, LabelledFolder
from .errors import DataError
from .media import SYNTHETIC
from .package import INT8_WEIGHTS_SERVE, Accuracy, format_serves

EVAL_CLIPS_PER_CLASS = 30  # the build's held-out synthetic clips per class (330 clips for the demo's 11 classes)
DEMO_CHECKPOINTS = (WEIGHTS_DIR / "demo-tiny.safetensors", WEIGHTS_DIR / "demo-tiny-tsm.safetensors")


@dataclass
class EvalResult:
    """Accuracy of one model on one set, with its cost."""

    name: str
    arch: str
    top1: float
    clips: int
    per_class: dict[str, float]
    gflops: float
    mparams: float
    seconds: float


# -- held-out data ----------------------------------------------------------------------------------

def heldout_synthetic(cfg: ModelConfig, clips_per_class: int, seed: int = HELDOUT_SEED,
                      scene: str = "single") -> tuple[np.ndarray, np.ndarray]:
    """Synthetic clips (``scene``: see :data:`aknet_edge.synthetic.SCENES`) from seeds disjoint from every
    training seed, preprocessed."""
    from .preprocess import preprocess_batch
    from .synthetic import make_dataset

    clips, labels = make_dataset(clips_per_class, seed=seed, frames=cfg.clip.frames, size=cfg.clip.size,
                                 span_s=cfg.clip.span_s, scene=scene)
    return preprocess_batch(clips, cfg.clip), labels


def eval_set(cfg: ModelConfig, data: str = SYNTHETIC, clips_per_class: int = EVAL_CLIPS_PER_CLASS,
             seed: int = HELDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The one held-out set loader of the evaluate and build commands.

    ``data`` is ``synthetic`` (fresh clips from held-out seeds) or a labelled folder, read with the
    shared clip sampling (:mod:`aknet_edge.sampling`) exactly as training and the runtime read clips.
    """
    if data == SYNTHETIC:
        return heldout_synthetic(cfg, clips_per_class, seed)
    x, y, _ = LabelledFolder.scan(data, cfg.labels or None).load(cfg.clip)
    return x, y


# -- PyTorch checkpoints ----------------------------------------------------------------------------

def predict(model: Any, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Class predictions for preprocessed clips (B, T, 3, S, S)."""
    import torch

    from .model import logits_of

    model.eval()
    with torch.no_grad():
        out = [logits_of(model(torch.from_numpy(x[i : i + batch]))).argmax(1).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, name: str = "model") -> EvalResult:
    from .flops import count_cost

    cfg: ModelConfig = model.cfg
    start = time.time()
    pred = predict(model, x)
    elapsed = time.time() - start
    names = cfg.class_names
    per_class = {names[c]: float((pred[y == c] == c).mean()) for c in np.unique(y)}
    cost = count_cost(model, cfg)
    return EvalResult(name, cfg.arch, float((pred == y).mean()), len(y), per_class, cost.gflops, cost.mparams, elapsed)


def format_results(results: list[EvalResult]) -> str:
    rows = [("model", "arch", "clips", "top-1 %", "GFLOPs/clip", "Mparams")]
    for r in results:
        rows.append((r.name, r.arch, str(r.clips), f"{100 * r.top1:.2f}", f"{r.gflops:.3f}", f"{r.mparams:.3f}"))
    return format_table(rows, left=2)


# -- exported graphs (the build's accuracy table) ---------------------------------------------------

def run_onnx(path: Path, x: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Logits and keypoints of a whole-clip graph over clips, with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    logits, kps = [], []
    for i in range(0, len(x), batch):
        out = dict(zip(names, sess.run(names, {graph_io.CLIP_INPUT: x[i : i + batch]})))
        logits.append(out[graph_io.LOGITS])
        kps.append(out.get(graph_io.KEYPOINTS, np.zeros((len(out[graph_io.LOGITS]), 0, 3), np.float32)))
    return np.concatenate(logits), np.concatenate(kps)


def grid_positions(coords: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Normalised (t, y, x) keypoint coordinates back to integer grid cells (robust to FP16 rounding)."""
    t, h, w = grid
    scale = np.array([max(t - 1, 1), h, w], np.float32)
    offset = np.array([0.0, 0.5, 0.5], np.float32)
    return np.rint(coords.astype(np.float32) * scale - offset).astype(np.int64)


def keypoint_iou(a: np.ndarray, b: np.ndarray, grid: tuple[int, int, int]) -> float:
    """Mean over clips of |A & B| / |A | B| for the kept keypoint cells."""
    if a.shape[1] == 0:
        return 1.0
    ious = []
    for ka, kb in zip(grid_positions(a, grid), grid_positions(b, grid)):
        sa, sb = set(map(tuple, ka.tolist())), set(map(tuple, kb.tolist()))
        ious.append(len(sa & sb) / max(1, len(sa | sb)))
    return float(np.mean(ious))


def evaluate_variants(files: Mapping[str, Path], x: np.ndarray, y: np.ndarray, methods: Mapping[str, str],
                      grid: tuple[int, int, int], weights: Mapping[str, str] | None = None) -> list[Accuracy]:
    """Top-1, agreement with FP32 and keypoint-set overlap with FP32 for every graph (``files["fp32"]`` required).

    Keys are precisions, or ``precision:label`` for further graphs of that precision (another calibration
    method, or another INT8 weight form). ``weights`` maps keys of INT8 graphs to their weight form
    (``int8``: INT8 initializers, ``qdq``: Q -> DQ pairs on FP32 weights), recorded in the report.
    """
    weights = weights or {}
    ref_logits, ref_kp = run_onnx(files["fp32"], x)
    ref_pred = ref_logits.argmax(1)
    reports = []
    for name, path in files.items():
        logits, kp = (ref_logits, ref_kp) if name == "fp32" else run_onnx(path, x)
        pred = logits.argmax(1)
        reports.append(Accuracy(name.split(":")[0], path.name, float((pred == y).mean()),
                                float((pred == ref_pred).mean()), keypoint_iou(kp, ref_kp, grid), len(y),
                                methods.get(name), weights.get(name)))
    return reports


def weights_label(form: str | None) -> str:
    """How the accuracy table names an INT8 weight form, with the TensorRT versions it serves."""
    if form is None:
        return "-"
    what = {"int8": "INT8 initializers", "qdq": "Q->DQ on FP32"}.get(form, form)
    return f"{what} (TensorRT {format_serves(INT8_WEIGHTS_SERVE.get(form))})"


def format_accuracy(reports: list[Accuracy]) -> str:
    """The build's per-variant table."""
    rows = [("variant", "file", "top-1 %", "agree w/ FP32 %", "keypoint IoU", "calib", "weights")]
    for r in reports:
        rows.append((r.precision, r.file, f"{100 * r.top1:.2f}", f"{100 * r.agreement:.2f}", f"{r.keypoint_iou:.3f}",
                     r.calib_method or "-", weights_label(r.weights)))
    return format_table(rows, left=2)


def main(argv: list[str] | None = None) -> int:
    p = CliParser(prog="python -m aknet_edge.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="*", help="safetensors checkpoints (default: the bundled demo models)")
    p.add_argument("--data", default=SYNTHETIC, help=f"'{SYNTHETIC}' (held-out seeds) or a labelled clip folder")
    p.add_argument("--clips-per-class", type=int, default=100, help="synthetic held-out clips per class")
    p.add_argument("--seed", type=int, default=HELDOUT_SEED, help="held-out synthetic seed")
    p.add_argument("--per-class", action="store_true", help="also print per-class accuracy")
    p.add_argument("--json", help="write the results to this JSON file")
    args = p.parse_args(argv)
    check_number("--clips-per-class", args.clips_per_class, minimum=1, whole=True)
    check_number("--seed", args.seed, minimum=0, whole=True)
    if args.json:
        from .io_utils import check_writable

        check_writable(args.json, "--json")  # before the evaluation, not after it
    import torch

    torch.set_num_threads(2)  # the CLI's choice (measured fastest on our 2-core machines); library calls leave it
    from .checkpoint import load_checkpoint

    paths = [Path(c) for c in args.checkpoints] or [c for c in DEMO_CHECKPOINTS if c.exists()]
    if not paths:
        raise DataError("no checkpoints given and no bundled demo weights found; train one with python -m aknet_edge.train")
    results = []
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for path in paths:
        model = load_checkpoint(path)
        cfg: ModelConfig = model.cfg
        key = (cfg.clip, args.data)
        if key not in cache:
            cache[key] = eval_set(cfg, args.data, args.clips_per_class, args.seed)
        x, y = cache[key]
        results.append(evaluate(model, x, y, name=path.stem))
    where = f"held-out synthetic clips (seed {args.seed})" if args.data == SYNTHETIC else args.data
    print(f"top-1 on {where}; FLOPs counted by torch FlopCounterMode (2 per multiply-add), batch 1")
    print(format_results(results))
    if args.per_class:
        for r in results:
            print(f"{r.name}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r.per_class.items()))
    if args.json:
        from .io_utils import atomic_write_text

        atomic_write_text(args.json, json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
