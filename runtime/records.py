"""The JSON Lines records: every line type the runtime writes, built here and nowhere else.

One JSON object per line; ``"type"`` says which record it is and ``"v"`` the schema version
(:data:`SCHEMA_VERSION`, an integer; it grows when a field changes meaning or goes away, not when an
optional field is added). The JSON Schema of all of them ships next to this module
(:data:`SCHEMA_PATH`, ``aknet_edge/runtime/schema/jsonl.schema.json``; :func:`load_schema`).

Times in seconds; ``timestamp`` is the newest sample's time: the media time when the source has one,
else monotonic capture time::

    {"type": "result", "v": 1, "timestamp": 12.57, "window_start": 10.57, "label": "move_left",
     "confidence": 0.93, "top_k": [["move_left", 0.93], ["move_right", 0.04], ...],
     "keypoints": [[t_s, x_px, y_px, score], ...],
     "latency_ms": 21.4, "fps": 14.9, "frame": 188}
    {"type": "event", "v": 1, "id": "3f2a...", "state": "started" | "ended", "label": "move_left",
     "start": 10.9, "end": 13.1 | null, "confidence": 0.88, "peak": 0.97}
    {"type": "event", "v": 1, "state": "ended", ..., "reason": "source lost"}
    {"type": "stream", "v": 1, "state": "lost", "timestamp": 14.2 | null, "frame": 212 | null, "reconnects": 0}
    {"type": "stream", "v": 1, "state": "restored", "timestamp": 40.9, "frame": 213, "reconnects": 1,
     "outage_s": 26.7}
    {"type": "server", "v": 1, "state": "lost", "url": "10.0.0.5:8001", "reason": "failed to connect ..."}
    {"type": "server", "v": 1, "state": "restored", "url": "10.0.0.5:8001", "outage_s": 7.52}
    {"type": "clip", "v": 1, "label": "move_left", "event_start": 10.9, "event_end": 13.1 | null,
     "start": 8.9, "end": 15.1, "path": "/var/lib/aknet/clips/clip-front-20250101T120000-move_left.mp4",
     "frames": 22, "fps": 3.5, "bytes": 81234, "raw": false}

Where the recogniser names its cameras (``python -m aknet_edge.run`` always does; a
:class:`~aknet_edge.runtime.multistream.MultiRecognizer` serves several), every result, event and
stream line starts with ``"stream": NAME`` (the source's name, or its index as a string). Server
lines concern every stream and carry none.

Result: ``label``/``confidence`` are the smoothed scores; ``top_k`` the raw window's. ``keypoints`` is
empty for models without keypoints (a TSM package). ``latency_ms`` runs from the newest frame reaching
the source's buffer to the window's scores; delay before capture (camera encoder, network, decoder) is
not in it. Rounding: times 4 decimals (keypoint times 3), probabilities 4, pixels 1, ``latency_ms`` and
``fps`` 2.

Event: ``id`` names the event (32 hex digits, random, given when it starts): its started and ended lines carry
the same one, so a receiver that gets a line twice (MQTT at QoS 1, a retried webhook) keeps one per
``(id, state)``. An ended event the runtime closed, rather than the scores, carries a ``reason``
(:data:`EVENT_REASONS`): "source lost" (the live source went away; the event ends where a stream end
would end it), "stream gap" (the frames jumped in time and the window restarted), "end of stream",
"stopped" (closed, or ``max_seconds``), "error", or "server lost" (backend "triton": the inference
server became unreachable). Events the scores end, and started events, have no ``reason``.

Stream: "lost" when a live source stops delivering (``timestamp``/``frame``: the last frame before the
loss, null if none came), "restored" with the first frame after it (``outage_s``: capture time from the
last frame before the loss to that one; ``reconnects``: the source's count).

Clip (``--event-clips``): written once an event's clip is in place (renamed from its temporary), after the
event's ended line; it names the event by ``event_id`` where events carry one, and always by ``stream``
(and ``roi``/``track``), ``label`` and ``event_start``; ``start``/``end`` are the clip's own first and last
moments on the frames' clock (pre-roll and post-roll included), ``fps`` its frame rate (the window rate).

Server (backend "triton"): "lost" when the Triton server stops answering (``reason``: the client's
error, first line, at most 200 characters), "restored" once it answers again (``outage_s``: wall time
without it).

This module imports neither torch nor numpy; it runs on Python 3.8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from aknet_edge.redact import redact

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "jsonl.schema.json"

EVENT_STATES = ("started", "ended")
# why the runtime, not the scores, ended an event (ActionEvent.reason); the recognisers' constants
SOURCE_LOST, STREAM_GAP, END_OF_STREAM = "source lost", "stream gap", "end of stream"
STOPPED, ERROR, SERVER_LOST = "stopped", "error", "server lost"
TRACK_LOST = "track lost"  # a tracked actor's boxes stopped coming (runtime/tracks.py)
EVENT_REASONS = (SOURCE_LOST, STREAM_GAP, END_OF_STREAM, STOPPED, ERROR, SERVER_LOST, TRACK_LOST)
STREAM_STATES = ("lost", "restored")
SERVER_STATES = ("lost", "restored")


def _head(stream: Optional[str], kind: str) -> Dict[str, Any]:
    obj: Dict[str, Any] = {} if stream is None else {"stream": stream}
    obj["type"] = kind
    obj["v"] = SCHEMA_VERSION
    return obj


def result_record(result: Any) -> Dict[str, Any]:
    """One window's decision: ``result`` has ``timestamp``, ``window_start``, ``label``, ``confidence``,
    ``top_k`` ([(label, p)]), ``keypoints`` ([(t, x, y, score)]), ``latency_ms``, ``fps``, ``frame_index``
    and ``stream`` (None: no "stream" key)."""
    obj = _head(getattr(result, "stream", None), "result")
    obj.update({"timestamp": round(result.timestamp, 4), "window_start": round(result.window_start, 4),
                "label": result.label, "confidence": round(result.confidence, 4),
                "top_k": [[n, round(p, 4)] for n, p in result.top_k],
                "keypoints": [[round(a, 3), round(x, 1), round(y, 1), round(s, 4)] for a, x, y, s in result.keypoints],
                "latency_ms": round(result.latency_ms, 2), "fps": round(result.fps, 2), "frame": result.frame_index})
    _view(obj, result)
    box = getattr(result, "box", None)
    if box is not None:
        obj["box"] = [int(v) for v in box]
    return obj


def _view(obj: Dict[str, Any], item: Any) -> None:
    """Per-person lanes: the region's name ("roi") or the track's id ("track"), only when set."""
    for key in ("roi", "track"):
        value = getattr(item, key, None)
        if value is not None:
            obj[key] = str(value)


def event_record(event: Any) -> Dict[str, Any]:
    """An :class:`~aknet_edge.runtime.events.ActionEvent` that started or ended (``reason`` only when set)."""
    obj = _head(getattr(event, "stream", None), "event")
    event_id = getattr(event, "id", None)
    if event_id is not None:  # the recognisers give every event one (ActionEvent.id)
        obj["id"] = event_id
    obj.update({"state": event.state, "label": event.label, "start": round(event.start, 4),
                "end": None if event.end is None else round(event.end, 4),
                "confidence": round(event.confidence, 4), "peak": round(event.peak, 4)})
    reason = getattr(event, "reason", None)
    if reason is not None:
        obj["reason"] = reason
    _view(obj, event)
    return obj


def stream_record(state: str, stream: Optional[str] = None, **info: Any) -> Dict[str, Any]:
    """A live source's change: ``state`` "lost" or "restored"; ``info``: timestamp, frame, reconnects and, once
    restored, outage_s (in that order, as the recognisers give them)."""
    obj = _head(stream, "stream")
    obj["state"] = state
    obj.update(_masked(info))
    return obj


def server_record(state: str, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The inference server's change: ``state`` "lost", else "restored" (the Triton client says "live");
    ``info``: url and reason (lost) or outage_s (restored)."""
    obj = _head(None, "server")
    obj["state"] = "lost" if state == "lost" else "restored"
    obj.update(_masked(info or {}))
    return obj


