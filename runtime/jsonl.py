"""JSON Lines output: one object per line, ``type`` "result" or "event".

Schema (times in seconds; ``timestamp`` is the newest sample's time: the media time when the source has one, else
monotonic capture time)::

    {"type": "result", "timestamp": 12.57, "window_start": 10.57, "label": "move_left",
     "confidence": 0.93, "top_k": [["move_left", 0.93], ["move_right", 0.04], ...],
     "keypoints": [[t_s, x_px, y_px, score], ...],
     "latency_ms": 21.4, "fps": 14.9, "frame": 188}
    {"type": "event", "state": "started" | "ended", "label": "move_left",
     "start": 10.9, "end": 13.1 | null, "confidence": 0.88, "peak": 0.97}

``label``/``confidence`` are the smoothed scores; ``top_k`` the raw window's.
Lines are flushed as written, so a consumer (or a killed process) never sees a
half line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class JsonlWriter:
    """Writes results and events to a file path, ``"-"`` (stdout) or an open text stream."""

    def __init__(self, target: str | os.PathLike[str] | IO[str]) -> None:
        self._broken = False
        if target == "-":
            self._fh: IO[str] = sys.stdout
            self._own = False
        elif isinstance(target, (str, os.PathLike)):
            self._fh = open(Path(target), "w", encoding="utf-8")
            self._own = True
        else:
            self._fh = target
            self._own = False

    def write(self, obj: dict[str, Any]) -> None:
        if self._broken or self._fh.closed:
            return
        try:
            self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self._fh.flush()
        except (BrokenPipeError, ValueError) as exc:  # the reader went away: stop writing, keep recognising
            log.warning("JSON Lines output closed by the reader (%s); no more lines written", exc)
            self._broken = True

    def write_result(self, result: Any) -> None:
        self.write(result.to_json())

    def write_event(self, event: Any) -> None:
        self.write({"type": "event", "state": event.state, "label": event.label, "start": round(event.start, 4),
                    "end": None if event.end is None else round(event.end, 4),
                    "confidence": round(event.confidence, 4), "peak": round(event.peak, 4)})

    def close(self) -> None:
        try:
            self._fh.flush()
        except (ValueError, OSError):
            pass
        if self._own:
            self._fh.close()
