"""Feeding the page: :class:`PreviewSink` for the recognition pipeline, :class:`PreviewHooks` for callbacks.

Why one sink: the pipeline hands every output the same things (results, events, a stream's
lost/restored line, annotated frames, telemetry) through :class:`~aknet_edge.runtime.sinks.Sink`;
the page needs each of them under the camera's name. :class:`PreviewSink` is that translation,
once. :class:`PreviewHooks` is the same translation for code that wires a recogniser's
``on_result``/``on_event`` callbacks itself (drawing the overlay there, since no pipeline draws
for it); it is a :class:`PreviewSink`, so both name streams, build event lines and spread
telemetry over streams the same way.

Records come from :mod:`aknet_edge.runtime.records`, the module that defines every JSON Lines line,
so the page and the JSON Lines cannot disagree.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np

from ..overlay import DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE, draw_overlay
from ..lane import lane_name
from ..records import event_record, stream_record
from ..sinks import Sink
from .server import PreviewServer
from .state import DEFAULT_STREAM

log = logging.getLogger(__name__)


def event_json(event: Any) -> Dict[str, Any]:
    """An :class:`~aknet_edge.runtime.events.ActionEvent` as the JSON Lines write it (:func:`records.event_record`)."""
    return event_record(event)


def _lane(obj: Any) -> Optional[str]:
    """The page card a result or event belongs to: its camera, or the camera's region or tracked actor."""
    return lane_name(getattr(obj, "stream", None), getattr(obj, "roi", None), getattr(obj, "track", None))


class PreviewSink(Sink):
    """The pipeline's output to a :class:`PreviewServer`: one page stream per camera.

    The page stream is ``stream`` when given (everything into one card), else the camera's name
    (``result.stream``, ``event.stream``, the hooks' ``stream`` argument), else :data:`DEFAULT_STREAM`
    for a single unnamed camera. Telemetry: a snapshot with several lanes (``stats.streams``, or a
    mapping name -> snapshot) goes to each lane's stream; a one-camera snapshot goes whole to that
    camera's stream, known once the sink has fed it anything (before that it is skipped, so no card
    appears under a lane index the page never otherwise sees). ``owns_server``: :meth:`close` closes
    the server too (the sink made it for the pipeline); otherwise the caller closes it.

    ``display``: the sink draws the page's overlay itself from each result's frame, on the server's encoder
    thread and only for the newest frame, scaled for display (small frames enlarged by a whole factor to
    :data:`DISPLAY_MIN_SIDE`, large ones shrunk to :data:`DISPLAY_MAX_SIDE`, text drawn at that size so it
    stays sharp), as the run CLI's page shows them; off, the page gets the pipeline's annotated frames at the
    camera's size.
    """

    name = "preview"
    wants_stats = True

    def __init__(self, server: PreviewServer, owns_server: bool = False, stream: Optional[str] = None,
                 display: bool = False) -> None:
        self.server = server
        self.owns_server = owns_server
        self.stream = stream
        self.display = display
        self.wants_frames = not display  # the pipeline's annotated frame, as drawn
        self.wants_images = display  # result.image, drawn here for display
        self._fed: Optional[str] = None  # the page stream fed last: where a one-camera snapshot belongs

    def _page(self, stream: Optional[str]) -> str:
        name = self.stream or stream or DEFAULT_STREAM
        self._fed = name
        return name

    def result(self, result: Any) -> None:
        name = self._page(_lane(result))
        image = getattr(result, "image", None) if self.display else None
        if image is not None:  # drawn on the server's encoder thread, and only if no newer frame came
            self.server.publish_render(name, lambda: draw_overlay(image, result, min_side=DISPLAY_MIN_SIDE,
                                                                  max_side=DISPLAY_MAX_SIDE))
        self.server.publish_result(name, result.to_json())

    def event(self, event: Any) -> None:
        self.server.publish_event(self._page(_lane(event)), event_json(event))

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        name = self._page(lane_name(stream, info.get("roi"), info.get("track")))
        self.server.publish_stream(name, stream_record(state, name, **info))

    def frame(self, stream: Optional[str], image_bgr: np.ndarray) -> None:
        name = self._page(stream)
        if name == DEFAULT_STREAM:  # through the one-stream API, so what overrides ``update`` sees every frame
            self.server.update(image_bgr)
        else:
            self.server.publish_frame(name, image_bgr)

    def stats(self, stats: Any) -> None:
        for name, obj in self._telemetry(stats, self.stream or self._fed).items():
            self.server.publish_stats(name, obj)

    @staticmethod
    def _telemetry(stats: Any, single: Optional[str]) -> Dict[str, Dict[str, Any]]:
        """Page stream -> telemetry dict. ``stats``: a TelemetrySnapshot, a PipelineStats (``.streams`` by lane
        name) or a mapping name -> snapshot; ``single``: the stream of a one-camera snapshot (None: skip it)."""
        per = stats if isinstance(stats, dict) else getattr(stats, "streams", None) or {}
        if isinstance(stats, dict) or len(per) > 1:
            return {name: snap.to_dict() for name, snap in per.items()}
        return {} if single is None else {single: stats.to_dict()}  # the whole one: the server's state too

    def close(self) -> None:
        if self.owns_server:
            self.server.close()


class PreviewHooks(PreviewSink):
    """Callbacks that feed a :class:`PreviewServer` from a Recognizer or a MultiRecognizer, one stream each.

    ``on_result`` draws the overlay (scaled for display: small frames up to :data:`DISPLAY_MIN_SIDE`, large
    ones down to :data:`DISPLAY_MAX_SIDE`) on the result's frame, which needs the recogniser's
    ``keep_images=True``, and publishes it with the result; ``on_event`` publishes events; :meth:`watch`
    pushes the recogniser's telemetry every second. Streams are named as by :class:`PreviewSink`.
    ``release_images`` drops ``result.image`` once drawn, so results queued for a slow reader do not
    hold frames. The callbacks never raise: a failure is logged once and recognition goes on.

    Usage::

        hooks = PreviewHooks(server)
        rec = Recognizer(pkg, src, keep_images=True, on_result=hooks.on_result, on_event=hooks.on_event)
        rec.start()
        hooks.watch(rec)
    """

    def __init__(self, server: PreviewServer, stream: Optional[str] = None, release_images: bool = True) -> None:
        super().__init__(server, stream=stream, display=True)
        self.release_images = release_images
        self._warned = False

    def _name(self, obj: Any) -> str:
        return self._page(_lane(obj))

    def _failed(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("preview failed: %r; recognition goes on (logged once)", exc)

    def on_result(self, result: Any) -> None:
        try:
            self.result(result)
        except Exception as exc:
            self._failed(exc)
        finally:
            if self.release_images:
                result.image = None

    def on_event(self, event: Any) -> None:
        try:
            self.event(event)
        except Exception as exc:
            self._failed(exc)

    def watch(self, recognizer: Any) -> None:
        """Push ``recognizer.stats()`` (rates, latency, drops, reconnects, the source's state) every second:
        one snapshot (a Recognizer) or one per stream name (a MultiRecognizer)."""
        single = self.stream or getattr(getattr(recognizer, "options", None), "stream", None) or DEFAULT_STREAM
        self.server.watch_stats(None, lambda: self._telemetry(recognizer.stats(), single))


__all__ = ["PreviewHooks", "PreviewSink", "event_json"]
