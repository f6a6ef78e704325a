"""Clip sources for training and evaluation: the synthetic generator or a labelled folder.

A labelled folder has one sub-folder per class, each holding video files or
frame folders. Clips are read as T frames spread evenly over the video and
preprocessed by :func:`aknet_edge.preprocess.preprocess_clip`, the runtime's
own function.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .config import ClipSpec
from .errors import DataError
from .preprocess import preprocess_batch, preprocess_clip

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def read_clip(path: str | Path, frames: int) -> np.ndarray:
    """``frames`` RGB uint8 frames spread evenly over a video file or a folder of images."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"frame folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        picks = np.linspace(0, len(files) - 1, frames).round().astype(int)
        out = []
        for i in picks:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"cannot decode image {files[i]}")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return _same_size(out, path)
    cap = cv2.VideoCapture(str(path))
    try:
        decoded = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            decoded.append(img)
    finally:
        cap.release()
    if not decoded:
        raise DataError(f"cannot read any frame from video {path}")
    picks = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
    return _same_size([cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB) for i in picks], path)


def _same_size(frames: list[np.ndarray], source: Path) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataError(f"{source}: frames differ in size {sorted(shapes)}")
    return np.stack(frames)


@dataclass(frozen=True)
class LabelledFolder:
    """Clip paths and labels found under ``root/<class>/<clip>``."""

    root: Path
    classes: tuple[str, ...]
    items: tuple[tuple[Path, int], ...]

    @classmethod
    def scan(cls, root: str | Path, classes: tuple[str, ...] | None = None) -> "LabelledFolder":
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist; expected one sub-folder per class")
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        classes = tuple(classes) if classes else tuple(found)
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{root} has class folders {extra} that the model's labels {list(classes)} lack")
        items = []
        for label, name in enumerate(classes):
            d = root / name
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES:
                    items.append((p, label))
        if not items:
            raise DataError(
                f"no clips under {root}: expected <class>/<video file> or <class>/<frame folder>/ "
                f"(videos: {', '.join(sorted(VIDEO_SUFFIXES))})"
            )
        return cls(root, classes, tuple(items))

    def load(self, spec: ClipSpec) -> tuple[np.ndarray, np.ndarray, int]:
        """All clips preprocessed, labels, and how many unreadable clips were skipped."""
        xs, ys, bad = [], [], 0
        for path, label in self.items:
            try:
                xs.append(preprocess_clip(read_clip(path, spec.frames), spec))
                ys.append(label)
            except DataError as exc:
                bad += 1
                log.warning("skipping unreadable clip: %s", exc)
        if not xs:
            raise DataError(f"all {len(self.items)} clips under {self.root} were unreadable")
        return np.stack(xs), np.asarray(ys, dtype=np.int64), bad


def synthetic_batches(
    spec: ClipSpec, n_per_class: int, seed: int, batch: int, shuffle: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fresh synthetic clips for one epoch, preprocessed, in batches."""
    from .synthetic import make_dataset

    clips, labels = make_dataset(n_per_class, seed=seed, frames=spec.frames, size=spec.size)
    order = np.random.default_rng(seed).permutation(len(labels)) if shuffle else np.arange(len(labels))
    for i in range(0, len(order), batch):
        sel = order[i : i + batch]
        yield preprocess_batch(clips[sel], spec), labels[sel]


def array_batches(
    x: np.ndarray, y: np.ndarray, batch: int, seed: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng(seed).permutation(len(y)) if seed is not None else np.arange(len(y))
    for i in range(0, len(order), batch):
        sel = order[i : i + batch]
        yield x[sel], y[sel]


# seeds of the held-out evaluation set; training seeds are small epoch numbers
HELDOUT_SEED = 1_000_003
