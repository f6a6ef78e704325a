"""The preview page under attack: resource holding, DNS rebinding, tokens, and the library's safety rules."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.preview import PreviewServer
from aknet_edge.runtime.preview import server as server_mod
from aknet_edge.runtime.sources.memory import ArraySource

PKG = Path(__file__).parent / "data" / "package-0.2.0"


def _get(server: PreviewServer, path: str, host: str = None, headers: bytes = b"") -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {f'127.0.0.1:{server.port}' if host is None else host}\r\n".encode() + headers
                  + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _wait(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_loopback_preview_refuses_other_host_names():
    with PreviewServer(port=0) as server:
        assert _status(_get(server, "/state.json")) == 200
        assert _status(_get(server, "/state.json", host=f"localhost:{server.port}")) == 200
        for host in (f"evil.example:{server.port}", "evil.example", f"127.0.0.1.nip.io:{server.port}", ""):
            assert _status(_get(server, "/state.json", host=host)) == 421, host


def test_a_non_ascii_token_works_in_the_header_as_in_the_query():
    token = "grüße-🔑-Ω"
    with PreviewServer(port=0, token=token) as server:
        q = urllib.parse.quote(token)
        assert _status(_get(server, f"/state.json?token={q}")) == 200
        assert _status(_get(server, "/state.json", headers=b"Authorization: Bearer " + token.encode() + b"\r\n")) == 200
        assert _status(_get(server, "/state.json", headers=b"X-Preview-Token: " + token.encode() + b"\r\n")) == 200
        assert _status(_get(server, "/state.json", headers=b"Authorization: Bearer gr\xfc\xdfe\r\n")) == 401
        assert _status(_get(server, "/state.json")) == 401


def test_a_client_trickling_its_headers_is_cut_off(monkeypatch):
    monkeypatch.setattr(server_mod, "HEADER_DEADLINE_S", 1.5)
    with PreviewServer(port=0) as server:
        s = socket.create_connection((server.host, server.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 6:
            try:
                s.sendall(b"X")  # a byte a while: each resets a per-read timeout, not the deadline
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            time.sleep(0.4)
        s.close()
        assert closed and time.monotonic() - t0 < 4.0
        assert _wait(lambda: not server._clients, 3)


def test_an_mjpeg_client_that_hangs_up_while_the_camera_is_down_frees_its_thread():
    with PreviewServer(port=0) as server:  # no frame ever published: the stream has nothing to write
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert s.recv(64).startswith(b"HTTP/1.0 200")
        assert _wait(lambda: len(server._clients) == 1, 2)
        s.close()
        assert _wait(lambda: not server._clients, 2)


def test_connections_are_bounded(monkeypatch):
    monkeypatch.setattr(server_mod, "MAX_CLIENTS", 3)
    monkeypatch.setattr(server_mod, "HEADER_DEADLINE_S", 2.0)
    with PreviewServer(port=0) as server:
        idle = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(3)]
        assert _wait(lambda: len(server._clients) == 3, 2)
        extra = socket.create_connection((server.host, server.port), timeout=5)
        assert extra.recv(16) == b""  # refused at once: closed without an answer
        extra.close()
        assert _wait(lambda: not server._clients, 5)  # the idle ones are cut off at the header deadline
        assert _status(_get(server, "/state.json")) == 200  # and the server serves again
        for s in idle:
            s.close()


def test_the_library_preview_follows_the_cli_rules(monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("AKNET_PREVIEW_TOKEN", "from-env")
    with Recognizer(PKG, ArraySource([np.zeros((64, 64, 3), np.uint8)] * 45), preview_port=0,
                    preview_host="0.0.0.0") as rec:
        list(rec)
        url = f"http://127.0.0.1:{rec.preview.port}/state.json"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=5)
        assert err.value.code == 401
        state = json.loads(urllib.request.urlopen(url + "?token=from-env", timeout=5).read())
    assert [r for r in caplog.records if "reachable from other machines" in r.getMessage()]
    stream = state["streams"][0]
    assert stream["result"]["label"] and stream["result"]["top_k"]  # label, confidence and top-k as the CLI's
    assert stream["stats"]["frames"] == 45


def test_the_library_preview_takes_its_token_option():
    with Recognizer(PKG, ArraySource([np.zeros((64, 64, 3), np.uint8)] * 45), preview_port=0,
                    preview_token="mine") as rec:
        list(rec)
        assert rec.preview.token_required
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(rec.preview.url + "state.json", timeout=5)
