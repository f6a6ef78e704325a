"""Live previews: a page in the browser per recogniser (or several), MJPEG, and an on-screen window.

Why a page: an engineer tuning thresholds next to a robot wants to look, not
read. :class:`PreviewServer` serves, with the standard library only:

* ``/`` the page (``runtime/web/preview.html``, plain HTML/JS, nothing fetched
  from anywhere else): a grid with one card per stream that has published,
  each with its annotated video scaled to the card, the smoothed label and a
  confidence bar, the raw top-k as bars, a timeline of the last minutes of
  action events and telemetry (rates, latency p50/p95, drops, reconnects, the
  source's state), plus the keypoint time legend;
* ``/events`` Server-Sent Events that push every change to the page (no
  polling): the newest frame of each stream (JPEG, base64), results, events
  and telemetry, as the JSON Lines get them;
* ``/stream.mjpg`` MJPEG and ``/frame.jpg`` one JPEG (``?stream=NAME``; the
  first stream without it), for ``curl``, VLC or an ``<img>``;
* ``/state.json`` everything the page shows, once.

Streams are named: :meth:`PreviewServer.publish_frame`, ``publish_result``,
``publish_event``, ``publish_stats`` take the stream's name first, so one
server shows several cameras; a single recogniser uses :data:`DEFAULT_STREAM`
(and the old one-stream :meth:`PreviewServer.update`). :class:`PreviewHooks`
feeds one stream from a :class:`~aknet_edge.runtime.Recognizer`'s callbacks.

Access: the server binds 127.0.0.1 unless told otherwise (the page shows
camera video, so sharing it is deliberate); with a token every request must
carry it (``?token=`` in the URL, an ``Authorization: Bearer`` or an
``X-Preview-Token`` header), else 401 and no frame. Each client gets the newest
state; a slow client skips frames, never delays another client or the
recogniser. A client that hangs up only ends its own connection (logged at
debug level, never a traceback); frames are JPEG-encoded once per update, on
the server's own encoder thread (newest frame per stream; the publisher only
hands it over). Publishing never raises into the recogniser from a client's
failure.
"""

from __future__ import annotations

import argparse
import base64
import collections
import errno
import hmac
import http.server
import ipaddress
import json
import logging
import os
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import cv2
import numpy as np

from .overlay import DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE, TIME_RAMP, draw_overlay

log = logging.getLogger(__name__)

BOUNDARY = "aknetframe"
DEFAULT_STREAM = "default"  # the stream a single recogniser publishes to
DEFAULT_HOST = "127.0.0.1"
TOKEN_ENV = "AKNET_PREVIEW_TOKEN"  # the token when --preview-token is not given (aknet_edge.settings)
PAGE = Path(__file__).resolve().parent / "web" / "preview.html"
HISTORY_S = 300.0  # the events the page keeps: this many seconds back from the newest result
MAX_EVENTS = 500
STATS_INTERVAL_S = 1.0  # how often watched telemetry is read and pushed
_PING_S = 2.0  # an idle event stream sends a comment this often (a client that left is noticed)

# a client went away, or stalled past the timeout (socket.timeout: TimeoutError from Python 3.10 on)
_HANGUP = (BrokenPipeError, ConnectionError, TimeoutError, socket.timeout)


