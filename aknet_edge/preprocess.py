"""The one preprocessing definition shared by training, calibration and the runtime.

NumPy + OpenCV only (no torch), so the runtime on a robot preprocesses frames
exactly as training did: resize to the clip size, reorder colour, scale to
[0, 1], normalise with the config's mean/std, lay out as (T, 3, S, S).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from .config import ClipSpec
from .errors import InputShapeError


def preprocess_clip(frames: np.ndarray | Sequence[np.ndarray], spec: ClipSpec, color: str = "RGB") -> np.ndarray:
    """uint8 frames (T, H, W, 3) in ``color`` order -> float32 (T, 3, S, S) model input."""
    if len(frames) != spec.frames:
        raise InputShapeError(f"expected {spec.frames} frames for one clip, got {len(frames)}")
    out = np.empty((spec.frames, 3, spec.size, spec.size), dtype=np.float32)
    for i, frame in enumerate(frames):
        preprocess_frame(frame, spec, color, out=out[i])
    return out


def preprocess_frame(frame: np.ndarray, spec: ClipSpec, color: str = "RGB", out: np.ndarray | None = None) -> np.ndarray:
    """One uint8 (H, W, 3) frame -> float32 (3, S, S), written into ``out`` when given.

    ``out`` lets a live runtime preprocess straight into its window buffer: a
    fresh 150 kB array per frame costs page faults that cost more than the maths.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputShapeError(
            f"expected a uint8 colour frame of shape (H, W, 3), got {frame.dtype} {frame.shape}"
        )
    if frame.shape[:2] != (spec.size, spec.size):
        interp = cv2.INTER_AREA if min(frame.shape[:2]) > spec.size else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (spec.size, spec.size), interpolation=interp)
    if color != spec.color:
        frame = frame[:, :, ::-1]
    scale, offset = _affine(spec.mean, spec.std)
    # (x / 255 - mean) / std as one multiply into the CHW output and one add in place: two passes over
    # the float data instead of four (cast, scale, shift, transpose); this runs on every live frame
    if out is None:
        out = np.empty((3, *frame.shape[:2]), np.float32)
    elif out.shape != (3, *frame.shape[:2]) or out.dtype != np.float32:
        raise InputShapeError(f"out must be float32 (3, {spec.size}, {spec.size}), got {out.dtype} {out.shape}")
    np.multiply(frame.transpose(2, 0, 1), scale[:, None, None], out=out)
    out += offset[:, None, None]
    return out


@lru_cache(maxsize=8)
def _affine(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    std_a = np.asarray(std, np.float32)
    return (1.0 / (255.0 * std_a)).astype(np.float32), (-np.asarray(mean, np.float32) / std_a).astype(np.float32)


def preprocess_batch(clips: np.ndarray, spec: ClipSpec, color: str = "RGB") -> np.ndarray:
    """uint8 (B, T, H, W, 3) -> float32 (B, T, 3, S, S); a fast path when frames are already S x S."""
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise InputShapeError(f"expected clips of shape (B, T, H, W, 3), got {clips.shape}")
    if clips.shape[2:4] != (spec.size, spec.size) or clips.dtype != np.uint8:
        return np.stack([preprocess_clip(c, spec, color) for c in clips])
    x = clips[..., ::-1] if color != spec.color else clips
    scale, offset = _affine(spec.mean, spec.std)
    x = x.astype(np.float32)
    x *= scale
    x += offset
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))
