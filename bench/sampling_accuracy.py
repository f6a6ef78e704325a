"""Demo accuracy on labelled *video* clips under the shared time sampling, against 0.2.0's even spread.

Since 0.3.0 a labelled clip is read as the runtime reads a live window
(``aknet_edge.sampling``: T samples ``span_s / (T - 1)`` apart from the first
frame); 0.2.0 spread T frames evenly over the whole video. The bundled weights
were trained on synthetic clips rendered straight to T frames, which neither
rule touches, so ``python -m aknet_edge.evaluate`` is unchanged; this bench
shows what the change means for clips stored as video files: a folder of the
synthetic actions written as 15 fps AVI files of several durations (each file
one whole action, as a trimmed labelled clip is), evaluated both ways with the
bundled model. Prints a table and writes ``bench/results/sampling_accuracy.json``.

    python bench/sampling_accuracy.py [--clips-per-class 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aknet_edge.checkpoint import load_checkpoint  # noqa: E402
from aknet_edge.cli_common import format_table  # noqa: E402
from aknet_edge.config import DEMO_WEIGHTS, ClipSpec  # noqa: E402
from aknet_edge.data import HELDOUT_SEED, LabelledFolder  # noqa: E402
from aknet_edge.evaluate import predict  # noqa: E402
from aknet_edge.io_utils import atomic_write_text  # noqa: E402
from aknet_edge.media import FOURCC  # noqa: E402
from aknet_edge.preprocess import preprocess_clip  # noqa: E402
from aknet_edge.synthetic import CLASSES, render_action  # noqa: E402

FPS = 15.0


def write_folder(root: Path, seconds: list, clips_per_class: int, seed: int, size: int) -> None:
    """One whole action per AVI file: phases 0..1 over ``seconds`` at 15 fps (as in the long synthetic videos)."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(clips_per_class):
            dur = float(seconds[0]) if len(seconds) == 1 else float(rng.uniform(*seconds))
            n = max(2, int(round(dur * FPS)))
            frames = render_action(label, np.random.default_rng([seed, label, i]), np.arange(n) / n, size)
            w = cv2.VideoWriter(str(root / name / f"{i:03d}.avi"), cv2.VideoWriter_fourcc(*FOURCC[".avi"]), FPS, (size, size))
            for f in frames:
                w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            w.release()


def even_spread_020(path: Path, frames: int) -> np.ndarray:
    """0.2.0's rule, kept here only as the baseline: T frames spread evenly over every decoded frame."""
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        decoded.append(img)
    cap.release()
    picks = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
    return np.stack([cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB) for i in picks])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips-per-class", type=int, default=10)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "sampling_accuracy.json"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    model = load_checkpoint(DEMO_WEIGHTS)
    spec: ClipSpec = model.cfg.clip
    settings = {"1.5 s": [1.5], "2.0 s (= span)": [2.0], "2-3 s (as the long videos' segments)": [2.0, 3.0],
                "3.0 s": [3.0], "4.0 s": [4.0]}
    rows, out = [("clip length", "clips", "0.2.0 even spread %", "shared time sampling %", "change (points)")], []
    for i, (name, seconds) in enumerate(settings.items()):
        with tempfile.TemporaryDirectory(prefix="aknet-sampling-") as tmp:
            root = Path(tmp)
            write_folder(root, seconds, args.clips_per_class, HELDOUT_SEED + i, spec.size)
            folder = LabelledFolder.scan(root, model.cfg.labels)
            x_new, y, _ = folder.load(spec)
            x_old = np.stack([preprocess_clip(even_spread_020(path, spec.frames), spec) for path, _ in folder.items])
            acc_old = float((predict(model, x_old) == y).mean())
            acc_new = float((predict(model, x_new) == y).mean())
        rows.append((name, str(len(y)), f"{100 * acc_old:.2f}", f"{100 * acc_new:.2f}",
                     f"{100 * (acc_new - acc_old):+.2f}"))
        out.append({"clip_length": name, "seconds": seconds, "clips": int(len(y)), "even_spread_020": acc_old,
                    "shared_time_sampling": acc_new})
    print(f"demo model {DEMO_WEIGHTS.name}, T={spec.frames} over span {spec.span_s} s, synthetic actions as {FPS:g} fps "
          "AVI files (one whole action per file)")
    print(format_table(rows))
    atomic_write_text(args.out, json.dumps({"command": " ".join(["python"] + sys.argv), "rows": out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
