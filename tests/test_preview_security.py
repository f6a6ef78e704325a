"""The preview page under attack: resource holding, DNS rebinding, tokens, and the library's safety rules."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.preview import PreviewServer
from aknet_edge.runtime.preview import server as server_mod
from aknet_edge.runtime.sources.memory import ArraySource
from test_runtime_support import wait_for

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
        assert wait_for(lambda: not server._clients, 3)


def test_an_mjpeg_client_that_hangs_up_while_the_camera_is_down_frees_its_thread():
    with PreviewServer(port=0) as server:  # no frame ever published: the stream has nothing to write
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert s.recv(64).startswith(b"HTTP/1.0 200")
        assert wait_for(lambda: len(server._clients) == 1, 2)
        s.close()
        assert wait_for(lambda: not server._clients, 2)


def test_connections_are_bounded(monkeypatch):
    monkeypatch.setattr(server_mod, "MAX_CLIENTS", 3)
    monkeypatch.setattr(server_mod, "HEADER_DEADLINE_S", 2.0)
    with PreviewServer(port=0) as server:
        idle = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(3)]
        assert wait_for(lambda: len(server._clients) == 3, 2)
        extra = socket.create_connection((server.host, server.port), timeout=5)
        assert extra.recv(16) == b""  # refused at once: closed without an answer
        extra.close()
        assert wait_for(lambda: not server._clients, 5)  # the idle ones are cut off at the header deadline
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


def test_an_mjpeg_client_that_sends_more_then_hangs_up_while_the_camera_is_down_frees_its_thread():
    """Bytes after the request sit unread on the socket: the hang-up behind them must still be seen."""
    with PreviewServer(port=0) as server:
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(f"GET /stream.mjpg HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert s.recv(64).startswith(b"HTTP/1.0 200")
        time.sleep(0.3)  # the request was parsed: what follows is not in its reader's buffer
        s.sendall(b"more bytes the stream never reads")
        time.sleep(0.3)
        s.close()
        assert wait_for(lambda: not server._clients, 3)


def test_connections_are_counted_where_they_are_accepted_and_need_no_extra_thread(monkeypatch):
    """A flood of connections: never more served than the bound, and one thread per served connection (the
    header deadline is kept by the accepting thread, not by a timer thread per connection)."""
    monkeypatch.setattr(server_mod, "MAX_CLIENTS", 4)
    monkeypatch.setattr(server_mod, "HEADER_DEADLINE_S", 1.5)
    with PreviewServer(port=0) as server:
        before = threading.active_count()
        socks = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(12)]
        time.sleep(0.5)
        served = len(server._clients)
        threads = threading.active_count() - before
        refused = 0
        for s in socks[4:]:
            s.settimeout(2)
            try:
                refused += s.recv(16) == b""
            except OSError:
                refused += 1
        for s in socks:
            s.close()
        assert served <= 4 and threads <= 4, (served, threads)
        assert refused == 8
        assert wait_for(lambda: not server._clients, 4)
        assert _status(_get(server, "/state.json")) == 200  # the slots came back


def test_a_preview_on_another_loopback_address_answers_to_it_and_no_url_host_gets_around_the_check():
    with PreviewServer(port=0, host="127.0.0.2") as server:
        assert _status(_get(server, "/state.json", host=f"127.0.0.2:{server.port}")) == 200
        assert _status(_get(server, "/state.json", host=f"evil.example:{server.port}")) == 421
    with PreviewServer(port=0) as server:
        # a request in absolute form names its host in the URL, whatever the Host header says
        assert _status(_get(server, f"http://evil.example:{server.port}/state.json")) == 421
        assert _status(_get(server, f"http://127.0.0.1:{server.port}/state.json")) == 200


def test_a_non_ascii_token_sent_raw_in_the_query_works():
    token = "grüße-🔑"
    with PreviewServer(port=0, token=token) as server:  # curl and scripts send UTF-8 bytes as they are
        with socket.create_connection((server.host, server.port), timeout=10) as s:
            s.sendall(b"GET /state.json?token=" + token.encode() + f" HTTP/1.1\r\nHost: 127.0.0.1:{server.port}"
                      "\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.0 200")
        assert _status(_get(server, "/state.json?token=" + urllib.parse.quote("grüße"))) == 401


def test_every_method_is_checked_for_the_token_before_anything_else():
    with PreviewServer(port=0, token="t0k") as server:
        for method in ("HEAD", "POST", "PUT", "DELETE", "OPTIONS"):
            with socket.create_connection((server.host, server.port), timeout=10) as s:
                s.sendall(f"{method} /state.json HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                          "Content-Length: 0\r\n\r\n".encode())
                assert s.recv(64).startswith(b"HTTP/1.0 401"), method
            with socket.create_connection((server.host, server.port), timeout=10) as s:
                s.sendall(f"{method} /state.json?token=t0k HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                          "Content-Length: 0\r\n\r\n".encode())
                assert s.recv(64).startswith(b"HTTP/1.0 405"), method


def test_the_preview_token_never_reaches_a_log(caplog):
    caplog.set_level(logging.DEBUG)
    with PreviewServer(port=0, token="t0kSECRET") as server:
        assert _status(_get(server, "/state.json?token=t0kSECRET")) == 200
        assert _status(_get(server, "/nowhere?token=t0kSECRET")) == 404
        time.sleep(0.2)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/state.json" in logged and "t0kSECRET" not in logged


def test_the_library_preview_refuses_a_busy_port_or_a_bad_host_as_the_cli_does():
    from aknet_edge.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--preview-port {port}: .*already in use"):
            with Recognizer(PKG, ArraySource([np.zeros((64, 64, 3), np.uint8)] * 2), preview_port=port) as rec:
                list(rec)
    with pytest.raises(ConfigError, match="--preview-host no-such-host.invalid"):
        with Recognizer(PKG, ArraySource([np.zeros((64, 64, 3), np.uint8)] * 2), preview_port=0,
                        preview_host="no-such-host.invalid") as rec:
            list(rec)


def test_the_library_page_shows_what_the_cli_page_shows():
    """A real Recognizer's page over HTTP: the label and its confidence, the top-k, the events timeline,
    telemetry and the overlay drawn for display (112 px cameras scaled to 560), as python -m aknet_edge.run's."""
    with Recognizer(PKG, "synthetic://?seed=3&segments=3&speed=0&size=112&block=true", preview_port=0) as rec:
        results = list(rec)
        time.sleep(1.3)  # one telemetry tick after the end
        state = json.loads(urllib.request.urlopen(rec.preview.url + "state.json", timeout=5).read())
    (stream,) = state["streams"]
    assert results and stream["result"]["label"] == results[-1].label
    assert stream["result"]["confidence"] == round(results[-1].confidence, 4) and len(stream["result"]["top_k"]) > 1
    assert stream["events"] and {e["state"] for e in stream["events"]} == {"ended"}
    assert stream["stats"]["results"] == len(results) and stream["stats"]["source_state"] in ("live", "ended")
    assert stream["size"] == [560, 560]
