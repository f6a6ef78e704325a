"""Procedural synthetic action clips and long videos with ground-truth segments.

No dataset can be downloaded where this toolkit is built and tested, so the
training, calibration and runtime tests run on clips drawn here: one scene
(background, static distractors, one asymmetric main object) per clip, and an
action applied to the object over a phase ``p`` in [0, 1].

The classes come in mirrored pairs (left/right, up/down, cw/ccw,
approach/recede, appear/disappear) whose frames are the same set played in the
opposite order, so a model must use temporal order to tell them apart; a
single frame or an order-free pooling of frames cannot.

Only numpy and OpenCV are used (no torch), and everything is deterministic
given the seed. Rendering precomputes the background once per scene and draws
the object per frame with anti-aliased ``cv2.fillPoly``, so a 112x112 frame
costs a fraction of a millisecond.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .config import SYNTHETIC_CLASSES
from .errors import AknetError, ConfigError, DataError
from .media import FOURCC

__all__ = [
    "CLASSES",
    "SceneStyle",
    "Segment",
    "VideoWriteError",
    "iter_long_video",
    "load_segments",
    "make_clip",
    "make_dataset",
    "SCENES",
    "SmallActorStyle",
    "make_small_actor_clip",
    "render_action",
    "segments_path",
    "write_long_video",
]

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = SYNTHETIC_CLASSES  # defined in the ground (config), which the demo preset reads
SCENES: tuple[str, ...] = ("single", "small-actor")  # make_clip's scenes, and make_small_actor_clip's

# image coordinates: x to the right, y down, so "up" is -y
_MOVE_DIRS: dict[str, tuple[float, float]] = {
    "move_left": (-1.0, 0.0),
    "move_right": (1.0, 0.0),
    "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0),
}

_SEGMENTS_SUFFIX = ".segments.json"
# how long one action lasts, in seconds: the segments of a long video, and the actions training clips sample from
ACTION_SECONDS: tuple[float, float] = (2.0, 3.0)
_MIN_SIZE = 16
_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing
_ONE = float(1 << _SHIFT)


class VideoWriteError(AknetError, OSError):
    """OpenCV could not open or write the requested video file."""


@dataclass(frozen=True)
class SceneStyle:
    """Appearance knobs of a scene; defaults are the training distribution.

    ``noise`` is the std of per-frame gaussian pixel noise (0 for exact,
    noise-free renders in tests), ``distractors`` the maximum number of static
    distractor shapes, ``texture`` whether blurred-noise backgrounds may occur.
    """

    noise: float = 6.0
    distractors: int = 2
    texture: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.noise, (int, float)) and math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"SceneStyle.noise must be a finite number >= 0, got {self.noise!r}")
        d = self.distractors
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ConfigError(f"SceneStyle.distractors must be an int >= 0, got {self.distractors!r}")


@dataclass(frozen=True)
class Segment:
    """One action of a long video, ``start`` inclusive and ``end`` exclusive, in seconds."""

    label: int
    name: str
    start: float
    end: float


# --------------------------------------------------------------------------- checks


def _check_label(label: int) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < len(CLASSES):
        raise ConfigError(
            f"unknown label index {label!r}: expected an int in [0, {len(CLASSES) - 1}] (see synthetic.CLASSES)"
        )
    return int(label)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_style(style: SceneStyle) -> SceneStyle:
    if not isinstance(style, SceneStyle):
        raise ConfigError(f"style must be a SceneStyle, got {type(style).__name__}")
    return style


# --------------------------------------------------------------------------- scene


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _contrasting_colour(rng: np.random.Generator, ref: np.ndarray, min_dist: float) -> np.ndarray:
    """A random colour far from ``ref`` in RGB and in brightness, so the object stays visible."""
    for _ in range(32):
        c = rng.integers(0, 256, size=3).astype(np.float64)
        if np.abs(c - ref).sum() >= min_dist and abs(_luma(c) - _luma(ref)) >= min_dist / 5:
            return c
    return np.where(ref > 127, 20.0, 235.0)  # fallback: the opposite corner of the cube


def _background(rng: np.random.Generator, size: int, texture: bool, kind: int | None = None) -> np.ndarray:
    """Flat (kind 0), gradient (1) or blurred-noise (2) background as float32 (size, size, 3); random kind
    unless given."""
    if kind is None:
        kind = int(rng.integers(0, 3 if texture else 2))
    base = rng.uniform(0, 255, size=3)
    if kind == 0:
        return np.broadcast_to(base.astype(np.float32), (size, size, 3)).copy()
    if kind == 1:
        other = np.clip(base + rng.uniform(-90, 90, size=3), 0, 255)
        ang = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        g = math.cos(ang) * ramp[None, :] + math.sin(ang) * ramp[:, None]
        g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
        return (base[None, None, :] * (1 - g[..., None]) + other[None, None, :] * g[..., None]).astype(np.float32)
    cells = int(rng.integers(4, 12))
    amp = rng.uniform(15, 40)
    small = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    tex = cv2.GaussianBlur(tex, (0, 0), sigmaX=size / 40)
    base = np.clip(base, amp, 255 - amp)
    return np.clip(base[None, None, :] + amp * tex, 0, 255).astype(np.float32)


def _shape_points(rng: np.random.Generator) -> np.ndarray:
    """Outline of a random asymmetric shape, unit extent, centred near the origin, (N, 2)."""
    kind = int(rng.integers(0, 5))
    if kind == 0:  # polygon with 3..6 vertices
        n = int(rng.integers(3, 7))
        ang = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(-0.35, 0.35, n) * (2 * math.pi / n)
        rad = rng.uniform(0.65, 1.0, n)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    elif kind == 1:  # ellipse
        a, b = 1.0, rng.uniform(0.45, 0.75)
        t = np.linspace(0, 2 * math.pi, 28, endpoint=False)
        pts = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    elif kind == 2:  # rectangle
        a, b = 1.0, rng.uniform(0.4, 0.8)
        pts = np.array([[-a, -b], [a, -b], [a, b], [-a, b]], dtype=np.float64)
    elif kind == 3:  # cross with one long arm
        w = rng.uniform(0.22, 0.35)
        left, up, down = rng.uniform(0.55, 0.8, 3)
        right = 1.0
        pts = np.array(
            [[-w, -up], [w, -up], [w, -w], [right, -w], [right, w], [w, w],
             [w, down], [-w, down], [-w, w], [-left, w], [-left, -w], [-w, -w]],
            dtype=np.float64,
        )
    else:  # "L"
        w = rng.uniform(0.3, 0.45)
        h = rng.uniform(0.8, 1.0)
        x, y = -1.0 + 2 * w, h - 2 * w
        pts = np.array([[-1.0, -h], [x, -h], [x, y], [1.0, y], [1.0, h], [-1.0, h]])
    pts = pts - pts.mean(axis=0)
    return pts / np.linalg.norm(pts, axis=1).max()


def _circle_points(cx: float, cy: float, r: float, n: int = 14) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _fill(img: np.ndarray, pts: np.ndarray, colour: tuple[float, float, float]) -> None:
    cv2.fillPoly(img, [np.round(pts * _ONE).astype(np.int32)], colour, lineType=cv2.LINE_AA, shift=_SHIFT)


def _draw_object(frame: np.ndarray, body: np.ndarray, marker: np.ndarray, colours: tuple, centre: np.ndarray,
                 angle: float, scale: float, alpha: float = 1.0) -> None:
    """Draw one object (body and orientation marker) at a pose, blended by ``alpha``."""
    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[c, s], [-s, c]]) * scale  # row-vector form of R(angle) * scale
    target = frame if alpha >= 1 else frame.copy()
    _fill(target, body @ m + centre, colours[0])
    _fill(target, marker @ m + centre, colours[1])
    if alpha < 1:
        cv2.addWeighted(target, float(alpha), frame, 1.0 - float(alpha), 0.0, dst=frame)


def _object_colours(rng: np.random.Generator, ref: np.ndarray) -> tuple:
    """The object's colour, far from ``ref``, and its marker's: near-black on a light object, near-white on a dark."""
    colour = _contrasting_colour(rng, ref, 200.0)
    marker = np.full(3, 10.0) if _luma(colour) > 110 else np.full(3, 245.0)
    return tuple(float(v) for v in colour), tuple(float(v) for v in marker)


@dataclass(frozen=True)
class _Scene:
    background: np.ndarray  # uint8 (size, size, 3) RGB, distractors included
    body: np.ndarray  # (N, 2) unit-extent outline
    marker: np.ndarray  # (M, 2) outline of the orientation marker, same frame
    colour: tuple[float, float, float]
    marker_colour: tuple[float, float, float]
    radius: float  # pixels, at scale 1


def _make_scene(rng: np.random.Generator, size: int, style: SceneStyle) -> _Scene:
    """Draw the static part of a scene once, so per-frame work is only the object."""
    bg = _background(rng, size, style.texture)
    bg_mean = bg[::4, ::4].reshape(-1, 3).mean(axis=0)
    n_dis = int(rng.integers(0, style.distractors + 1))
    for _ in range(n_dis):
        pts = _shape_points(rng)
        r = rng.uniform(0.06, 0.12) * size
        ang = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        centre = rng.uniform(0.1, 0.9, size=2) * size
        col = _contrasting_colour(rng, bg_mean, 90.0)
        _fill(bg, pts @ rot.T * r + centre, tuple(float(v) for v in col))
    background = np.clip(bg, 0, 255).astype(np.uint8)

    body = _shape_points(rng)
    colour, marker_colour = _object_colours(rng, bg_mean)
    # the marker sits at the far end of the +x axis: a dot that makes every shape
    # asymmetric, so a rotation is always visible
    marker = _circle_points(0.62, 0.0, rng.uniform(0.2, 0.28))
    radius = rng.uniform(0.10, 0.175) * size  # diameter 20-35 % of the frame
    return _Scene(
        background=background,
        body=body,
        marker=marker,
        colour=colour,
        marker_colour=marker_colour,
        radius=float(radius),
    )


# --------------------------------------------------------------------------- action


@dataclass(frozen=True)
class _Motion:
    """Object pose as a function of phase: centre, angle (rad, + is clockwise on screen), scale, alpha."""

    c0: np.ndarray
    c1: np.ndarray
    a0: float
    a1: float
    s0: float
    s1: float
    on: float  # alpha ramps 0->1 over [on, on + fade] (appear) ...
    off: float  # ... and 1->0 over [off - fade, off] (disappear)
    fade: float
    jitter: float  # px std of per-frame object jitter

    def alpha(self, p: np.ndarray) -> np.ndarray:
        f = max(self.fade, 1e-6)
        a_in = np.clip((p - self.on) / f, 0, 1) if self.on > 0 else np.ones_like(p)
        a_out = np.clip((self.off - p) / f, 0, 1) if self.off < 1 else np.ones_like(p)
        return a_in * a_out


def _place(rng: np.random.Generator, size: int, margin: float, delta: np.ndarray) -> np.ndarray:
    """Random start centre so that centre and centre + delta both keep ``margin`` from the borders."""
    lo = margin - np.minimum(delta, 0)
    hi = size - margin - np.maximum(delta, 0)
    hi = np.maximum(hi, lo)  # too tight: degrade to the only feasible-ish value
    return rng.uniform(lo, hi)


def _make_motion(name: str, rng: np.random.Generator, size: int, radius: float) -> _Motion:
    """Sample the amount of the action (its speed) and a start pose keeping the object mostly in frame."""
    a0 = rng.uniform(0, 2 * math.pi)
    a1, s0, s1, on, off, fade = a0, 1.0, 1.0, 0.0, 1.0, 0.0
    delta = np.zeros(2)
    jitter = 0.3
    if name in _MOVE_DIRS:
        delta = np.array(_MOVE_DIRS[name]) * rng.uniform(0.3, 0.5) * size
    elif name in ("rotate_cw", "rotate_ccw"):
        turn = math.radians(rng.uniform(90.0, 180.0))
        a1 = a0 + (turn if name == "rotate_cw" else -turn)
    elif name in ("approach", "recede"):
        small, big = rng.uniform(0.45, 0.6), rng.uniform(1.2, 1.4)
        s0, s1 = (small, big) if name == "approach" else (big, small)
    elif name == "appear":
        on = rng.uniform(0.3, 0.45)
        fade = rng.choice([0.0, rng.uniform(0.05, 0.15)])
    elif name == "disappear":
        off = 1.0 - rng.uniform(0.3, 0.45)
        fade = rng.choice([0.0, rng.uniform(0.05, 0.15)])
    elif name == "no_action":
        jitter = rng.uniform(0.3, 0.8)
    c0 = _place(rng, size, 0.85 * radius * max(s0, s1), delta)
    return _Motion(c0=c0, c1=c0 + delta, a0=a0, a1=a1, s0=s0, s1=s1, on=on, off=off, fade=float(fade), jitter=jitter)


def _check_times(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ConfigError(f"times must be a non-empty 1-D array of phases, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or t.min() < -1e-9 or t.max() > 1 + 1e-9:
        raise ConfigError(f"times must be phases in [0, 1], got range [{t.min()}, {t.max()}]")
    return np.clip(t, 0.0, 1.0)


def render_action(
    label: int,
    rng: np.random.Generator,
    times: np.ndarray,
    size: int,
    style: SceneStyle = SceneStyle(),
) -> np.ndarray:
    """Render one random scene performing ``CLASSES[label]`` at phases ``times``.

    Returns uint8 (len(times), size, size, 3) RGB. The scene and the action's
    amount are drawn from ``rng`` before anything that depends on
    ``len(times)``, so two calls with equally seeded generators show the same
    scene whatever phases they ask for.
    """
    label = _check_label(label)
    size = _check_int("size", size, _MIN_SIZE)
    style = _check_style(style)
    p = _check_times(times)
    name = CLASSES[label]

    scene = _make_scene(rng, size, style)
    motion = _make_motion(name, rng, size, scene.radius)
    jit = np.clip(rng.normal(0.0, motion.jitter, size=(p.size, 2)), -1.5, 1.5)

    centres = motion.c0[None, :] * (1 - p[:, None]) + motion.c1[None, :] * p[:, None] + jit
    angles = motion.a0 + (motion.a1 - motion.a0) * p
    scales = (motion.s0 + (motion.s1 - motion.s0) * p) * scene.radius
    alphas = motion.alpha(p)

    out = np.empty((p.size, size, size, 3), dtype=np.uint8)
    for i in range(p.size):
        frame = out[i]
        frame[...] = scene.background
        if alphas[i] > 0:
            _draw_object(frame, scene.body, scene.marker, (scene.colour, scene.marker_colour), centres[i], angles[i],
                         scales[i], float(alphas[i]))

    if style.noise > 0:
        _add_noise(out, rng, float(style.noise))
    return out


_NOISE_BANK_LEN = 1 << 21
_noise_bank: np.ndarray | None = None


def _get_noise_bank() -> np.ndarray:
    """A fixed bank of N(0, 1) float32 samples, drawn once per process.

    Drawing fresh gaussians costs ~0.5 ms per 112x112 frame, more than the
    rest of rendering together; a slice of this bank at a random offset (drawn
    from the clip's rng, so still deterministic) costs ~0.07 ms.
    """
    global _noise_bank
    if _noise_bank is None:
        _noise_bank = np.random.default_rng(0x0015E).standard_normal(_NOISE_BANK_LEN, dtype=np.float32)
    return _noise_bank


def _add_noise(frames: np.ndarray, rng: np.random.Generator, std: float) -> None:
    """Add gaussian noise of std ``std`` to uint8 ``frames`` (T, H, W, 3) in place, rounding and clipping."""
    n = frames[0].size
    bank = _get_noise_bank()
    if 4 * n > bank.size:  # frames too large for the bank to give varied slices
        noisy = rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(std) + frames + np.float32(0.5)
        frames[...] = np.clip(noisy, 0, 255.5)
        return
    offsets = rng.integers(0, bank.size - n, size=len(frames))
    for frame, off in zip(frames, offsets):
        f = bank[off : off + n].reshape(frame.shape) * np.float32(std)
        f += frame
        f += np.float32(0.5)  # the uint8 store truncates: +0.5 makes it round
        np.clip(f, 0, 255.5, out=f)
        frame[...] = f


# --------------------------------------------------------------------------- clips


def _clip_rng(label: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, label])


def make_clip(
    label: int,
    seed: int,
    frames: int = 8,
    size: int = 112,
    style: SceneStyle = SceneStyle(),
    span_s: float | None = None,
) -> np.ndarray:
    """One training clip of ``CLASSES[label]``, uint8 (frames, size, size, 3) RGB, deterministic by (label, seed).

    With ``span_s`` (what training, evaluation and calibration pass: the model's clip span) the clip is
    what the runtime's window sees of a real action: the action lasts :data:`ACTION_SECONDS` (as in
    :func:`iter_long_video`), and the T samples are ``span_s / (T - 1)`` apart
    (:func:`aknet_edge.sampling.sample_period`) from a random start inside it, so a 2 s window covers
    two thirds to all of a 2-3 s action. Without it, the phases are spread over the whole action
    (start in [0, 0.1], end in [0.9, 1]): the 0.2.0 behaviour, kept for callers that ask for it.
    """
    label = _check_label(label)
    seed = _check_int("seed", seed, 0)
    frames = _check_int("frames", frames, 1)
    rng = _clip_rng(label, seed)
    return render_action(label, rng, _clip_phases(rng, frames, span_s), size, style)


def _clip_phases(rng: np.random.Generator, frames: int, span_s: float | None) -> np.ndarray:
    """The phases of its action a clip samples (see :func:`make_clip`)."""
    if span_s is None:
        start, end = rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)
        return np.linspace(start, end, frames) if frames > 1 else np.array([start])
    from .sampling import sample_period

    period = sample_period(frames, span_s)
    duration = rng.uniform(*ACTION_SECONDS)
    offset = rng.uniform(0.0, max(0.0, duration - span_s))
    return np.clip((offset + period * np.arange(frames)) / duration, 0.0, 1.0)


def _dataset_clip_seed(seed: int, index: int) -> int:
    """A 63-bit seed per (dataset seed, index), so distinct dataset seeds give disjoint clips."""
    return int(np.random.SeedSequence([seed, index, 0x5EED]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def make_dataset(
    n_per_class: int,
    seed: int,
    frames: int = 8,
    size: int = 112,
    style: SceneStyle = SceneStyle(),
    span_s: float | None = None,
    scene: str = "single",
) -> tuple[np.ndarray, np.ndarray]:
    """A balanced set of ``n_per_class`` clips per class, labels interleaved (0, 1, ..., 10, 0, 1, ...).

    Returns clips uint8 (n, frames, size, size, 3) and labels int64 (n,). Clip
    ``i`` equals ``make_clip(labels[i], <seed derived from (seed, i)>, span_s=span_s)``, or with
    ``scene="small-actor"`` ``make_small_actor_clip(...)`` (``style`` then does not apply).
    """
    n_per_class = _check_int("n_per_class", n_per_class, 0)
    seed = _check_int("seed", seed, 0)
    frames = _check_int("frames", frames, 1)
    size = _check_int("size", size, _MIN_SIZE)
    if scene not in SCENES:
        raise ConfigError(f"scene={scene!r}: expected one of {', '.join(SCENES)}")
    n = n_per_class * len(CLASSES)
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    clips = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    for i in range(n):
        clip_seed = _dataset_clip_seed(seed, i)
        if scene == "small-actor":
            clips[i] = make_small_actor_clip(int(labels[i]), clip_seed, frames, size, span_s=span_s)
        else:
            clips[i] = make_clip(int(labels[i]), clip_seed, frames, size, style, span_s)
    logger.debug("made %d synthetic %s clips (seed %d, %d frames at %dpx)", n, scene, seed, frames, size)
    return clips, labels


# --------------------------------------------------------------------------- small actors in large frames


@dataclass(frozen=True)
class SmallActorStyle:
    """A small actor in a large, cluttered frame: the case a whole-frame network must pay full resolution for.

    The scene is drawn at ``scene_size`` (the camera) and resized to the model's size, as the runtime resizes
    camera frames. The actor acts inside a box of ``actor_frac`` of the frame side (the object itself is 20-35 %
    of that box, as in :func:`make_clip`), over a textured background with ``clutter`` static shapes and
    ``distractors`` moving ones. Distractors look like actors (same shapes, sizes and orientation marker) but
    only shake: each sample jumps independently within ``shake_frac`` of the box side and turns up to 25
    degrees, so none of them performs a class (no net motion, turn, scale or fade) and the label stays the
    actor's alone.
    """

    scene_size: int = 224
    actor_frac: float = 0.25
    clutter: tuple[int, int] = (4, 8)
    distractors: tuple[int, int] = (2, 4)
    shake_frac: float = 0.12
    noise: float = 6.0

    def __post_init__(self) -> None:
        if not (isinstance(self.scene_size, int) and self.scene_size >= 4 * _MIN_SIZE):
            raise ConfigError(f"SmallActorStyle.scene_size must be an int >= {4 * _MIN_SIZE}, got {self.scene_size!r}")
        if not 0.05 <= self.actor_frac <= 1.0:
            raise ConfigError(f"SmallActorStyle.actor_frac must lie in [0.05, 1], got {self.actor_frac!r}")
        for name in ("clutter", "distractors"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"SmallActorStyle.{name} must be a range (lo, hi) with 0 <= lo <= hi")


def make_small_actor_clip(
    label: int,
    seed: int,
    frames: int = 8,
    size: int = 224,
    span_s: float | None = None,
    style: SmallActorStyle = SmallActorStyle(),
) -> np.ndarray:
    """One clip of ``CLASSES[label]`` done by a small actor in a large cluttered frame, uint8 (frames, size,
    size, 3) RGB, deterministic by (label, seed). Time sampling as in :func:`make_clip`."""
    label = _check_label(label)
    seed = _check_int("seed", seed, 0)
    frames = _check_int("frames", frames, 1)
    size = _check_int("size", size, _MIN_SIZE)
    if not isinstance(style, SmallActorStyle):
        raise ConfigError(f"style must be a SmallActorStyle, got {type(style).__name__}")
    rng = np.random.default_rng([seed, label, 0x5A11])
    p = _clip_phases(rng, frames, span_s)
    S = style.scene_size
    box = style.actor_frac * S
    # static clutter on a textured background (always textured: the blurred-noise kind of _background)
    bg = _background(rng, S, True, kind=2)
    ref = bg[::4, ::4].reshape(-1, 3).mean(axis=0)
    for _ in range(int(rng.integers(style.clutter[0], style.clutter[1] + 1))):
        ang = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        r = rng.uniform(0.03, 0.09) * S
        _fill(bg, _shape_points(rng) @ rot.T * r + rng.uniform(0, S, size=2), tuple(float(v) for v in
                                                                                  _contrasting_colour(rng, ref, 90.0)))
    background = np.clip(bg, 0, 255).astype(np.uint8)
    # the actor: an object of make_clip's kind acting inside its box, the box somewhere in the frame
    body, marker = _shape_points(rng), _circle_points(0.62, 0.0, rng.uniform(0.2, 0.28))
    colours = _object_colours(rng, ref)
    radius = rng.uniform(0.10, 0.175) * box
    motion = _make_motion(CLASSES[label], rng, int(round(box)), radius)
    origin = rng.uniform(0, S - box, size=2)
    jit = np.clip(rng.normal(0.0, motion.jitter, size=(p.size, 2)), -1.5, 1.5)
    centres = origin + motion.c0[None, :] * (1 - p[:, None]) + motion.c1[None, :] * p[:, None] + jit
    angles = motion.a0 + (motion.a1 - motion.a0) * p
    scales = (motion.s0 + (motion.s1 - motion.s0) * p) * radius
    alphas = motion.alpha(p)
    # distractors: the same kind of object, shaking in place
    shakers = []
    for _ in range(int(rng.integers(style.distractors[0], style.distractors[1] + 1))):
        shakers.append((_shape_points(rng), _circle_points(0.62, 0.0, rng.uniform(0.2, 0.28)), _object_colours(rng, ref),
                        rng.uniform(0.10, 0.175) * box, rng.uniform(0.1 * S, 0.9 * S, size=2), rng.uniform(0, 2 * math.pi)))
    shake = style.shake_frac * box
    out = np.empty((p.size, S, S, 3), dtype=np.uint8)
    for i in range(p.size):
        frame = out[i]
        frame[...] = background
        for d_body, d_marker, d_col, d_r, d_c, d_a in shakers:
            _draw_object(frame, d_body, d_marker, d_col, d_c + rng.uniform(-shake, shake, size=2),
                         d_a + math.radians(rng.uniform(-25, 25)), d_r)
        if alphas[i] > 0:
            _draw_object(frame, body, marker, colours, centres[i], angles[i], scales[i], float(alphas[i]))
    if style.noise > 0:
        _add_noise(out, rng, float(style.noise))
    if size == S:
        return out
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in out])


# --------------------------------------------------------------------------- long videos


def _plan_labels(rng: np.random.Generator, n_segments: int) -> list[int]:
    """Random classes, never the same twice in a row, with at least one no_action when n >= 2."""
    labels: list[int] = []
    prev = -1
    for _ in range(n_segments):
        if prev != 0 and rng.random() < 0.3:
            lab = 0
        else:
            choices = [c for c in range(1, len(CLASSES)) if c != prev]
            lab = int(rng.choice(choices))
        labels.append(lab)
        prev = lab
    if n_segments >= 2 and 0 not in labels:
        labels[int(rng.integers(0, n_segments))] = 0  # neighbours are actions, so no repeat appears
    return labels


def iter_long_video(
    seed: int,
    n_segments: int,
    fps: float = 15.0,
    size: int = 112,
    seg_seconds: tuple[float, float] = ACTION_SECONDS,
    style: SceneStyle = SceneStyle(),
) -> tuple[list[Segment], Iterator[tuple[float, np.ndarray]]]:
    """A long video of consecutive actions, each in a new scene, with its ground truth.

    Segment boundaries fall on frame times (multiples of 1/fps), so frame ``k``
    at ``k / fps`` belongs to exactly one segment (start inclusive, end
    exclusive). Frames are rendered one segment at a time when the iterator is
    consumed; the segment list is available at once.
    """
    seed = _check_int("seed", seed, 0)
    n_segments = _check_int("n_segments", n_segments, 1)
    size = _check_int("size", size, _MIN_SIZE)
    style = _check_style(style)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be a finite number > 0, got {fps!r}")
    try:
        lo, hi = (float(v) for v in seg_seconds)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"seg_seconds must be a pair (min, max) of seconds, got {seg_seconds!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ConfigError(f"seg_seconds must satisfy 0 < min <= max, got {seg_seconds!r}")

    plan_rng = np.random.default_rng([seed, 0x10A6])
    labels = _plan_labels(plan_rng, n_segments)
    bounds = [0]
    for _ in labels:
        bounds.append(bounds[-1] + max(2, int(round(plan_rng.uniform(lo, hi) * fps))))
    segments = [
        Segment(label=lab, name=CLASSES[lab], start=bounds[i] / fps, end=bounds[i + 1] / fps)
        for i, lab in enumerate(labels)
    ]

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        for i, lab in enumerate(labels):
            f0, f1 = bounds[i], bounds[i + 1]
            phases = np.arange(f1 - f0, dtype=np.float64) / (f1 - f0)  # (t - start) / (end - start)
            clip = render_action(lab, np.random.default_rng([seed, i, lab]), phases, size, style)
            for k in range(f1 - f0):
                yield (f0 + k) / fps, clip[k]

    return segments, frames()


def segments_path(path: str | os.PathLike[str]) -> Path:
    """Where the ground truth of video ``path`` lives: ``<path>.segments.json``."""
    p = Path(path)
    return p if p.name.endswith(_SEGMENTS_SUFFIX) else p.with_name(p.name + _SEGMENTS_SUFFIX)


def _atomic_tmp(target: Path, suffix: str) -> Path:
    """A fresh hidden name next to ``target`` (same file system, so os.replace is atomic).

    Not created here: VideoWriter creates it with the usual permissions
    (mkstemp's would be 0600), and it keeps ``suffix`` so OpenCV picks the container.
    """
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{suffix}")


def write_long_video(
    path: str | os.PathLike[str],
    seed: int,
    n_segments: int,
    fps: float = 15.0,
    size: int = 112,
    seg_seconds: tuple[float, float] = ACTION_SECONDS,
    style: SceneStyle = SceneStyle(),
) -> list[Segment]:
    """Write ``iter_long_video(...)`` as a real video file plus ``<path>.segments.json``.

    Both files are written to temporaries in the same folder and renamed at the
    end, so a crash never leaves a half-written video or ground truth behind.
    The container follows the suffix: ``.avi`` (MJPG) or ``.mp4`` (mp4v).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FOURCC:
        raise ConfigError(
            f"unsupported video suffix {target.suffix!r} for {target}: "
            f"expected one of {', '.join(sorted(FOURCC))}"
        )
    if not target.parent.is_dir():
        raise VideoWriteError(f"cannot write {target}: folder {target.parent} does not exist")
    segments, frames = iter_long_video(seed, n_segments, fps, size, seg_seconds, style)

    tmp_video = _atomic_tmp(target, suffix)
    n_written = 0
    try:
        fourcc = cv2.VideoWriter_fourcc(*FOURCC[suffix])
        writer = cv2.VideoWriter(str(tmp_video), fourcc, float(fps), (size, size), True)
        if not writer.isOpened():
            raise VideoWriteError(
                f"cv2.VideoWriter could not open {target} with fourcc {FOURCC[suffix]!r}; "
                f"this OpenCV build may lack the encoder, try another suffix ({', '.join(sorted(FOURCC))})"
            )
        try:
            for _, rgb in frames:
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                n_written += 1
        finally:
            writer.release()
        if tmp_video.stat().st_size == 0:
            raise VideoWriteError(f"cv2.VideoWriter wrote nothing to {target} ({n_written} frames given)")

        meta = {"fps": float(fps), "size": int(size), "segments": [asdict(s) for s in segments]}
        seg_target = segments_path(target)
        tmp_json = _atomic_tmp(seg_target, ".json")
        try:
            with open(tmp_json, "x", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=1)
            os.replace(tmp_video, target)
            os.replace(tmp_json, seg_target)
        finally:
            tmp_json.unlink(missing_ok=True)
    finally:
        tmp_video.unlink(missing_ok=True)
    logger.info("wrote %s: %d frames, %d segments, %.2f s", target, n_written, len(segments), segments[-1].end)
    return segments


def load_segments(path: str | os.PathLike[str]) -> list[Segment]:
    """Read the ground truth written by :func:`write_long_video` (pass the video or the JSON path)."""
    p = segments_path(path)
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"no segments file {p}: expected the JSON written by write_long_video") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read segments file {p}: {exc}") from exc
    try:
        return [
            Segment(label=int(d["label"]), name=str(d["name"]), start=float(d["start"]), end=float(d["end"]))
            for d in meta["segments"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"malformed segments file {p}: expected {{'segments': [{{label, name, start, end}}, ...], 'fps', 'size'}}"
        ) from exc
