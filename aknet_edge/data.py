"""Clip sources for training and evaluation: the synthetic generator or a labelled folder.

A labelled folder has one sub-folder per class, each holding video files or
frame folders. Clips are sampled by time exactly as the runtime samples a live
window (:func:`aknet_edge.sampling.read_clip`) and preprocessed by
:func:`aknet_edge.preprocess.preprocess_clip`, the runtime's own function.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ClipSpec
from .errors import DataError
from .media import VIDEO_SUFFIXES, listing
from .preprocess import preprocess_batch, preprocess_clip
from .sampling import read_clip

log = logging.getLogger(__name__)


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
                f"(videos: {listing(VIDEO_SUFFIXES)})"
            )
        return cls(root, classes, tuple(items))

    def load(self, spec: ClipSpec) -> tuple[np.ndarray, np.ndarray, int]:
        """All clips preprocessed, labels, and how many unreadable clips were skipped."""
        xs, ys, bad = [], [], 0
        for path, label in self.items:
            try:
                xs.append(preprocess_clip(read_clip(path, spec), spec))
                ys.append(label)
            except DataError as exc:
                bad += 1
                log.warning("skipping unreadable clip: %s", exc)
        if not xs:
            raise DataError(f"all {len(self.items)} clips under {self.root} were unreadable")
        return np.stack(xs), np.asarray(ys, dtype=np.int64), bad


# how synthetic training clips see an action: "small-actor" is "window" sampling of a small actor in a large,
# cluttered frame (aknet_edge.synthetic.make_small_actor_clip)
SYNTHETIC_CLIPS = ("window", "whole", "small-actor")


def synthetic_batches(
    spec: ClipSpec, n_per_class: int, seed: int, batch: int, shuffle: bool = True, clips: str = "window"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fresh synthetic clips for one epoch, preprocessed, in batches.

    ``clips="window"``: sampled by time as the live window sees an action (:mod:`aknet_edge.sampling`; what
    evaluation and calibration use). ``"whole"``: spread over the whole action, an easier curriculum the demo's
    first training stages use (``bench/train_demo.sh``). ``"small-actor"``: window-sampled, one small actor in a
    large cluttered frame (``bench/small_actors.py``).
    """
    from .synthetic import make_dataset

    if clips not in SYNTHETIC_CLIPS:
        raise DataError(f"synthetic clips {clips!r}: expected one of {', '.join(SYNTHETIC_CLIPS)}")
    span = None if clips == "whole" else spec.span_s
    scene = "small-actor" if clips == "small-actor" else "single"
    clips_, labels = make_dataset(n_per_class, seed=seed, frames=spec.frames, size=spec.size, span_s=span, scene=scene)
    order = np.random.default_rng(seed).permutation(len(labels)) if shuffle else np.arange(len(labels))
    for i in range(0, len(order), batch):
        sel = order[i : i + batch]
        yield preprocess_batch(clips_[sel], spec), labels[sel]


def array_batches(
    x: np.ndarray, y: np.ndarray, batch: int, seed: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng(seed).permutation(len(y)) if seed is not None else np.arange(len(y))
    for i in range(0, len(order), batch):
        sel = order[i : i + batch]
        yield x[sel], y[sel]


# seeds of the held-out evaluation set; training seeds are small epoch numbers
HELDOUT_SEED = 1_000_003
