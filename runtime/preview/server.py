"""The preview page's HTTP server: the page, Server-Sent Events, MJPEG and single JPEGs, with the standard library only.

Why the standard library: the page must run on a Jetson next to the robot with nothing extra
installed, and serve nothing it fetched from elsewhere. :class:`PreviewServer` is the page state
(:class:`~.state.PreviewState`, the publishing API) plus this server; :class:`PreviewHandler` answers
one client's requests on its own thread:

* ``/`` the page (``runtime/web/preview.html``), ``/state.json`` everything it shows, once;
* ``/events`` Server-Sent Events: every change pushed as it happens (no polling);
* ``/stream.mjpg`` MJPEG and ``/frame.jpg`` one JPEG (``?stream=NAME``; the first stream without it).

With a token every request must carry it (``?token=``, ``Authorization: Bearer`` or an
``X-Preview-Token`` header), else 401 and no frame. A client that hangs up only ends its own
connection (logged at debug level, never a traceback).
"""

from __future__ import annotations

import hmac
import http.server
import ipaddress
import json
import logging
import select
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .state import HISTORY_S, PreviewState

log = logging.getLogger(__name__)

BOUNDARY = "aknetframe"
DEFAULT_HOST = "127.0.0.1"
# the page is package data of aknet_edge.runtime (runtime/web/), one level above this subpackage
PAGE = Path(__file__).resolve().parent.parent / "web" / "preview.html"
_PING_S = 2.0  # an idle event stream sends a comment this often (a client that left is noticed)
HEADER_DEADLINE_S = 5.0  # a request's line and headers must have arrived by then (a trickling client is cut off)
MAX_CLIENTS = 32  # connections served at once; more are closed at once (each holds a thread and a socket)
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# nothing but this server: no CDN, no fonts, no beacons (robots sit on closed networks)
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                            "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
                 "Referrer-Policy": "no-referrer"}

