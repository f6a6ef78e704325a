"""Drawing a result onto a frame: label, confidence, FPS, latency, and the kept keypoints.

Why keypoints as dots: AK-Net decides from a few spatio-temporal keypoints;
showing where and, by colour, when in the window they were found makes a
decision inspectable. A keypoint is ``(time_s, x_px, y_px, score)`` (what
:class:`~aknet_edge.runtime.recognizer.Result` and the JSON Lines carry); its
colour runs along :data:`TIME_RAMP` from the window's start (oldest) to its
newest sample. The preview page draws its legend from the same ramp.

Why scale up: a 112-pixel camera (the synthetic demo) shown at its size has
no room for readable text; ``min_side`` draws on a copy enlarged by a whole
factor (pixels stay sharp; the model's input is not touched). Text lines are
measured, stacked with gaps and shrunk to fit the width, so they never overlap
at any frame size.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

# oldest -> newest sample of the window, RGB (the page's legend reads the same stops)
TIME_RAMP: Tuple[Tuple[int, int, int], ...] = ((40, 110, 255), (0, 210, 220), (250, 220, 0), (255, 40, 40))
DISPLAY_MIN_SIDE = 480  # the preview draws on frames at least this many pixels on their short side
DISPLAY_MAX_SIDE = 1280  # and at most this many on their long side
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_SCALE = 0.3  # about 7 px cap height: the smallest text worth drawing


def keypoint_colour(t_s: float, window_start: float, window_end: float) -> Tuple[int, int, int]:
    """BGR colour of a keypoint at ``t_s`` in the window [``window_start``, ``window_end``] (clipped)."""
    span = window_end - window_start
    a = 1.0 if span <= 0 else min(1.0, max(0.0, (t_s - window_start) / span))
    pos = a * (len(TIME_RAMP) - 1)
    i = min(int(pos), len(TIME_RAMP) - 2)
    f = pos - i
    r, g, b = (int(round(c0 + (c1 - c0) * f)) for c0, c1 in zip(TIME_RAMP[i], TIME_RAMP[i + 1]))
    return (b, g, r)


def display_factor(height: int, width: int, min_side: int) -> int:
    """The whole factor that brings the short side to at least ``min_side`` pixels (1: no scaling)."""
    short = min(height, width)
    if min_side <= 0 or short <= 0 or short >= min_side:
        return 1
    return int(math.ceil(min_side / short))


def display_scale(height: int, width: int, min_side: int = 0, max_side: int = 0) -> float:
    """The display scale: :func:`display_factor` up to ``min_side``, then down so the long side is at most
    ``max_side`` (0: no limit). Large frames shrink for the preview: less to encode and to send."""
    f: float = display_factor(height, width, min_side)
    if max_side > 0 and max(height, width) * f > max_side:
        f = max_side / max(height, width)
    return f


def resize_for_display(image_bgr: np.ndarray, min_side: int = 0, max_side: int = 0) -> Tuple[np.ndarray, float]:
    """``image_bgr`` at :func:`display_scale` and that scale; the image itself (contiguous) when it is 1.

    Whole enlargements repeat pixels (sharp, as the camera sent them); reductions average them.
    """
    img = np.ascontiguousarray(image_bgr)
    h, w = img.shape[:2]
    f = display_scale(h, w, min_side, max_side)
    if f == 1:
        return img, f
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    how = cv2.INTER_NEAREST if f > 1 and float(f).is_integer() else cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=how), f


def text_layout(lines: Sequence[str], width: int, height: int) -> List[Tuple[str, Tuple[int, int], float, int,
                                                                             Tuple[int, int, int, int]]]:
    """Where each text line goes: ``(text, origin, font_scale, thickness, box)``, ``box`` = (x0, y0, x1, y1).

    The first line (the label) is larger; every line is shrunk until it fits the width, and cut short
    (ending in "..") where even the smallest readable size does not fit; boxes are stacked top-down with
    a gap, so they never overlap. Lines that would run past the bottom are left out.
    """
    pad = max(2, int(round(min(width, height) * 0.015)))
    target = max(9.0, min(width, height) * 0.06)  # the label's cap height in pixels
    out = []
    y = pad
    for i, text in enumerate(lines):
        px = target if i == 0 else target * 0.72
        scale = px / 22.0  # HERSHEY_SIMPLEX: about 22 px cap height at scale 1
        thick = max(1, int(round(scale * 1.6)))
        while True:
            (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
            if tw <= width - 2 * pad:
                break
            if scale > _MIN_SCALE:  # smaller first, down to a size still readable
                scale = max(_MIN_SCALE, scale * 0.9)
                thick = max(1, int(round(scale * 1.6)))
            elif len(text) > 3:  # then shorter: the end of the text gives way to ".."
                text = text[:-3].rstrip() + ".."
            else:
                break
        # the outline is drawn thick + 2 wide: the box includes it
        halo = (thick + 2) // 2 + 1
        box = (pad - halo, y, pad + tw + halo, y + th + base + 2 * halo)
        if box[3] > height:
            break
        out.append((text, (pad, y + halo + th), scale, thick, box))
        y = box[3] + pad
    return out


def draw_overlay(image_bgr: np.ndarray, result: object, max_points: int = 64,
                 keypoints: Optional[Sequence[Tuple[float, float, float, float]]] = None,
                 min_side: int = 0, max_side: int = 0) -> np.ndarray:
    """A copy of ``image_bgr`` (H, W, 3 uint8, BGR) with ``result`` drawn on it.

    ``keypoints`` replaces ``result.keypoints`` (e.g. rescaled for a frame of another size); they are
    ``(time_s, x_px, y_px, score)`` in ``image_bgr``'s pixels, none for a model without keypoints.
    ``min_side`` > 0 enlarges a smaller frame by a whole factor before drawing, ``max_side`` > 0 shrinks
    a larger one (the preview uses :data:`DISPLAY_MIN_SIDE` and :data:`DISPLAY_MAX_SIDE`); 0 and 0 keep
    the frame's size (the output video).
    """
    img, f = resize_for_display(image_bgr, min_side, max_side)
    if f == 1:  # drawn on a copy: the caller's frame stays as it was
        img = img.copy()
    h, w = img.shape[:2]
    start = float(getattr(result, "window_start", 0.0))
    end = float(getattr(result, "timestamp", start))
    kps = list(getattr(result, "keypoints", []) if keypoints is None else keypoints)[:max_points]
    radius = max(2, int(round(min(w, h) / 110)))
    # oldest first, so the newest points end up on top where they overlap
    for t_s, x, y, _score in sorted(kps, key=lambda p: p[0]):
        centre = (int(round(x * f)), int(round(y * f)))
        cv2.circle(img, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(img, centre, radius, keypoint_colour(t_s, start, end), -1, cv2.LINE_AA)
    lines = [f"{getattr(result, 'label', '?')} {float(getattr(result, 'confidence', 0.0)):.2f}",
             f"{float(getattr(result, 'fps', 0.0)):.1f} fps  {float(getattr(result, 'latency_ms', 0.0)):.0f} ms"]
    layout = text_layout(lines, w, h)
    if layout:  # a dark band under the text: readable on any background
        x1 = max(b[2] for *_, b in layout)
        y1 = layout[-1][4][3]
        band = img[0:min(h, y1 + 1), 0:min(w, x1 + 1)]
        band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for text, org, scale, thick, _box in layout:
        cv2.putText(img, text, org, _FONT, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, org, _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


__all__ = ["DISPLAY_MAX_SIDE", "DISPLAY_MIN_SIDE", "TIME_RAMP", "display_factor", "display_scale", "draw_overlay",
           "keypoint_colour", "resize_for_display", "text_layout"]
