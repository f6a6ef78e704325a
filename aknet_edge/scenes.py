"""Synthetic scenes with several actors: each does its own actions in its own part of a larger frame.

Why: per-person recognition needs data whose boxes and labels are true. Each
actor is one of the generator's long videos (:func:`~aknet_edge.synthetic.iter_long_video`,
its own seed, its own sequence of actions) shown as a tile that drifts slowly
inside its own cell of a larger, textured frame. The tile's rectangle is the
actor's ground-truth box on every frame, and its segments are its labels, so a
detector's output can be replaced by the truth (``--tracks``) and per-actor
accuracy measured. Deterministic by seed.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError
from .synthetic import Segment, iter_long_video


@dataclass
class Actor:
    """One actor: its id, its actions (segments on the scene's clock) and its tile's path."""

    id: str
    segments: List[Segment]
    start_xy: Tuple[float, float]  # the tile's top-left corner at t = 0 (pixels)
    end_xy: Tuple[float, float]  # ... at the scene's end (a straight, slow drift)
    tile: int

    def box(self, t: float, duration: float) -> Tuple[int, int, int, int]:
        a = min(1.0, max(0.0, t / duration)) if duration > 0 else 0.0
        x = self.start_xy[0] + (self.end_xy[0] - self.start_xy[0]) * a
        y = self.start_xy[1] + (self.end_xy[1] - self.start_xy[1]) * a
        return int(round(x)), int(round(y)), self.tile, self.tile

    def label_at(self, t: float) -> Optional[str]:
        for s in self.segments:
            if s.start <= t < s.end:
                return s.name
        return None


@dataclass
class MultiActorScene:
    """The scene's actors, size and clock; :meth:`frames` renders it."""

    seed: int
    actors: List[Actor]
    height: int
    width: int
    fps: float
    duration: float  # seconds: the shortest actor's actions (every actor acts until the end)
    _background: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((1, 1, 3), np.uint8))

    def frames(self) -> Iterator[Tuple[float, np.ndarray, List[Tuple[str, Tuple[int, int, int, int]]]]]:
        """(time, RGB frame, [(actor id, box)]) for every frame of the scene."""
        streams = [iter_long_video(self.seed * 1009 + i + 1, len(a.segments), self.fps, a.tile)[1]
                   for i, a in enumerate(self.actors)]
        n = int(math.floor(self.duration * self.fps))
        for k in range(n):
            t = k / self.fps
            frame = self._background.copy()
            boxes = []
            for actor, it in zip(self.actors, streams):
                _, tile = next(it)
                x, y, w, h = actor.box(t, self.duration)
                frame[y:y + h, x:x + w] = tile
                boxes.append((actor.id, (x, y, w, h)))
            yield t, frame, boxes


def multi_actor_scene(seed: int, actors: int = 2, segments: int = 3, fps: float = 15.0, tile: int = 112,
                      drift: float = 0.5) -> MultiActorScene:
    """A scene of ``actors`` (2-4) actors, ``segments`` actions each, in a frame of 2 x ceil(actors / 2) cells.

    Each cell is 1.5 tiles wide and high; an actor's tile drifts from one random corner region of its cell
    towards another, by up to ``drift`` of the free space, over the scene.
    """
    if not 1 <= int(actors) <= 4:
        raise ConfigError(f"actors={actors}: expected 1 to 4")
    rng = np.random.default_rng([seed, 0xAC7])
    cell = int(tile * 1.5)
    rows, cols = (1, int(actors)) if actors <= 2 else (2, 2)
    height, width = rows * cell, cols * cell
    free = cell - tile
    people = []
    for i in range(int(actors)):
        r, c = divmod(i, cols)
        x0, y0 = c * cell, r * cell
        sx, sy = rng.uniform(0, free, size=2)
        ex = np.clip(sx + rng.uniform(-1, 1) * free * drift, 0, free)
        ey = np.clip(sy + rng.uniform(-1, 1) * free * drift, 0, free)
        segs, _ = iter_long_video(seed * 1009 + i + 1, segments, fps, tile)
        people.append(Actor(f"a{i}", segs, (x0 + sx, y0 + sy), (x0 + ex, y0 + ey), tile))
    duration = min(a.segments[-1].end for a in people)
    bg = (rng.integers(40, 90, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
          .repeat(8, 0).repeat(8, 1)[:height, :width])  # coarse texture: clutter the crops must ignore
    return MultiActorScene(seed, people, height, width, float(fps), duration, bg)


def write_detections(scene: MultiActorScene, path: os.PathLike, stream: Optional[str] = None) -> None:
    """The scene's true boxes as the ``--tracks`` JSON Lines (one record per frame) and its truth beside it
    (``<path>.truth.json``: actors, their segments and boxes' path)."""
    p = Path(path)
    with open(p, "w", encoding="utf-8") as fh:
        for t, _, boxes in scene.frames():
            rec = {"t": round(t, 6), "tracks": [{"id": i, "box": list(b)} for i, b in boxes]}
            if stream is not None:
                rec["stream"] = stream
            fh.write(json.dumps(rec) + "\n")
    truth = {"fps": scene.fps, "size": [scene.height, scene.width], "duration": scene.duration,
             "actors": [{"id": a.id, "segments": [asdict(s) for s in a.segments], "start_xy": a.start_xy,
                         "end_xy": a.end_xy, "tile": a.tile} for a in scene.actors]}
    p.with_name(p.name + ".truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")


def side_by_side(videos: Sequence[Sequence[np.ndarray]]) -> List[np.ndarray]:
    """Frames of equally long videos placed side by side (numpy's hstack: pixel-exact, as ffmpeg's hstack)."""
    return [np.hstack(list(fr)) for fr in zip(*videos)]


__all__ = ["Actor", "MultiActorScene", "multi_actor_scene", "side_by_side", "write_detections"]
