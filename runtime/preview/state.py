"""What the preview page shows: every named stream's newest frame, result, events, telemetry and stream line.

Why a state of its own: publishing (the recogniser's threads) and serving (one thread per page
client) meet only here, under one lock. Publishers never wait for a client and never encode:
frames go to an encoder thread that keeps only the newest per stream, and every change bumps
one version number that clients wait on. A client then asks :meth:`PreviewState.changes` for
what moved since its own sequence numbers, so a slow client skips to the newest state instead
of queueing a backlog, and one client never delays another or the recogniser.

Every change goes through :meth:`PreviewState._changing` (lock, change, wake the clients): the
one shape of a publish.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from ..overlay import DISPLAY_MIN_SIDE, TIME_RAMP

log = logging.getLogger(__name__)

DEFAULT_STREAM = "default"  # the stream a single recogniser publishes to
HISTORY_S = 300.0  # the events the page keeps: this many seconds back from the newest result
MAX_EVENTS = 500
STATS_INTERVAL_S = 1.0  # how often watched telemetry is read and pushed

# the parts a publish replaces whole (a result, a telemetry snapshot, the last {"type": "stream"} line)
_PARTS = ("result", "stats", "line")


@dataclass
class _Stream:
    """What the page shows of one stream, with a sequence number per part (clients send what changed)."""

    name: str
    jpeg: Optional[bytes] = None
    size: Optional[Tuple[int, int]] = None  # (height, width) of the newest frame
    b64: Optional[Tuple[int, str]] = None  # (frame seq, base64 of jpeg), made once for all page clients
    parts: Dict[str, Optional[Dict[str, Any]]] = field(default_factory=lambda: dict.fromkeys(_PARTS))
    # per part, plus "event" (the newest event's id) and "frame": what a client compares with what it sent
    seqs: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(_PARTS + ("event", "frame"), 0))
    # every stored event has an "id"; an ended event replaces its started one with a new id
    events: Deque[Dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=MAX_EVENTS))

    def public(self) -> Dict[str, Any]:
        return {"stream": self.name, **self.parts, "size": None if self.size is None else list(self.size),
                "frame_seq": self.seqs["frame"], "events": list(self.events)}


class PreviewState:
    """The page's state for any number of named streams, and the publishing API (any thread; never blocks).

    ``quality``: JPEG quality of the frames; ``history_s``: how far back the events timeline reaches;
    ``title``: the page's title. Runs two daemon threads (the frame encoder, the telemetry poller)
    until :meth:`close`.
    """

    def __init__(self, quality: int = 80, history_s: float = HISTORY_S, title: str = "aknet_edge") -> None:
        self.quality = int(quality)
        self.history_s = float(history_s)
        self.title = title
        self._cond = threading.Condition()
        self._version = 0  # bumped on every change: clients wait on it
        self._streams: Dict[str, _Stream] = {}
        self._providers: Dict[Optional[str], Callable[[], Dict[str, Any]]] = {}
        self._provider_failed: set = set()
        self._stop = threading.Event()
        # frames wait here (newest per stream) for the encoder thread: publishers never pay for JPEG encoding
        self._pending: Dict[str, Any] = {}
        self._pending_cond = threading.Condition()
        self._encode_lock = threading.Lock()  # one encoder at a time: frames are stored in publishing order
        self._encode_failed = False
        self._poller = threading.Thread(target=self._poll_stats, name="aknet-preview-stats", daemon=True)
        self._poller.start()
        self._encoder = threading.Thread(target=self._encode_loop, name="aknet-preview-encode", daemon=True)
        self._encoder.start()

    # -- the one shape of a change
    def _get(self, stream: str) -> _Stream:
        """Under the lock: the stream, created on its first publish."""
        st = self._streams.get(stream)
        if st is None:
            if not isinstance(stream, str) or not stream:
                raise ValueError(f"stream name {stream!r}: expected a non-empty string")
            st = self._streams[stream] = _Stream(stream)
            log.debug("preview: stream %r appeared", stream)
        return st

    @contextlib.contextmanager
    def _changing(self, stream: str) -> Iterator[_Stream]:
        """Change ``stream`` under the lock, then wake every waiting client (a change that raises wakes none)."""
        with self._cond:
            st = self._get(stream)
            yield st
            self._version += 1
            self._cond.notify_all()

    def _replace(self, stream: str, part: str, obj: Dict[str, Any]) -> None:
        """A part the page shows whole: the newest object wins (copied, so the caller may reuse its own)."""
        with self._changing(stream) as st:
            st.parts[part] = dict(obj)
            st.seqs[part] += 1
            if part == "result":
                self._trim(st)

    # -- publishing
    def publish_frame(self, stream: str, image_bgr: np.ndarray) -> None:
        """The stream's newest annotated frame (H, W, 3 uint8, BGR; not modified afterwards by the caller).

        Returns at once: the encoder thread makes the JPEG, once for every client, and skips a
        frame that a newer one of the same stream replaced before it was encoded.
        """
        self._queue_frame(stream, image_bgr)

    def publish_render(self, stream: str, render: Callable[[], np.ndarray]) -> None:
        """Like :meth:`publish_frame`, but ``render()`` makes the frame on the encoder thread, and only if it
        is still the stream's newest: drawing costs the publisher nothing either."""
        self._queue_frame(stream, render)

    def publish_result(self, stream: str, result_json: Dict[str, Any]) -> None:
        """A result as the JSON Lines get it (``Result.to_json()``)."""
        self._replace(stream, "result", result_json)

    def publish_stats(self, stream: str, stats_json: Dict[str, Any]) -> None:
        """Telemetry (``TelemetrySnapshot.to_dict()``: rates, latency, drops, reconnects, ``source_state``)."""
        self._replace(stream, "stats", stats_json)

    def publish_stream(self, stream: str, line_json: Dict[str, Any]) -> None:
        """A stream line (``{"type": "stream", "state": "lost" | "restored", ...}``)."""
        self._replace(stream, "line", line_json)

    def publish_event(self, stream: str, event_json: Dict[str, Any]) -> None:
        """An event line (``{"type": "event", "state": "started" | "ended", "label", "start", ...}``).

        An "ended" event replaces the "started" one with the same label and start, so the timeline
        shows each event once.
        """
        ev = dict(event_json)
        with self._changing(stream) as st:
            if ev.get("state") == "ended":
                for old in list(st.events):
                    if old.get("state") == "started" and old.get("label") == ev.get("label") \
                            and old.get("start") == ev.get("start"):
                        st.events.remove(old)
            st.seqs["event"] += 1
            ev["id"] = st.seqs["event"]
            st.events.append(ev)
            self._trim(st)

    def publish(self, stream: str, line_json: Dict[str, Any]) -> None:
        """Any JSON Lines object, routed by its ``type`` ("result", "event", "stream"; "stats" for telemetry)."""
        kind = line_json.get("type")
        route = {"result": self.publish_result, "event": self.publish_event, "stream": self.publish_stream,
                 "stats": self.publish_stats}.get(kind)  # type: ignore[arg-type]
        if route is None:
            raise ValueError(f"a JSON line of type {kind!r}: expected result, event, stream or stats")
        route(stream, line_json)

    def update(self, image_bgr: np.ndarray) -> None:
        """The default stream's newest frame: the single-stream API of the MJPEG server this replaced."""
        self.publish_frame(DEFAULT_STREAM, image_bgr)

    def watch_stats(self, stream: Optional[str], provider: Callable[[], Dict[str, Any]]) -> None:
        """Read ``provider()`` every second and push it as telemetry: the stream's (e.g. ``lambda:
        rec.stats().to_dict()``), or with ``stream`` None a mapping stream name -> telemetry (several
        streams at once). A provider that raises is logged once and tried again the next second."""
        with self._cond:
            if stream is not None:
                self._get(stream)
            self._providers[stream] = provider

    # -- the encoder and telemetry threads
    def _queue_frame(self, stream: str, item: Any) -> None:
        with self._cond:
            self._get(stream)  # a bad name fails in the publisher's thread, not later on the encoder's
        with self._pending_cond:
            self._pending[stream] = item
            self._pending_cond.notify()

    def _encode_loop(self) -> None:
        while not self._stop.is_set():
            with self._pending_cond:
                if not self._pending:
                    self._pending_cond.wait(0.5)
            self._encode_pending()

    def _encode_pending(self) -> None:
        with self._encode_lock:
            with self._pending_cond:
                items, self._pending = self._pending, {}
            for stream, item in items.items():
                try:
                    image = item() if callable(item) else item
                    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                    if not ok:
                        raise ValueError(f"JPEG encoding failed for a {image.shape} frame")
                except Exception as exc:  # a bad frame is skipped; the next one may be fine
                    if not self._encode_failed:
                        self._encode_failed = True
                        log.warning("preview: a frame of stream %r could not be drawn or encoded: %r "
                                    "(further failures at debug level)", stream, exc)
                    else:
                        log.debug("preview: a frame of stream %r failed: %r", stream, exc)
                    continue
                with self._changing(stream) as st:
                    st.jpeg, st.size, st.b64 = buf.tobytes(), tuple(image.shape[:2]), None
                    st.seqs["frame"] += 1

    def _poll_stats(self) -> None:
        while not self._stop.wait(STATS_INTERVAL_S):
            with self._cond:
                providers = list(self._providers.items())
            for name, provider in providers:
                try:
                    got = provider()
                    for stream, stats in (got.items() if name is None else [(name, got)]):
                        self.publish_stats(stream, stats)
                except Exception as exc:  # the recogniser's telemetry must not stop the page
                    if name not in self._provider_failed:
                        self._provider_failed.add(name)
                        log.warning("preview: telemetry%s failed: %r (logged once)",
                                    "" if name is None else f" of stream {name!r}", exc)

    def _trim(self, st: _Stream) -> None:
        """Keep the events of the last ``history_s`` seconds before the newest result (stream time)."""
        newest = (st.parts["result"] or {}).get("timestamp")
        if newest is None:
            return
        while st.events:
            ev = st.events[0]
            end = ev.get("end")
            if ev.get("state") == "ended" and end is not None and end < newest - self.history_s:
                st.events.popleft()
            else:
                break

    # -- reading
    def wait_frame(self, after_seq: int, timeout: float, stream: Optional[str] = None) -> Tuple[int, Optional[bytes]]:
        """The newest JPEG of ``stream`` (default: the first) newer than ``after_seq``, or None after ``timeout``.

        Frames published before the call are encoded first: what it returns is never older than them.
        """
        self._encode_pending()
        return self._wait_frame(after_seq, timeout, stream)

    def _wait_frame(self, after_seq: int, timeout: float, stream: Optional[str]) -> Tuple[int, Optional[bytes]]:
        """:meth:`wait_frame` without encoding: for page clients, which leave encoding to the encoder thread."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                st = self._pick(stream)
                if st is not None and st.jpeg is not None and st.seqs["frame"] > after_seq:
                    return st.seqs["frame"], st.jpeg
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return after_seq, None
                self._cond.wait(left)

    def _pick(self, stream: Optional[str]) -> Optional[_Stream]:
        if stream is not None:
            return self._streams.get(stream)
        if DEFAULT_STREAM in self._streams:
            return self._streams[DEFAULT_STREAM]
        return next(iter(self._streams.values()), None)

    @property
    def streams(self) -> List[str]:
        """The names of the streams that have published, in order of appearance."""
        with self._cond:
            return list(self._streams)

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called: a client's loop ends."""
        return self._stop.is_set()

    def snapshot(self) -> Dict[str, Any]:
        """Everything the page shows, without the frames (``/state.json``)."""
        with self._cond:
            streams = [st.public() for st in self._streams.values()]
        return {"title": self.title, "history_s": self.history_s, "streams": streams,
                "legend": ["rgb(%d,%d,%d)" % c for c in TIME_RAMP], "display_min_side": DISPLAY_MIN_SIDE}

    def changes(self, version: int, seen: Dict[str, Dict[str, int]],
                timeout: float) -> Tuple[int, List[Tuple[str, Any]]]:
        """What changed since a client's sequence numbers ``seen`` (stream -> part -> seq, updated in place):
        ("update", parts) and ("frame", the newest JPEG in base64) messages, newest state only, so a slow
        client skips rather than queues. Waits up to ``timeout`` when nothing changed since ``version``;
        returns the version the messages are of, for the next call."""
        messages: List[Tuple[str, Any]] = []
        with self._cond:
            if self._version == version:
                self._cond.wait(timeout)
            for st in self._streams.values():
                new = st.name not in seen
                s = seen.setdefault(st.name, dict.fromkeys(st.seqs, 0))
                update: Dict[str, Any] = {"stream": st.name}
                for part in _PARTS:
                    if st.seqs[part] != s[part]:
                        update[part], s[part] = st.parts[part], st.seqs[part]
                if st.seqs["event"] != s["event"]:
                    update["events"] = [e for e in st.events if e["id"] > s["event"]]
                    update["event_ids"] = [e["id"] for e in st.events]  # what is still kept
                    s["event"] = st.seqs["event"]
                if len(update) > 1 or new:  # a new stream is announced even before it has data
                    messages.append(("update", update))
                if st.jpeg is not None and st.seqs["frame"] != s["frame"]:
                    seq, b64 = self._frame_b64(st)
                    s["frame"] = seq
                    messages.append(("frame", {"stream": st.name, "seq": seq, "size": st.size, "jpeg": b64}))
            return self._version, messages

    def _frame_b64(self, st: _Stream) -> Tuple[int, str]:
        """Under the lock: the stream's newest JPEG as base64, made once per frame whatever the clients."""
        if st.b64 is None or st.b64[0] != st.seqs["frame"]:
            st.b64 = (st.seqs["frame"], base64.b64encode(st.jpeg or b"").decode("ascii"))
        return st.b64

    # -- lifecycle
    def _halt(self) -> None:
        """Stop every loop: waiting clients, the encoder and the poller wake and end."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        with self._pending_cond:
            self._pending_cond.notify_all()

    def close(self) -> None:
        """Stop the encoder and telemetry threads (joined)."""
        self._halt()
        self._poller.join(5.0)
        self._encoder.join(5.0)

    def __enter__(self) -> PreviewState:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["DEFAULT_STREAM", "HISTORY_S", "MAX_EVENTS", "PreviewState", "STATS_INTERVAL_S"]
