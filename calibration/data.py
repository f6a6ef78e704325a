"""Calibration clips: from videos, frame folders, a list file, or the synthetic generator.

Clips are preprocessed by :func:`aknet_edge.preprocess.preprocess_clip`, the
runtime's own function (the same object, re-exported here), so INT8 scales are
measured on exactly what the engine will see. The preprocessed set is cached
on disk, keyed by a hash of the files (path, size, mtime) and the settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aknet_edge.config import ClipSpec
from aknet_edge.errors import DataError
from aknet_edge.media import IMAGE_SUFFIXES, SYNTHETIC, VIDEO_SUFFIXES, listing
from aknet_edge.preprocess import preprocess_clip
from aknet_edge.sampling import FOLDER_FPS, SAMPLING_RULE, read_clip

from .options import DEFAULT_CLIPS

__all__ = ["CalibrationSet", "load_calibration_set", "preprocess_clip", "find_clips"]
log = logging.getLogger(__name__)
SYNTHETIC_CALIB_SEED = 2_000_017  # disjoint from training (small) and held-out evaluation seeds


@dataclass
class CalibrationSet:
    """Preprocessed clips (N, T, 3, S, S) float32 and how they were obtained."""

    clips: np.ndarray
    source: str
    skipped: int
    from_cache: bool


def find_clips(source: str | os.PathLike) -> list[Path]:
    """Video files and frame folders under a folder (recursively), or the paths listed in a text file."""
    src = Path(source)
    if not src.exists():
        raise DataError(f"calibration data {src} does not exist; give a folder of videos or frame folders, "
                        f"a text file listing them, or '{SYNTHETIC}'")
    if src.is_file():
        if src.suffix.lower() in VIDEO_SUFFIXES:
            return [src]
        try:
            lines = [ln.strip() for ln in src.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"calibration list file {src} is unreadable ({exc}); give a text file with one path per "
                            f"line, a folder of videos or frame folders, or '{SYNTHETIC}' (videos: "
                            f"{listing(VIDEO_SUFFIXES)})") from None
        paths = [(src.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln and not ln.startswith("#")]
        if not paths:
            raise DataError(f"list file {src} names no clips (one path per line expected)")
        return paths
    found: list[Path] = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rootp = Path(root)
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            found.append(rootp)  # a frame folder
            dirs[:] = []
            continue
        found += [rootp / f for f in sorted(files) if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    if not found:
        raise DataError(f"no videos or frame folders under {src} (videos: {listing(VIDEO_SUFFIXES)})")
    return found


def _fingerprint(paths: list[Path], spec: ClipSpec, n: int, seed: int) -> str:
    # the sampling rule is part of the key: clips cached under another rule (0.2.0 spread frames evenly over the
    # whole video) must not calibrate this one
    h = hashlib.sha256(json.dumps({"spec": asdict(spec), "n": n, "seed": seed, "sampling": SAMPLING_RULE,
                                   "folder_fps": FOLDER_FPS}, sort_keys=True).encode())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            if p.is_dir():
                for f in sorted(p.iterdir()):
                    fs = f.stat()
                    h.update(f"{f.name}|{fs.st_size}|{fs.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|missing\n".encode())
    return h.hexdigest()[:16]


def load_calibration_set(source: str, spec: ClipSpec, n_clips: int = DEFAULT_CLIPS, seed: int = 0,
                         cache_dir: str | os.PathLike | None = None, progress: bool = False) -> CalibrationSet:
    """Up to ``n_clips`` preprocessed clips, shuffled with ``seed``; unreadable clips are skipped and counted."""
    if n_clips < 1:
        raise DataError(f"--calib-clips {n_clips}: expected at least 1 clip")
    if source == SYNTHETIC:
        from aknet_edge.synthetic import CLASSES, make_dataset

        per_class = max(1, -(-n_clips // len(CLASSES)))
        clips, _ = make_dataset(per_class, seed=SYNTHETIC_CALIB_SEED + seed, frames=spec.frames, size=spec.size,
                                span_s=spec.span_s)
        order = np.random.default_rng(seed).permutation(len(clips))[:n_clips]
        x = np.stack([preprocess_clip(clips[i], spec) for i in order])
        return CalibrationSet(x, SYNTHETIC, 0, False)
    paths = find_clips(source)
    order = np.random.default_rng(seed).permutation(len(paths))
    paths = [paths[i] for i in order]
    key = _fingerprint(paths, spec, n_clips, seed)
    cache = Path(cache_dir) / f"calib-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        cached = _read_cache(cache, spec, n_clips)
        if cached is not None:
            clips, skipped_before = cached
            log.info("reusing cached calibration set %s (%d clips; data and settings unchanged)", cache, len(clips))
            return CalibrationSet(clips, str(source), skipped_before, True)
    from tqdm import tqdm

    xs, skipped = [], 0
    # a bar on a terminal only (disable=None): in a log file its carriage returns run into one line; the count is
    # logged below instead
    for p in tqdm(paths, desc="calibration clips", disable=None if progress else True, leave=False):
        if len(xs) >= n_clips:
            break
        try:
            xs.append(preprocess_clip(read_clip(p, spec), spec))
        except DataError as exc:
            skipped += 1
            log.warning("skipping unreadable calibration clip: %s", exc)
    if not xs:
        raise DataError(f"all {skipped} calibration clips under {source} were unreadable; check the files "
                        "open with OpenCV (ffmpeg backend) or use frame folders")
    if skipped:
        log.warning("%d unreadable calibration clip(s) skipped, %d used", skipped, len(xs))
    x = np.stack(xs)
    log.info("read %d calibration clips from %s", len(xs), source)
    if cache is not None:
        _write_cache(cache, x, skipped)
    return CalibrationSet(x, str(source), skipped, False)


def _read_cache(cache: Path, spec: ClipSpec, n_clips: int) -> tuple[np.ndarray, int] | None:
    """The cached clips and skip count, or None (with a warning, the file removed) when the cache is unusable.

    Never unpickles (``allow_pickle=False``): a cache is data, and a planted file must not run code. A
    truncated, garbage or foreign file is rebuilt instead of failing every later build.
    """
    try:
        with np.load(cache, allow_pickle=False) as z:
            clips, skipped = z["clips"], z["skipped"]
            shape = (spec.frames, 3, spec.size, spec.size)
            if clips.dtype != np.float32 or clips.ndim != 5 or tuple(clips.shape[1:]) != shape \
                    or not 1 <= len(clips) <= n_clips:
                raise ValueError(f"clips {clips.dtype} {tuple(clips.shape)}, expected float32 (1..{n_clips}, "
                                 f"{', '.join(map(str, shape))})")
            if skipped.shape != () or skipped.dtype.kind not in "iu" or int(skipped) < 0:
                raise ValueError(f"skipped {skipped.dtype} {skipped.shape}, expected one count")
            return np.ascontiguousarray(clips), int(skipped)
    except Exception as exc:  # noqa: BLE001 - zipfile, numpy and the OS raise many kinds for a bad file
        log.warning("calibration cache %s is unreadable or corrupt (%s: %s); rebuilding it", cache,
                    type(exc).__name__, exc)
    try:
        cache.unlink()
    except OSError:
        pass
    return None


def _write_cache(cache: Path, x: np.ndarray, skipped: int) -> None:
    """Save the preprocessed set atomically; a cache that cannot be written (disk full, read-only) is a warning
    and leaves no file behind: the build goes on without it."""
    from aknet_edge.io_utils import WriteError, atomic_write_with

    try:
        atomic_write_with(cache, lambda fh: np.savez(fh, clips=x, skipped=np.array(skipped)))
    except WriteError as exc:
        log.warning("calibration set not cached: %s", exc)
        return
    stale = [c for c in cache.parent.glob("calib-*.npz") if c != cache]
    if stale:
        log.info("calibration data or settings changed: rebuilt %s", cache.name)
