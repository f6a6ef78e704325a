"""Live previews: an MJPEG HTTP server and an on-screen window where a display exists.

Why MJPEG over plain HTTP: any browser or ``curl`` shows it, with no client
code. The server binds 127.0.0.1 by default (pass ``host="0.0.0.0"`` to share
it deliberately); each client gets the newest frame, slow clients skip frames.
Frames are JPEG-encoded once per update, on the caller's thread. A client that
hangs up (mid-stream or before its headers went out) only ends its own
connection: logged at debug level, never a traceback, never felt by the
recogniser; any other error in a client's connection is logged once as a warning.
"""

from __future__ import annotations

import http.server
import logging
import os
import socket
import socketserver
import sys
import threading
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

BOUNDARY = "aknetframe"


# a client went away, or stalled past the timeout (socket.timeout: TimeoutError from Python 3.10 on)
_HANGUP = (BrokenPipeError, ConnectionError, TimeoutError, socket.timeout)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins client threads: nothing leaks after close
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


class MjpegServer:
    """Serves the latest frame as ``multipart/x-mixed-replace`` at ``/`` (and ``/frame.jpg``)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", quality: int = 80) -> None:
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._stop = threading.Event()
        self.quality = quality
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5.0  # a stalled client cannot block close() for long

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("preview %s: " + fmt, self.client_address[0], *args)

            def handle(self) -> None:
                try:
                    super().handle()
                except _HANGUP as exc:  # hung up before or while its response went out
                    log.debug("preview client %s hung up: %s", self.client_address[0], exc)
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.startswith("/frame.jpg"):
                    jpeg = outer.wait_frame(-1, 5.0)[1]
                    if jpeg is None:
                        self.send_error(503, "no frame yet")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(jpeg)))
                    self.end_headers()
                    self.wfile.write(jpeg)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seq = -1
                try:
                    while not outer._stop.is_set():
                        seq, jpeg = outer.wait_frame(seq, 0.25)
                        if jpeg is None:
                            continue
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                except (_HANGUP + (OSError,)) as exc:
                    log.debug("preview client %s left the stream: %s", self.client_address[0], exc)

        self._httpd = _Server((host, port), Handler)
        self._httpd.timeout = 0.5
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="aknet-preview", daemon=True)
        self._thread.start()
        log.info("MJPEG preview at http://%s:%d/", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def update(self, image_bgr: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._cond:
            self._jpeg = buf.tobytes()
            self._seq += 1
            self._cond.notify_all()

    def wait_frame(self, after_seq: int, timeout: float) -> tuple[int, bytes | None]:
        """The newest frame newer than ``after_seq`` (or None after ``timeout``)."""
        with self._cond:
            if self._seq <= after_seq or self._jpeg is None:
                self._cond.wait(timeout)
            if self._seq <= after_seq or self._jpeg is None:
                return after_seq, None
            return self._seq, self._jpeg

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)


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
