"""Outputs as sinks: the one interface the recognition pipeline feeds.

Why: JSON Lines, video files, the preview page, the stats printer (and the
MQTT, webhook, event-clip, metrics and ROS 2 outputs that come next) all
want the same few things -- each window's result, each event, a stream's
lost/restored change, the Triton server's state, the annotated frame, a
telemetry snapshot now and then -- and all must fail the same way: a sink
that raises is warned about once and switched off, while recognition and
every other sink go on. So the pipeline knows one :class:`Sink` protocol
and one :class:`SinkSet` that isolates failures; adding an output means
writing one sink class and nothing else.

Every method runs on the pipeline's head stage (one thread, in the order of
the frames): keep them short, or hand work to a thread of the sink's own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

import numpy as np

if TYPE_CHECKING:  # annotations only: the records live in the pipeline's modules
    from .clips import EventClip
    from .events import ActionEvent
    from .lane import Result
    from .telemetry import PipelineStats

log = logging.getLogger(__name__)


class Sink:
    """Base class and protocol of an output; every hook is optional (the default does nothing).

    ``wants_frames``: the pipeline draws the overlay only when some sink (or ``keep_images``) wants
    annotated frames, so a JSON-only run never pays for drawing.
    ``wants_images``: results reach :meth:`result` with ``result.image`` (the window's newest frame,
    BGR), for sinks that draw their own view (the preview page scales its overlay for display).
    ``wants_stats``: :meth:`stats` is called about once a second with a telemetry snapshot.
    """

    name = "sink"
    wants_frames = False
    wants_images = False
    wants_stats = False

    def open(self) -> None:
        """Called once every source has started (a file output is created only then)."""

    def result(self, result: "Result") -> None:
        """One window's decision (``result.stream`` names the camera)."""

    def event(self, event: "ActionEvent") -> None:
        """An event started or ended (``event.stream`` names the camera)."""

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        """A live source was ``"lost"`` or ``"restored"``; ``info``: timestamp, frame, reconnects, outage_s."""

    def server_state(self, state: str, info: Dict[str, Any]) -> None:
        """The inference server (backend "triton") was ``"lost"`` or ``"restored"``."""

    def frame(self, stream: Optional[str], image_bgr: np.ndarray) -> None:
        """The window's annotated frame (only for sinks that set ``wants_frames``)."""

    def stats(self, stats: "PipelineStats") -> None:
        """A telemetry snapshot (only for sinks that set ``wants_stats``), about once a second."""

    def clip(self, clip: "EventClip") -> None:
        """An event's clip was written (:class:`~aknet_edge.runtime.clips.EventClipSink`): a follow-up record
        naming the file (:func:`~aknet_edge.runtime.records.clip_record` builds its line)."""

    def drain(self) -> None:
        """The pipeline is closing: finish work whose records go to the other sinks (a clip still encoding). Called
        on every live sink before any is closed, so what a sink emits here still reaches the others."""

    def close(self) -> None:
        """Flush and release; called once, after the last call of any other hook."""


class SinkSet:
    """The pipeline's sinks: each hook goes to every live sink; a sink that raises is switched off.

    A failing sink is warned about once (its name and the error) and gets no more calls except
    :meth:`Sink.close` at the end; recognition and the other sinks go on.
    """

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self._all: List[Sink] = list(sinks)
        self._live: List[Sink] = list(self._all)
        self.failed: Dict[str, str] = {}  # sink name -> the error that switched it off

    def add(self, sink: Sink) -> None:
        self._all.append(sink)
        self._live.append(sink)

    def __iter__(self) -> Any:
        return iter(list(self._live))

    def __len__(self) -> int:
        return len(self._live)

    @property
    def wants_frames(self) -> bool:
        return any(s.wants_frames for s in self._live)

    @property
    def wants_images(self) -> bool:
        return any(s.wants_images for s in self._live)

    @property
    def wants_stats(self) -> bool:
        return any(s.wants_stats for s in self._live)

    def _call(self, hook: str, *args: Any) -> None:
        for sink in list(self._live):
            try:
                getattr(sink, hook)(*args)
            except Exception as exc:
                self._failed(sink, exc)

    def _failed(self, sink: Sink, exc: BaseException) -> None:
        log.warning("output %s failed (%s: %s); it is switched off, recognition goes on", sink.name,
                    type(exc).__name__, exc)
        self.failed[sink.name] = f"{type(exc).__name__}: {exc}"
        if sink in self._live:
            self._live.remove(sink)

    def open(self) -> None:
        """Open every sink; unlike the other hooks, a sink that cannot open is an error (nothing ran yet)."""
        for sink in self._all:
            sink.open()

    def result(self, result: "Result") -> None:
        self._call("result", result)

    def event(self, event: "ActionEvent") -> None:
        self._call("event", event)

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        self._call("stream_state", stream, state, info)

    def server_state(self, state: str, info: Dict[str, Any]) -> None:
        self._call("server_state", state, info)

    def frame(self, stream: Optional[str], image_bgr: np.ndarray) -> None:
        for sink in list(self._live):
            if sink.wants_frames:
                try:
                    sink.frame(stream, image_bgr)
                except Exception as exc:
                    self._failed(sink, exc)

    def stats(self, stats: "PipelineStats") -> None:
        for sink in list(self._live):
            if sink.wants_stats:
                try:
                    sink.stats(stats)
                except Exception as exc:
                    self._failed(sink, exc)

    def clip(self, clip: "EventClip") -> None:
        """An event clip's follow-up record, to every live sink that has the hook (sinks written before it
        existed are left alone)."""
        for sink in list(self._live):
            hook = getattr(sink, "clip", None)
            if hook is not None:
                try:
                    hook(clip)
                except Exception as exc:
                    self._failed(sink, exc)

    def close(self) -> None:
        """Drain every live sink (:meth:`Sink.drain`: what they still emit reaches sinks not yet closed), then close
        every sink (failed ones too), newest first; a close that raises is logged."""
        for sink in list(self._live):
            hook = getattr(sink, "drain", None)
            if hook is not None:
                try:
                    hook()
                except Exception as exc:
                    self._failed(sink, exc)
        for sink in reversed(self._all):
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing output %s failed: %s", sink.name, exc)
        self._live.clear()
        self._all.clear()


__all__ = ["Sink", "SinkSet"]