def _masked(info: Dict[str, Any]) -> Dict[str, Any]:
    """Text a line carries from elsewhere (a server's URL, an error's words) with any password masked."""
    return {k: redact(v) if isinstance(v, str) else v for k, v in info.items()}


def clip_record(clip: Any) -> Dict[str, Any]:
    """An event's clip, written (:class:`~aknet_edge.runtime.clips.EventClip`): the follow-up of the event's
    lines. ``event_id`` where events carry an id (else the event is its stream, label and ``event_start``);
    ``event_end`` null when the clip was cut at its longest length while the event went on."""
    obj = _head(getattr(clip, "stream", None), "clip")
    event_id = getattr(clip, "event_id", None)
    if event_id is not None:
        obj["event_id"] = event_id
    obj.update({"label": clip.label, "event_start": round(clip.event_start, 4),
                "event_end": None if clip.event_end is None else round(clip.event_end, 4),
                "start": round(clip.start, 4), "end": round(clip.end, 4), "path": str(clip.path),
                "frames": int(clip.frames), "fps": round(clip.fps, 3), "bytes": int(clip.bytes), "raw": bool(clip.raw)})
    _view(obj, clip)
    return obj


# every line type and the function that builds it (tests check the schema covers exactly these)
PRODUCERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "result": result_record, "event": event_record, "stream": stream_record, "server": server_record,
    "clip": clip_record,
}
LINE_TYPES: Tuple[str, ...] = tuple(PRODUCERS)


def load_schema() -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every line, a fresh dict each call."""
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


__all__ = ["EVENT_REASONS", "EVENT_STATES", "LINE_TYPES", "PRODUCERS", "SCHEMA_PATH", "SCHEMA_VERSION",
           "SERVER_STATES", "STREAM_STATES", "clip_record", "event_record", "load_schema", "result_record",
           "server_record", "stream_record"]
