"""Event-level scoring against ground-truth segments (tests and bench/event_accuracy.py share it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def segment_accuracy(results: Sequence[Any], segments: Sequence[Any], span: float) -> tuple[float, int]:
    """Fraction of segments whose majority result label is right, and how many segments were evaluable.

    Only results whose whole window lies inside a segment count (the first window after its start is
    excluded); segments too short to hold such a result are not evaluable.
    """
    hits, evaluable = 0, 0
    for s in segments:
        labels = [r.label for r in results if s.start + span <= r.timestamp < s.end]
        if not labels:
            continue
        evaluable += 1
        hits += Counter(labels).most_common(1)[0][0] == s.name
    return hits / max(1, evaluable), evaluable


def boundary_errors(events: Sequence[Any], segments: Sequence[Any]) -> np.ndarray:
    """|start error| and |end error| (seconds) of the best-overlapping same-label event per action segment;
    inf where the action produced no event."""
    errs: list[float] = []
    ended = [e for e in events if e.state == "ended"]
    for s in segments:
        if s.name == "no_action":
            continue
        cands = [e for e in ended if e.label == s.name and e.start < s.end and e.end > s.start]
        if not cands:
            errs += [np.inf, np.inf]
            continue
        e = max(cands, key=lambda e: min(e.end, s.end) - max(e.start, s.start))
        errs += [abs(e.start - s.start), abs(e.end - s.end)]
    return np.asarray(errs)
