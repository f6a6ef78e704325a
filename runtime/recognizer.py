"""The embeddable recogniser: one camera -> time windows -> backend -> results, events and outputs.

It is the recognition pipeline (:mod:`.pipeline`: threading, outages, outputs as
sinks) with one lane. Usage::

    with Recognizer("pkg/", "csi://0", jsonl="out.jsonl") as rec:
        for result in rec:
            print(result.label, result.confidence)
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from .events import ActionEvent
from .lane import (END_OF_STREAM, ERROR, SERVER_LOST, SOURCE_LOST, STOPPED, STREAM_GAP, Lane, Result,
                   window_keypoints)
from .pipeline import Pipeline, PipelineClosedError, RecognizerOptions, parse_options
from .sources import Source
from .telemetry import Telemetry


class Recognizer(Pipeline):
    """Recognise actions in a live source with a model package; a context manager and an iterator.

    ``source`` is a URI for :func:`~aknet_edge.runtime.sources.open_source` (its options go in
    ``source_options``) or an unopened :class:`~aknet_edge.runtime.sources.Source`; other keyword
    arguments are :class:`RecognizerOptions` fields. This is the pipeline (:mod:`.pipeline`) with
    one lane: threading, outages and outputs are described there.

    Ended events, including the one closed at end of stream, are also kept in :attr:`events`.
    Calling :meth:`close` from a callback only asks recognition to stop; the ``with`` block (or a
    later ``close()``) releases. A closed recogniser opens nothing again.
    """

    def __init__(self, package_dir: Union[str, Path], source: Union[str, int, Source], **options: Any) -> None:
        opts = parse_options("Recognizer", options)
        super().__init__(package_dir, [(opts.stream, source)], opts)
        self._source_arg = source
        self._events_before: "collections.deque[ActionEvent]" = collections.deque(maxlen=1000)

    @property
    def lane(self) -> Optional[Lane]:
        """The one lane (None before :meth:`start`)."""
        return next(iter(self.lanes.values()), None)

    @property
    def source(self) -> Optional[Source]:
        lane = self.lane
        if lane is not None:
            return lane.source
        return self._source_arg if isinstance(self._source_arg, Source) else None

    @property
    def events(self) -> Sequence[ActionEvent]:
        """Started and ended events (the last 1000 a lane; with regions or tracks, every lane's, in lane order)."""
        lanes = list(self.lanes.values())
        if len(lanes) > 1:
            return [ev for lane in lanes for ev in lane.events]
        return self._events_before if not lanes else lanes[0].events

    @property
    def telemetry(self) -> Telemetry:
        """The camera's telemetry (its lane's; the pipeline's total before start)."""
        lane = self.lane
        return self.total_telemetry if lane is None else lane.telemetry

    @property
    def video(self) -> Any:
        """The annotated video output (:class:`~aknet_edge.runtime.video_out.VideoOutput`), or None."""
        sink = getattr(self, "video_sink", None)
        return None if sink is None else next(iter(sink.outputs.values()))

    @property
    def source_state(self) -> str:
        """"live", "reconnecting" or "ended", as the inference thread last saw the source."""
        return self.telemetry.state

    @property
    def segments(self) -> Optional[List[Any]]:
        """Ground truth of a synthetic source (None for real sources)."""
        src = self.source
        return None if src is None else src.segments


__all__ = ["END_OF_STREAM", "ERROR", "PipelineClosedError", "Recognizer", "RecognizerOptions", "Result",
           "SERVER_LOST", "SOURCE_LOST", "STOPPED", "STREAM_GAP", "window_keypoints"]