# a client went away, or stalled past the timeout (socket.timeout: TimeoutError from Python 3.10 on)
_HANGUP = (BrokenPipeError, ConnectionError, TimeoutError, socket.timeout)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_json_default)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """The listening socket; ``preview`` is the :class:`PreviewServer` its handlers answer for."""

    # daemon threads: ThreadingMixIn then keeps no list of them (on Python 3.8 that list only grows); the
    # PreviewServer tracks its live client threads itself and joins them on close
    daemon_threads = True
    allow_reuse_address = True
    _warned = False

    def __init__(self, address: Tuple[str, int], preview: PreviewServer) -> None:
        self.preview = preview
        super().__init__(address, PreviewHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """At most :data:`MAX_CLIENTS` connections at once: a flood of idle sockets cannot take every thread."""
        if len(self.preview._clients) >= MAX_CLIENTS:
            if not self.preview._warned_full:
                self.preview._warned_full = True
                log.warning("preview: %d clients connected; further connections are refused until one leaves "
                            "(logged once)", MAX_CLIENTS)
            return False
        return True

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


class PreviewHandler(http.server.BaseHTTPRequestHandler):
    """One client's requests (its own thread); the state it serves is ``self.server.preview``."""

    server: _Server
    timeout = 5.0  # a stalled client cannot hold its thread (or close()) for long
    server_version = "aknet-preview"

    @property
    def preview(self) -> PreviewServer:
        return self.server.preview

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("preview %s: " + fmt, self.client_address[0], *args)

    def handle(self) -> None:
        me = threading.current_thread()
        clients = self.preview._clients
        clients.add(me)
        # the whole request line and headers within HEADER_DEADLINE_S: the socket timeout alone restarts with
        # every byte, so a client trickling one byte every few seconds would hold this thread for ever
        self._headers_done = False
        watchdog = threading.Timer(HEADER_DEADLINE_S, self._cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            super().handle()
        except _HANGUP + (OSError,) as exc:  # hung up (or was cut off) before or while its response went out
            log.debug("preview client %s hung up: %s", self.client_address[0], exc)
            self.close_connection = True
        finally:
            watchdog.cancel()
            clients.discard(me)

    def _cut_off(self) -> None:
        if not self._headers_done:
            log.debug("preview client %s: no complete request within %.0f s; closed", self.client_address[0],
                      HEADER_DEADLINE_S)
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _gone(self) -> bool:
        """Whether the client closed its side (checked while nothing is sent: a camera that is down)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _host_allowed(self) -> bool:
        """A loopback preview answers only to its own names: a page in the operator's browser cannot read frames
        through a DNS name rebound to 127.0.0.1 (DNS rebinding)."""
        if not self.preview.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.preview.port
        return host in {f"{name}:{port}" for name in _LOOPBACK_NAMES} or (port == 80 and host in _LOOPBACK_NAMES)

    def _reply(self, code: int, ctype: str, body: Optional[bytes] = None,
               extra: Optional[Dict[str, str]] = None) -> None:
        """The head every answer has, then ``body``; without one, a stream follows (never cached, no length)."""
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache" if body is None else "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body is not None:
            self.wfile.write(body)

    def _plain(self, code: int, text: str, extra: Optional[Dict[str, str]] = None) -> None:
        self._reply(code, "text/plain; charset=utf-8", (text + "\n").encode("utf-8"), extra)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._headers_done = True
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        if not self._host_allowed():
            self._plain(421, "421: this preview answers only to its own address (127.0.0.1, localhost or [::1] "
                             f"with port {self.preview.port})")
            return
        if not self.preview._authorised(query, self.headers):
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
        self._reply(200, "text/html; charset=utf-8", self.preview.page, _PAGE_HEADERS)

    def _state(self, _stream: Optional[str]) -> None:
        self._reply(200, "application/json", _dumps(self.preview.snapshot()).encode("utf-8"))

    def _known(self, stream: Optional[str]) -> bool:
        names = self.preview.streams
        if stream is None or stream in names:
            return True
        self._plain(404, f"404: no stream {stream!r}; streams: {', '.join(names) or 'none yet'}")
        return False

    def _jpeg(self, stream: Optional[str]) -> None:
        if not self._known(stream):
            return
        jpeg = self.preview._wait_frame(-1, 5.0, stream)[1]
        if jpeg is None:
            self._plain(503, "503: no frame yet")
            return
        self._reply(200, "image/jpeg", jpeg)

    def _mjpeg(self, stream: Optional[str]) -> None:
        if not self._known(stream):
            return
        self._reply(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        preview, seq = self.preview, -1
        try:
            while not preview.closing:
                seq, jpeg = preview._wait_frame(seq, 0.25, stream)
                if jpeg is None:
                    if self._gone():  # no frame to write (a camera down): notice a client that left anyway
                        return
                    continue
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except (_HANGUP + (OSError,)) as exc:
            log.debug("preview client %s left the stream: %s", self.client_address[0], exc)

    def _events(self, _stream: Optional[str]) -> None:
        self._reply(200, "text/event-stream; charset=utf-8")
        try:
            self._event_loop()
        except (_HANGUP + (OSError,)) as exc:
            log.debug("preview client %s left the event stream: %s", self.client_address[0], exc)

    def _send(self, event: str, data: Any) -> None:
        self.wfile.write(f"event: {event}\ndata: {_dumps(data)}\n\n".encode("utf-8"))

    def _event_loop(self) -> None:
        """A hello (the page's fixed data), then what changed since the last message, or a ping when nothing did."""
        preview = self.preview
        hello = preview.snapshot()
        hello.pop("streams")
        self.wfile.write(b"retry: 2000\n\n")
        self._send("hello", hello)
        self.wfile.flush()
        seen: Dict[str, Dict[str, int]] = {}
        version = -1
        while not preview.closing:
            version, messages = preview.changes(version, seen, _PING_S)
            for event, data in messages:
                self._send(event, data)
            if not messages:
                self.wfile.write(b": ping\n\n")  # a client that left fails here
            self.wfile.flush()


class PreviewServer(PreviewState):
    """The preview page, its event stream, MJPEG and single JPEGs for any number of named streams.

    ``port`` 0 picks a free port (see :attr:`port`); ``token`` (non-empty) is required from every
    request; ``history_s`` is how far back the page's event timeline reaches. Publish with the
    methods of :class:`~.state.PreviewState`; they never wait for a client.
    """

    def __init__(self, port: int = 0, host: str = DEFAULT_HOST, quality: int = 80, token: Optional[str] = None,
                 history_s: float = HISTORY_S, title: str = "aknet_edge") -> None:
        if token is not None and not token.strip():
            raise ValueError("the preview token is empty: give a non-empty secret or none")
        self.page = PAGE.read_bytes()  # missing only from a broken install: fail here, not per request
        self._token = token
        self._clients: set = set()
        self._warned_full = False
        # bind before the state starts its threads: a busy port then leaves nothing running
        self._httpd = _Server((host, port), self)
        super().__init__(quality, history_s, title)
        self.host, self.port = self._httpd.server_address[:2]
        self.loopback = ipaddress.ip_address(self.host).is_loopback
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="aknet-preview", daemon=True)
        self._thread.start()
        log.info("preview page at %s%s", self.url, " (token required)" if token else "")

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

    def _authorised(self, query: Dict[str, List[str]], headers: Any) -> bool:
        if self._token is None:
            return True
        # the query is percent-decoded as UTF-8; header values arrive as latin-1 text of the raw bytes, so a
        # token with non-ASCII characters is compared as the UTF-8 bytes the client sent, whichever way it came
        given = (query.get("token") or [""])[0].encode("utf-8")
        if not given:
            auth = headers.get("Authorization", "")
            raw = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("X-Preview-Token", "")
            try:
                given = raw.encode("latin-1")
            except UnicodeEncodeError:
                given = raw.encode("utf-8")
        return bool(given) and hmac.compare_digest(given, self._token.encode("utf-8"))

    def close(self) -> None:
        """Stop serving: every client connection ends (within a few seconds for a stalled one), threads joined."""
        self._halt()  # client loops see it first, so shutdown() is not held up by them
        self._httpd.shutdown()
        self._httpd.server_close()
        super().close()
        self._thread.join(5.0)
        deadline = time.monotonic() + 6.0
        for t in list(self._clients):
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("preview: a client thread did not end within 6 s of close")


MjpegServer = PreviewServer  # the 0.3 name: same constructor, ``update`` and ``wait_frame``


__all__ = ["BOUNDARY", "DEFAULT_HOST", "HEADER_DEADLINE_S", "MAX_CLIENTS", "MjpegServer", "PAGE", "PreviewHandler",
           "PreviewServer"]
