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

What no client can do (each holds a thread and a socket while it is served): keep more than
:data:`MAX_CLIENTS` connections open (further ones are closed at once, counted where they are
accepted), take longer than :data:`HEADER_DEADLINE_S` over its request line and headers (the
accepting thread cuts it off: no thread per connection waits for that), or stay connected after
hanging up while its camera sends nothing (an MJPEG or event stream notices the close). Every
request is answered in this order: its ``Host`` (a loopback preview answers only to its own
address: DNS rebinding), its token, then whatever it asked for -- other methods than GET included.
"""

from __future__ import annotations

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
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..http_access import host_allowed, token_given
from .state import HISTORY_S, PreviewState

log = logging.getLogger(__name__)

BOUNDARY = "aknetframe"
DEFAULT_HOST = "127.0.0.1"
# the page is package data of aknet_edge.runtime (runtime/web/), one level above this subpackage
PAGE = Path(__file__).resolve().parent.parent / "web" / "preview.html"
_PING_S = 2.0  # an idle event stream sends a comment this often (a client that left is noticed)
HEADER_DEADLINE_S = 5.0  # a request's line and headers must have arrived by then (a trickling client is cut off)
MAX_CLIENTS = 32  # connections served at once; more are closed at once (each holds a thread and a socket)
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
    """The listening socket; ``preview`` is the :class:`PreviewServer` its handlers answer for.

    The accepting thread (``serve_forever``) counts the connections it hands out and, between accepts
    (:meth:`service_actions`, every poll), closes those whose request has not arrived by its deadline.
    """

    # daemon threads: ThreadingMixIn then keeps no list of them (on Python 3.8 that list only grows); the
    # PreviewServer tracks its live client threads itself and joins them on close
    daemon_threads = True
    allow_reuse_address = True
    _warned = False

    def __init__(self, address: Tuple[str, int], preview: PreviewServer) -> None:
        self.preview = preview
        super().__init__(address, PreviewHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """At most :data:`MAX_CLIENTS` connections at once: a flood of idle sockets cannot take every thread.
        Counted here, on the accepting thread, before the connection's thread starts (no race with it)."""
        preview = self.preview
        with preview._slots_lock:
            if len(preview._waiting) + preview._serving >= MAX_CLIENTS:
                full = True
            else:
                full = False
                preview._waiting[request] = time.monotonic() + HEADER_DEADLINE_S
        if full:
            if not preview._warned_full:
                preview._warned_full = True
                log.warning("preview: %d clients connected; further connections are refused until one leaves "
                            "(logged once)", MAX_CLIENTS)
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread for it (the machine's limit): its slot is free again
            self.preview._slot_free(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.preview._slot_free(request)

    def service_actions(self) -> None:
        """Between accepts: cut off every connection whose request line and headers are not in by their deadline
        (a per-read timeout restarts with every byte, so a client trickling one byte a second would hold its
        thread for ever)."""
        now = time.monotonic()
        with self.preview._slots_lock:
            pending = self.preview._waiting
            late = [sock for sock, deadline in pending.items() if deadline <= now]
            for sock in late:  # cut off once; the slot stays taken until its thread has ended
                pending[sock] = float("inf")
        for sock in late:
            log.debug("preview client: no complete request within %.0f s; closed", HEADER_DEADLINE_S)
            try:
                sock.shutdown(socket.SHUT_RDWR)  # its thread's read ends; the thread then closes the socket
            except OSError:
                pass

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
        try:
            super().handle()
        except _HANGUP + (OSError,) as exc:  # hung up (or was cut off) before or while its response went out
            log.debug("preview client %s hung up: %s", self.client_address[0], exc)
            self.close_connection = True
        finally:
            clients.discard(me)

    def _gone(self) -> bool:
        """Whether the client closed its side (checked while nothing is sent: a camera that is down). Whatever it
        sent after its request is read and dropped (it means nothing here), so the close behind it is seen."""
        try:
            for _ in range(16):  # a client that keeps sending is read a little each time, never for ever
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                if not self.connection.recv(4096):
                    return True
            return False
        except (OSError, ValueError):
            return True

    def _host_allowed(self) -> bool:
        """A loopback preview answers only to its own names: a page in the operator's browser cannot read frames
        through a DNS name rebound to 127.0.0.1 (DNS rebinding). The names: 127.0.0.1, localhost, [::1] and the
        address it is bound to, with its port (a request in absolute form names its host in the URL)."""
        return host_allowed(self.preview.host, self.preview.port, self.path, self.headers)

    def _gate(self) -> bool:
        """Before anything else a request asks: its Host, then its token; False when it was refused (answered)."""
        self.preview._slot_served(self.request)  # its request line and headers are in: no deadline from here on
        if not self._host_allowed():
            self._plain(421, "421: this preview answers only to its own address (127.0.0.1, localhost or [::1] "
                             f"with port {self.preview.port})")
            return False
        if not self.preview._authorised(urllib.parse.urlsplit(self.path).query, self.headers):
            self._plain(401, "401 unauthorised: this preview needs its token (open the page as "
                             "/?token=TOKEN, or send 'Authorization: Bearer TOKEN')",
                        {"WWW-Authenticate": 'Bearer realm="aknet_edge preview"'})
            return False
        return True

    def _other_method(self) -> None:
        """Any method but GET: refused, after the same checks as a GET (nothing answers before the token)."""
        if self._gate():
            self._plain(405, f"405: {self.command} is not served here; the preview answers GET only",
                        {"Allow": "GET"})

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = do_TRACE = _other_method

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
        if not self._gate():
            return
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
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
        self._clients: set = set()  # the threads serving a client now (joined on close)
        # connection slots (MAX_CLIENTS), taken on the accepting thread: sockets whose request has not arrived,
        # with their deadline, and the number being served
        self._slots_lock = threading.Lock()
        self._waiting: Dict[Any, float] = {}
        self._serving = 0
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

    def _slot_served(self, request: Any) -> None:
        """``request``'s line and headers arrived: its slot moves from waiting (with a deadline) to served."""
        with self._slots_lock:
            if self._waiting.pop(request, None) is not None:
                self._serving += 1

    def _slot_free(self, request: Any) -> None:
        """``request``'s connection ended: its slot is free."""
        with self._slots_lock:
            if self._waiting.pop(request, None) is None:
                self._serving = max(0, self._serving - 1)

    def _authorised(self, query: str, headers: Any) -> bool:
        """Whether a request with this query string and these headers carries the token (:func:`token_given`)."""
        return token_given(self._token, query, headers)

    def close(self) -> None:
        """Stop serving: every client connection ends (within a few seconds for a stalled one), threads joined."""
        self._halt()  # client loops see it first, so shutdown() is not held up by them
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._slots_lock:
            waiting = list(self._waiting)
        for sock in waiting:  # connections whose request has not come: no need to wait for their deadline
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        super().close()
        self._thread.join(5.0)
        deadline = time.monotonic() + 6.0
        for t in list(self._clients):
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("preview: a client thread did not end within 6 s of close")


MjpegServer = PreviewServer  # the 0.3 name: same constructor, ``update`` and ``wait_frame``


__all__ = ["BOUNDARY", "DEFAULT_HOST", "HEADER_DEADLINE_S", "MAX_CLIENTS", "MjpegServer", "PAGE", "PreviewHandler",
           "PreviewServer", "host_allowed", "token_given"]
