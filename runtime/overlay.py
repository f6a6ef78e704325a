"""Drawing a result onto a frame: label, confidence, FPS, latency, and the kept keypoints.

Why keypoints as dots: AK-Net decides from a few spatio-temporal keypoints;
showing where (and, by colour, when in the window: blue = oldest, red = newest)
they were found makes a decision inspectable. The frame drawn on is the
window's sample nearest to the keypoints' mean time.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np


def draw_overlay(image_bgr: np.ndarray, result: object, max_points: int = 64,
                 keypoints: Optional[Sequence[Tuple[float, float, float, float]]] = None) -> np.ndarray:
    """A copy of ``image_bgr`` (H, W, 3 uint8, BGR) with ``result`` drawn on it.

    ``keypoints`` replaces ``result.keypoints`` (e.g. rescaled for a frame of another size); none
    are drawn for a model without keypoints.
    """
    img = np.ascontiguousarray(image_bgr).copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 480.0)
    thick = max(1, int(round(scale * 1.5)))
    kps = list(getattr(result, "keypoints", []) if keypoints is None else keypoints)[:max_points]
    span = max(1e-6, getattr(result, "timestamp", 0.0) - getattr(result, "window_start", 0.0))
    for t_s, x, y, _score in kps:
        a = float(np.clip((t_s - result.window_start) / span, 0, 1))  # type: ignore[attr-defined]
        colour = (int(255 * (1 - a)), 64, int(255 * a))
        cv2.circle(img, (int(round(x)), int(round(y))), max(2, thick + 1), colour, -1, cv2.LINE_AA)
    lines = [f"{result.label} {result.confidence:.2f}",  # type: ignore[attr-defined]
             f"{result.fps:.1f} fps  {result.latency_ms:.0f} ms"]  # type: ignore[attr-defined]
    y = int(22 * scale) + 4
    for text in lines:
        cv2.putText(img, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += int(24 * scale) + 4
    return img
