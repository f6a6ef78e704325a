"""The terminal as a sink: ended events to stdout, telemetry lines to stderr (what the run CLI prints).

Why a sink: the CLI only chooses outputs; what a person reads in the terminal
is one more output, fed by the pipeline like the others, and it fails like
them (a reader that goes away, ``| head``, is warned about once).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from .jsonl import LineWriter
from .sinks import Sink


class ConsoleSink(Sink):
    """``events``: one line per ended event on stdout (the stream's name first with ``several``);
    ``stats_every``: telemetry to stderr every that many seconds and once at the end, one line per
    stream (``stream NAME | ...``) and, with ``several``, the total."""

    name = "console"

    def __init__(self, events: bool = True, stats_every: Optional[float] = None, several: bool = False) -> None:
        self.events_out = LineWriter("-", label="event output") if events else None
        self.stats_every = stats_every
        self.wants_stats = bool(stats_every)
        self.several = several
        self._next = time.monotonic() + (stats_every or 0.0)
        self._last: Any = None
        self._printed = False

    def event(self, event: Any) -> None:
        if self.events_out is not None and event.state == "ended":
            who = f"{event.stream:<10} " if self.several else ""
            self.events_out.write_line(f"{who}{event.start:8.2f} - {event.end:8.2f} s  {event.label:<12} "
                                       f"{event.confidence:.2f}")

    def stats(self, stats: Any) -> None:
        self._last = stats
        self._printed = False
        if self.stats_every and time.monotonic() >= self._next:
            self._next += self.stats_every
            self._print(stats)
            self._printed = True

    def _print(self, stats: Any) -> None:
        lines = [f"stream {name} | {snap.line()}" for name, snap in stats.streams.items()]
        if self.several:
            lines.append(f"total ({len(stats.streams)} streams) | {stats.line()}")
        print("\n".join(lines), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.wants_stats and self._last is not None and not self._printed:
            self._print(self._last)  # the final counters
        if self.events_out is not None:
            self.events_out.close()


__all__ = ["ConsoleSink"]