@dataclass
class _Stream:
    """What the page shows of one stream, with a sequence number per part (clients send what changed)."""

    name: str
    jpeg: Optional[bytes] = None
    frame_seq: int = 0
    size: Optional[Tuple[int, int]] = None  # (height, width) of the newest frame
    b64: Optional[Tuple[int, str]] = None  # (frame_seq, base64 of jpeg), made once for all page clients
    result: Optional[Dict[str, Any]] = None
    result_seq: int = 0
    stats: Optional[Dict[str, Any]] = None
    stats_seq: int = 0
    line: Optional[Dict[str, Any]] = None  # the last {"type": "stream"} line (lost / restored)
    line_seq: int = 0
    events: Deque[Dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=MAX_EVENTS))
    event_id: int = 0  # every stored event has an "id"; an ended event replaces its started one with a new id

    def public(self, events_after: int = 0) -> Dict[str, Any]:
        return {"stream": self.name, "result": self.result, "stats": self.stats, "line": self.line,
                "size": None if self.size is None else list(self.size), "frame_seq": self.frame_seq,
                "events": [e for e in self.events if e["id"] > events_after]}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_json_default)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    # daemon threads: ThreadingMixIn then keeps no list of them (on Python 3.8 that list only grows); the
    # PreviewServer tracks its live client threads itself and joins them on close
    daemon_threads = True
    allow_reuse_address = True
    _warned = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr here; a client's failure is not the server's."""
        exc = sys.exc_info()[1]
        if isinstance(exc, _HANGUP):
            log.debug("preview client %s hung up: %s", client_address, exc)
            return
        if not self._warned:
            self._warned = True
            log.warning("preview client %s failed: %r (further client errors are logged at debug level)",
                        client_address, exc)
        else:
            log.debug("preview client %s failed: %r", client_address, exc)


class PreviewServer:
    """The preview page, its event stream, MJPEG and single JPEGs for any number of named streams.

    ``port`` 0 picks a free port (see :attr:`port`); ``token`` (non-empty) is required from every
    request; ``history_s`` is how far back the page's event timeline reaches.
    """

    def __init__(self, port: int = 0, host: str = DEFAULT_HOST, quality: int = 80, token: Optional[str] = None,
                 history_s: float = HISTORY_S, title: str = "aknet_edge") -> None:
        if token is not None and not token.strip():
            raise ValueError("the preview token is empty: give a non-empty secret or none")
        self.page = PAGE.read_bytes()  # missing only from a broken install: fail here, not per request
        self.quality = int(quality)
        self.history_s = float(history_s)
        self.title = title
        self._token = token
        self._cond = threading.Condition()
        self._version = 0  # bumped on every publish: clients wait on it
        self._streams: Dict[str, _Stream] = {}
        self._providers: Dict[Optional[str], Callable[[], Dict[str, Any]]] = {}
        self._provider_failed: set = set()
        self._clients: set = set()
        self._stop = threading.Event()
        # frames wait here (newest per stream) for the encoder thread: publishers never pay for JPEG encoding
        self._pending: Dict[str, Any] = {}
        self._pending_cond = threading.Condition()
        self._encode_lock = threading.Lock()  # one encoder at a time: frames are stored in publishing order
        self._encode_failed = False
        self._httpd = _Server((host, port), self._handler_class())
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="aknet-preview", daemon=True)
        self._thread.start()
        self._poller = threading.Thread(target=self._poll_stats, name="aknet-preview-stats", daemon=True)
        self._poller.start()
        self._encoder = threading.Thread(target=self._encode_loop, name="aknet-preview-encode", daemon=True)
        self._encoder.start()
        log.info("preview page at %s%s", self.url, " (token required)" if token else "")

    # -- addresses
    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        return f"http://{self.host}:{self.port}/"

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def page_url(self) -> str:
        """The page's address with the token in its query, as a browser should open it."""
        if self._token is None:
            return self.url
        return self.url + "?" + urllib.parse.urlencode({"token": self._token})

    # -- publishing (any thread; never blocks on clients)
    def _get(self, stream: str) -> _Stream:
        st = self._streams.get(stream)
        if st is None:
            if not isinstance(stream, str) or not stream:
                raise ValueError(f"stream name {stream!r}: expected a non-empty string")
            st = self._streams[stream] = _Stream(stream)
            log.debug("preview: stream %r appeared", stream)
        return st

    def _changed(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def publish_frame(self, stream: str, image_bgr: np.ndarray) -> None:
        """The stream's newest annotated frame (H, W, 3 uint8, BGR; not modified afterwards by the caller).

        Returns at once: the server's encoder thread makes the JPEG, once for every client, and skips a
        frame that a newer one of the same stream replaced before it was encoded.
        """
        self._queue_frame(stream, image_bgr)

    def publish_render(self, stream: str, render: Callable[[], np.ndarray]) -> None:
        """Like :meth:`publish_frame`, but ``render()`` makes the frame on the encoder thread, and only if it
        is still the stream's newest: drawing costs the publisher nothing either."""
        self._queue_frame(stream, render)

    def _queue_frame(self, stream: str, item: Any) -> None:
        with self._cond:
            self._get(stream)
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
                with self._cond:
                    st = self._get(stream)
                    st.jpeg, st.size, st.b64 = buf.tobytes(), tuple(image.shape[:2]), None
                    st.frame_seq += 1
                    self._changed()

    def publish_result(self, stream: str, result_json: Dict[str, Any]) -> None:
        """A result as the JSON Lines get it (``Result.to_json()``)."""
        with self._cond:
            st = self._get(stream)
            st.result = dict(result_json)
            st.result_seq += 1
            self._trim(st)
            self._changed()

    def publish_event(self, stream: str, event_json: Dict[str, Any]) -> None:
        """An event line (``{"type": "event", "state": "started" | "ended", "label", "start", ...}``).

        An "ended" event replaces the "started" one with the same label and start.
        """
        ev = dict(event_json)
        with self._cond:
            st = self._get(stream)
            if ev.get("state") == "ended":
                for old in list(st.events):
                    if old.get("state") == "started" and old.get("label") == ev.get("label") \
                            and old.get("start") == ev.get("start"):
                        st.events.remove(old)
            st.event_id += 1
            ev["id"] = st.event_id
            st.events.append(ev)
            self._trim(st)
            self._changed()

    def publish_stats(self, stream: str, stats_json: Dict[str, Any]) -> None:
        """Telemetry (``TelemetrySnapshot.to_dict()``: rates, latency, drops, reconnects, ``source_state``)."""
        with self._cond:
            st = self._get(stream)
            st.stats = dict(stats_json)
            st.stats_seq += 1
            self._changed()

    def publish_stream(self, stream: str, line_json: Dict[str, Any]) -> None:
        """A stream line (``{"type": "stream", "state": "lost" | "restored", ...}``)."""
        with self._cond:
            st = self._get(stream)
            st.line = dict(line_json)
            st.line_seq += 1
            self._changed()

    def publish(self, stream: str, line_json: Dict[str, Any]) -> None:
        """Any JSON Lines object, routed by its ``type`` ("result", "event", "stream"; "stats" for telemetry)."""
        kind = line_json.get("type")
        route = {"result": self.publish_result, "event": self.publish_event, "stream": self.publish_stream,
                 "stats": self.publish_stats}.get(kind)  # type: ignore[arg-type]
        if route is None:
            raise ValueError(f"a JSON line of type {kind!r}: expected result, event, stream or stats")
        route(stream, line_json)

    def watch_stats(self, stream: Optional[str], provider: Callable[[], Dict[str, Any]]) -> None:
        """Read ``provider()`` every second and push it as telemetry: the stream's (e.g. ``lambda:
        rec.stats().to_dict()``), or with ``stream`` None a mapping stream name -> telemetry (several
        streams at once). A provider that raises is logged once and tried again the next second."""
        with self._cond:
            if stream is not None:
                self._get(stream)
            self._providers[stream] = provider  # type: ignore[index]

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
        newest = (st.result or {}).get("timestamp")
        if newest is None:
            return
        while st.events:
            ev = st.events[0]
            end = ev.get("end")
            if ev.get("state") == "ended" and end is not None and end < newest - self.history_s:
                st.events.popleft()
            else:
                break

    # -- the single-stream API of the MJPEG server this replaces
    def update(self, image_bgr: np.ndarray) -> None:
        """The default stream's newest frame (what :class:`~aknet_edge.runtime.Recognizer` calls)."""
        self.publish_frame(DEFAULT_STREAM, image_bgr)

    def wait_frame(self, after_seq: int, timeout: float, stream: Optional[str] = None) -> Tuple[int, Optional[bytes]]:
        """The newest JPEG of ``stream`` (default: the first) newer than ``after_seq``, or None after ``timeout``.

        Frames published before the call are encoded first: what it returns is never older than them.
        """
        self._encode_pending()
        return self._wait_frame(after_seq, timeout, stream)

    def _wait_frame(self, after_seq: int, timeout: float, stream: Optional[str]) -> Tuple[int, Optional[bytes]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                st = self._pick(stream)
                if st is not None and st.jpeg is not None and st.frame_seq > after_seq:
                    return st.frame_seq, st.jpeg
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

    # -- reading
    @property
    def streams(self) -> List[str]:
        """The names of the streams that have published, in order of appearance."""
        with self._cond:
            return list(self._streams)

    def snapshot(self) -> Dict[str, Any]:
        """Everything the page shows, without the frames (``/state.json``)."""
        with self._cond:
            streams = [st.public() for st in self._streams.values()]
        return {"title": self.title, "history_s": self.history_s, "streams": streams,
                "legend": ["rgb(%d,%d,%d)" % c for c in TIME_RAMP], "display_min_side": DISPLAY_MIN_SIDE}

    # -- lifecycle
    def close(self) -> None:
        """Stop serving: every client connection ends (within a few seconds for a stalled one), threads joined."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._pending_cond:
            self._pending_cond.notify_all()
        self._thread.join(5.0)
        self._poller.join(5.0)
        self._encoder.join(5.0)
        deadline = time.monotonic() + 6.0
        for t in list(self._clients):
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("preview: a client thread did not end within 6 s of close")

    def __enter__(self) -> PreviewServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- HTTP
    def _authorised(self, query: Dict[str, List[str]], headers: Any) -> bool:
        if self._token is None:
            return True
        given = (query.get("token") or [""])[0] or headers.get("X-Preview-Token", "")
        auth = headers.get("Authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and hmac.compare_digest(given.encode("utf-8"), self._token.encode("utf-8"))

    def _frame_b64(self, st: _Stream) -> Tuple[int, str]:
        """Under the lock: the stream's newest JPEG as base64, made once per frame whatever the clients."""
        if st.b64 is None or st.b64[0] != st.frame_seq:
            st.b64 = (st.frame_seq, base64.b64encode(st.jpeg or b"").decode("ascii"))
        return st.b64

    def _handler_class(self) -> type:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5.0  # a stalled client cannot hold its thread (or close()) for long
            server_version = "aknet-preview"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("preview %s: " + fmt, self.client_address[0], *args)

            def handle(self) -> None:
                me = threading.current_thread()
                outer._clients.add(me)
                try:
                    super().handle()
                except _HANGUP as exc:  # hung up before or while its response went out
                    log.debug("preview client %s hung up: %s", self.client_address[0], exc)
                    self.close_connection = True
                finally:
                    outer._clients.discard(me)

            def _plain(self, code: int, text: str, extra: Optional[Dict[str, str]] = None) -> None:
                body = (text + "\n").encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                if not outer._authorised(query, self.headers):
                    self._plain(401, "401 unauthorised: this preview needs its token (open the page as "
                                     "/?token=TOKEN, or send 'Authorization: Bearer TOKEN')",
                                {"WWW-Authenticate": 'Bearer realm="aknet_edge preview"'})
                    return
                stream = (query.get("stream") or [None])[0]
                route = {"/": self._page, "/index.html": self._page, "/events": self._events,
                         "/stream.mjpg": self._mjpeg, "/frame.jpg": self._jpeg,
                         "/state.json": self._state}.get(parts.path)
                if route is None:
                    self._plain(404, f"404: no {parts.path} here; the page is at /, MJPEG at /stream.mjpg, "
                                     "one JPEG at /frame.jpg, live updates at /events, the state at /state.json")
                    return
                route(stream)

            def _page(self, _stream: Optional[str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.page)))
                self.send_header("Cache-Control", "no-store")
                # nothing but this server: no CDN, no fonts, no beacons (robots sit on closed networks)
                self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                 "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")
                self.send_header("Referrer-Policy", "no-referrer")
                self.end_headers()
                self.wfile.write(outer.page)

            def _state(self, _stream: Optional[str]) -> None:
                body = _dumps(outer.snapshot()).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _known(self, stream: Optional[str]) -> bool:
                if stream is None or stream in outer._streams:
                    return True
                self._plain(404, f"404: no stream {stream!r}; streams: {', '.join(outer.streams) or 'none yet'}")
                return False

            def _jpeg(self, stream: Optional[str]) -> None:
                if not self._known(stream):
                    return
                jpeg = outer._wait_frame(-1, 5.0, stream)[1]
                if jpeg is None:
                    self._plain(503, "503: no frame yet")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(jpeg)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(jpeg)

            def _mjpeg(self, stream: Optional[str]) -> None:
                if not self._known(stream):
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seq = -1
                try:
                    while not outer._stop.is_set():
                        seq, jpeg = outer._wait_frame(seq, 0.25, stream)
                        if jpeg is None:
                            continue
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                except (_HANGUP + (OSError,)) as exc:
                    log.debug("preview client %s left the stream: %s", self.client_address[0], exc)

            def _events(self, _stream: Optional[str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    self._event_loop()
                except (_HANGUP + (OSError,)) as exc:
                    log.debug("preview client %s left the event stream: %s", self.client_address[0], exc)

            def _send(self, event: str, data: Any) -> None:
                self.wfile.write(f"event: {event}\ndata: {_dumps(data)}\n\n".encode("utf-8"))

            def _event_loop(self) -> None:
                """Push what changed since the last message, newest state only: a slow page skips, never queues."""
                seen: Dict[str, Dict[str, int]] = {}
                snap = outer.snapshot()
                snap.pop("streams")
                self.wfile.write(b"retry: 2000\n\n")
                self._send("hello", snap)
                self.wfile.flush()
                version = -1
                while not outer._stop.is_set():
                    messages: List[Tuple[str, Any]] = []
                    with outer._cond:
                        if outer._version == version:
                            outer._cond.wait(_PING_S)
                        version = outer._version
                        for st in outer._streams.values():
                            new = st.name not in seen
                            s = seen.setdefault(st.name, {"result": 0, "stats": 0, "line": 0, "event": 0, "frame": 0})
                            update: Dict[str, Any] = {"stream": st.name}
                            if st.result_seq != s["result"]:
                                update["result"], s["result"] = st.result, st.result_seq
                            if st.stats_seq != s["stats"]:
                                update["stats"], s["stats"] = st.stats, st.stats_seq
                            if st.line_seq != s["line"]:
                                update["line"], s["line"] = st.line, st.line_seq
                            if st.event_id != s["event"]:
                                update["events"] = [e for e in st.events if e["id"] > s["event"]]
                                update["event_ids"] = [e["id"] for e in st.events]  # what is still kept
                                s["event"] = st.event_id
                            if len(update) > 1 or new:  # a new stream is announced even before it has data
                                messages.append(("update", update))
                            if st.jpeg is not None and st.frame_seq != s["frame"]:
                                seq, b64 = outer._frame_b64(st)
                                s["frame"] = seq
                                messages.append(("frame", {"stream": st.name, "seq": seq, "size": st.size,
                                                           "jpeg": b64}))
                    if messages:
                        for event, data in messages:
                            self._send(event, data)
                    else:
                        self.wfile.write(b": ping\n\n")  # a client that left fails here
                    self.wfile.flush()

        return Handler


MjpegServer = PreviewServer  # the 0.3 name: same constructor, ``update`` and ``wait_frame``


# --------------------------------------------------------------------------- feeding a stream from a Recognizer
_capture_cls: Any = None


def event_json(event: Any) -> Dict[str, Any]:
    """An :class:`~aknet_edge.runtime.events.ActionEvent` as the JSON Lines write it.

    The one definition of that line is ``JsonlWriter.write_event``; this captures its object
    instead of writing it, so the page and the JSON Lines cannot disagree.
    """
    global _capture_cls
    if _capture_cls is None:
        from .jsonl import JsonlWriter

        class _Capture(JsonlWriter):
            def __init__(self) -> None:  # no output behind it
                self.obj: Dict[str, Any] = {}

            def write(self, obj: Dict[str, Any]) -> None:
                self.obj = obj

        _capture_cls = _Capture
    cap = _capture_cls()
    cap.write_event(event)
    return cap.obj


class PreviewHooks:
    """Callbacks that feed a :class:`PreviewServer` from a Recognizer or a MultiRecognizer, one stream each.

    ``on_result`` draws the overlay (scaled for display: small frames up to :data:`DISPLAY_MIN_SIDE`, large
    ones down to :data:`DISPLAY_MAX_SIDE`) on the result's frame, which
    needs the recogniser's ``keep_images=True``, and publishes it with the result; ``on_event`` publishes
    events; :meth:`watch` pushes the recogniser's telemetry every second. The stream is ``stream`` when
    given, else what the result or event names (``Result.stream``: a MultiRecognizer's camera), else
    :data:`DEFAULT_STREAM`. ``release_images`` drops ``result.image`` once drawn, so results queued for
    a slow reader do not hold frames. The callbacks never raise: a failure is logged once and recognition
    goes on.

    Usage::

        hooks = PreviewHooks(server)
        rec = Recognizer(pkg, src, keep_images=True, on_result=hooks.on_result, on_event=hooks.on_event)
        rec.start()
        hooks.watch(rec)
    """

    def __init__(self, server: PreviewServer, stream: Optional[str] = None, release_images: bool = True) -> None:
        self.server = server
        self.stream = stream
        self.release_images = release_images
        self._warned = False

    def _name(self, obj: Any) -> str:
        return self.stream or getattr(obj, "stream", None) or DEFAULT_STREAM

    def _failed(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("preview failed: %r; recognition goes on (logged once)", exc)

    def on_result(self, result: Any) -> None:
        try:
            name = self._name(result)
            image = getattr(result, "image", None)
            if image is not None:  # drawn on the server's encoder thread, and only if no newer frame came
                self.server.publish_render(name, lambda: draw_overlay(image, result, min_side=DISPLAY_MIN_SIDE,
                                                                      max_side=DISPLAY_MAX_SIDE))
            self.server.publish_result(name, result.to_json())
        except Exception as exc:
            self._failed(exc)
        finally:
            if self.release_images:
                result.image = None

    def on_event(self, event: Any) -> None:
        try:
            self.server.publish_event(self._name(event), event_json(event))
        except Exception as exc:
            self._failed(exc)

    def watch(self, recognizer: Any) -> None:
        """Push ``recognizer.stats()`` (rates, latency, drops, reconnects, the source's state) every second:
        one snapshot (a Recognizer) or one per stream name (a MultiRecognizer)."""
        single = self.stream or getattr(getattr(recognizer, "options", None), "stream", None) or DEFAULT_STREAM

        def provider() -> Dict[str, Dict[str, Any]]:
            stats = recognizer.stats()
            if isinstance(stats, dict):
                return {name: snap.to_dict() for name, snap in stats.items()}
            return {single: stats.to_dict()}

        self.server.watch_stats(None, provider)


# --------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preview-port``, ``--preview-host`` and ``--preview-token`` (check them with :func:`validate`)."""
    g = parser.add_argument_group("live preview page")
    g.add_argument("--preview-port", type=int, metavar="N",
                   help="serve the live preview page at http://HOST:N/ (annotated video of each stream, label "
                        "and confidence, top-k, events timeline, telemetry; MJPEG at /stream.mjpg, one JPEG at "
                        "/frame.jpg); 0 picks a free port")
    g.add_argument("--preview-host", default=DEFAULT_HOST, metavar="ADDR",
                   help="address the preview listens on (default %(default)s: this machine only; any other "
                        "address shares camera video with the network, so set a token)")
    g.add_argument("--preview-token", metavar="TOKEN",
                   help=f"a secret every preview request must carry (open the page as /?token=TOKEN, or send "
                        f"'Authorization: Bearer TOKEN'); default: ${TOKEN_ENV} if set")


def env_token(environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The token from ``AKNET_PREVIEW_TOKEN`` (unset or empty: none; only spaces: an error)."""
    from aknet_edge import settings
    from aknet_edge.errors import ConfigError

    value = settings.raw(TOKEN_ENV, environ)
    if value and not value.strip():
        raise ConfigError(f"{TOKEN_ENV} holds only spaces: expected a non-empty secret; fix or unset the variable")
    return value or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` resolves to a loopback address only (the preview is then not on the network)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_address(host: str, port: int) -> None:
    """The preview's address, tried before anything starts: a busy or invalid port is one error line."""
    from aknet_edge.cli_common import check_number
    from aknet_edge.errors import ConfigError

    check_number("--preview-port", port, minimum=0, maximum=65535, whole=True)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--preview-host {host}: not an IPv4 address or host name here ({exc})") from None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the preview server binds
        try:
            sock.bind(infos[0][4])
        except OSError as exc:
            from aknet_edge.io_utils import os_error_reason

            reason = "already in use" if exc.errno == errno.EADDRINUSE else os_error_reason(exc)
            raise ConfigError(f"--preview-port {port}: cannot serve the preview on {host}:{port}: {reason}; choose "
                              "another port (0 picks a free one)") from None


def validate(args: argparse.Namespace) -> None:
    """The preview flags (from :func:`add_arguments`), before a package, backend or source opens."""
    from aknet_edge.errors import ConfigError

    token = getattr(args, "preview_token", None)
    if token is not None and not token.strip():
        raise ConfigError("--preview-token: empty; expected a non-empty secret (or leave the flag out)")
    if args.preview_port is None:
        if token is not None:
            raise ConfigError("--preview-token: given without --preview-port; add --preview-port N "
                              "(0 picks a free port) or drop the token")
        return
    env_token()
    check_address(args.preview_host, args.preview_port)


def from_args(args: argparse.Namespace, title: str = "aknet_edge") -> Optional[PreviewServer]:
    """The preview server the flags ask for (None without ``--preview-port``); call :func:`validate` first.

    Warns when the address is not a loopback one: the page then shows camera video to the network.
    """
    if args.preview_port is None:
        return None
    token = getattr(args, "preview_token", None) or env_token()
    if not is_loopback(args.preview_host):
        log.warning("the preview on %s:%d is reachable from other machines and shows camera video%s",
                    args.preview_host, args.preview_port,
                    "" if token else f"; anyone who reaches it can watch: set --preview-token or {TOKEN_ENV}")
    return PreviewServer(args.preview_port, args.preview_host, token=token, title=title)


# --------------------------------------------------------------------------- on-screen window
def display_available() -> bool:
    """Whether an on-screen window can be opened (a display and an OpenCV with HighGUI)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return "GUI:" not in cv2.getBuildInformation() or "NONE" not in cv2.getBuildInformation().split("GUI:", 1)[1][:40]


class DisplayWindow:
    """``cv2.imshow`` where a display exists; silently does nothing otherwise."""

    def __init__(self, title: str = "aknet_edge") -> None:
        self.title = title
        self.enabled = display_available()
        if not self.enabled:
            log.debug("no display: preview window disabled")

    def show(self, image_bgr: np.ndarray) -> None:
        if not self.enabled:
            return
        try:
            cv2.imshow(self.title, image_bgr)
            cv2.waitKey(1)
        except cv2.error as exc:
            log.debug("preview window unavailable (%s); disabled", exc)
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


__all__ = ["BOUNDARY", "DEFAULT_HOST", "DEFAULT_STREAM", "DisplayWindow", "MjpegServer", "PreviewHooks",
           "PreviewServer", "TOKEN_ENV", "add_arguments", "check_address", "display_available", "env_token",
           "event_json", "from_args", "is_loopback", "validate"]
