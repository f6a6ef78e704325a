"""From per-window scores to action events: softmax, smoothing, hysteresis, no-action.

Why events rather than per-window labels: users want "move_left from 12.3 s
to 14.9 s", not a label every 0.3 s that flickers at boundaries. Scores are
smoothed (EMA or moving average), an action starts when its smoothed
probability reaches ``enter`` (and is the top class) for ``min_duration_s``, and
ends when it falls below ``exit`` (or another action takes over) for
``min_duration_s``. The no-action class never makes an event.

Event times are the centres of the windows that crossed the thresholds: a
window of ``span_s`` ending at ``t`` mostly shows what happened around
``t - span_s / 2``, so centres are the unbiased estimate of a boundary.
"""

from __future__ import annotations

import collections
import logging
import uuid
from dataclasses import dataclass, field

import numpy as np

from aknet_edge.errors import ConfigError

log = logging.getLogger(__name__)

SMOOTHING = ("ema", "mean", "none")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.array(logits, np.float64)  # a copy, then in place: this runs once per window
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs)[:k]
    return [(labels[i], float(probs[i])) for i in order]


@dataclass(frozen=True)
class EventConfig:
    """Smoothing and hysteresis settings (probabilities in [0, 1], times in seconds)."""

    smoothing: str = "ema"
    ema_alpha: float = 0.8
    mean_windows: int = 3
    enter: float = 0.5
    exit: float = 0.35
    min_duration_s: float = 0.25
    no_action: str = "no_action"

    def __post_init__(self) -> None:
        if self.smoothing not in SMOOTHING:
            raise ConfigError(f"smoothing={self.smoothing!r}: expected one of {', '.join(SMOOTHING)}")
        if not 0 < self.ema_alpha <= 1:
            raise ConfigError(f"ema_alpha={self.ema_alpha}: expected 0 < alpha <= 1")
        if self.mean_windows < 1:
            raise ConfigError(f"mean_windows={self.mean_windows}: expected >= 1")
        if not 0 <= self.exit <= self.enter <= 1:
            raise ConfigError(f"exit={self.exit}, enter={self.enter}: expected 0 <= exit <= enter <= 1")
        if self.min_duration_s < 0:
            raise ConfigError(f"min_duration_s={self.min_duration_s}: expected >= 0")


@dataclass
class ActionEvent:
    """An action with its start and (once ended) end time; ``state`` is "started" or "ended".

    ``reason`` is None for events the scores started and ended; an ended event the runtime closed
    says why: "source lost", "stream gap", "end of stream", "stopped" or "error".

    ``id``: a random id (32 hex digits) given when the event starts and kept on its ended record, so a receiver
    that gets a record twice (MQTT at QoS 1, a webhook retried after a timeout) drops the copy by ``(id, state)``;
    random rather than made of the stream, label and start, because a restarted runtime starts its clock (and a
    file or synthetic source its times) again. Not compared: two runs that find the same events are equal.
    """

    label: str
    start: float
    end: float | None
    confidence: float  # mean smoothed probability while active
    peak: float
    state: str = "started"
    reason: str | None = None
    stream: str | None = None  # the camera's name where the recogniser names its streams
    roi: str | None = None  # the region's name (per-region lanes)
    track: str | None = None  # the track's id (per-actor lanes)
    id: str | None = field(default=None, compare=False)  # the event's id, the same on its started and ended record

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class Smoother:
    """EMA or moving average of probability vectors."""

    def __init__(self, cfg: EventConfig) -> None:
        self.cfg = cfg
        self._ema: np.ndarray | None = None
        self._hist: collections.deque[np.ndarray] = collections.deque(maxlen=cfg.mean_windows)

    def reset(self) -> None:
        self._ema = None
        self._hist.clear()

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if self.cfg.smoothing == "none":
            return probs
        if self.cfg.smoothing == "mean":
            self._hist.append(probs)
            return np.mean(self._hist, axis=0)
        a = self.cfg.ema_alpha
        self._ema = probs if self._ema is None else a * probs + (1 - a) * self._ema
        return self._ema


class EventDetector:
    """The hysteresis state machine; feed it smoothed probabilities with window-centre times."""

    def __init__(self, labels: list[str], cfg: EventConfig = EventConfig()) -> None:
        self.labels = labels
        self.cfg = cfg
        self.no_action = labels.index(cfg.no_action) if cfg.no_action in labels else None
        self.active: int | None = None
        self._event: ActionEvent | None = None
        self._sum = 0.0
        self._n = 0
        self._cand: int | None = None
        self._cand_since = 0.0
        self._leave_since: float | None = None
        self.last_time: float | None = None

    def _top_action(self, p: np.ndarray) -> int | None:
        c = int(np.argmax(p))
        if c == self.no_action or p[c] < self.cfg.enter:
            return None
        return c

    def update(self, p: np.ndarray, t: float) -> list[ActionEvent]:
        """Smoothed probabilities at time ``t`` -> events that started or ended now."""
        self.last_time = t
        out: list[ActionEvent] = []
        top = self._top_action(p)
        if self.active is not None:
            leaving = p[self.active] < self.cfg.exit or (top is not None and top != self.active)
            if leaving:
                if self._leave_since is None:
                    self._leave_since = t
                left = self._leave_since
                if t - left >= self.cfg.min_duration_s:
                    out.append(self._end(left))
                    if top is not None:  # another action took over: it starts where this one ended
                        out.append(self._start(top, left, float(p[top])))
                        return out
            else:
                self._leave_since = None
                self._sum += float(p[self.active])
                self._n += 1
                assert self._event is not None
                self._event.peak = max(self._event.peak, float(p[self.active]))
                return out
        if self.active is None:
            if top is None:
                self._cand = None
            elif top != self._cand:
                self._cand, self._cand_since = top, t
            if self._cand is not None and t - self._cand_since >= self.cfg.min_duration_s:
                out.append(self._start(self._cand, self._cand_since, float(p[self._cand])))
        return out

    def _start(self, c: int, t: float, prob: float) -> ActionEvent:
        self.active, self._cand, self._leave_since = c, None, None
        self._sum, self._n = prob, 1
        self._event = ActionEvent(self.labels[c], t, None, prob, prob, "started", id=uuid.uuid4().hex)
        return ActionEvent(**vars(self._event))

    def _end(self, t: float, reason: str | None = None) -> ActionEvent:
        assert self._event is not None
        ev = ActionEvent(self._event.label, self._event.start, max(t, self._event.start),
                         self._sum / max(1, self._n), self._event.peak, "ended", reason, id=self._event.id)
        self.active, self._event, self._leave_since, self._cand = None, None, None, None
        return ev

    def finish(self, t: float | None = None, reason: str | None = None) -> list[ActionEvent]:
        """Close the open event (end of stream, a lost source): at ``t``, else where it started fading, else the
        last update; ``reason`` says why (see :class:`ActionEvent`)."""
        if self.active is None:
            return []
        if t is None:
            t = self._leave_since if self._leave_since is not None else self.last_time
        return [self._end(t if t is not None else 0.0, reason)]


__all__ = ["ActionEvent", "EventConfig", "EventDetector", "SMOOTHING", "Smoother", "softmax", "top_k"]
