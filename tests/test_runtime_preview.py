"""The preview server: the page, Server-Sent Events, MJPEG and JPEG per named stream, the token, the CLI flags.

Device-side (tests/conftest.py DEVICE_TESTS): runs on Python 3.8-3.12 without torch. The page in a real
browser is tests/test_preview_browser.py.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from aknet_edge.errors import ConfigError
from aknet_edge.runtime import Recognizer
from aknet_edge.runtime import preview as pv
from aknet_edge.runtime.events import ActionEvent
from aknet_edge.runtime.jsonl import JsonlWriter
from aknet_edge.runtime.preview import (BOUNDARY, DEFAULT_STREAM, MjpegServer, PreviewHooks, PreviewServer,
                                        PreviewSink)
from aknet_edge.runtime.telemetry import TelemetrySnapshot

from test_runtime_support import demo_package, wait_for

PEER = Path(__file__).parent / "peers" / "preview_run.py"
REPO = Path(__file__).resolve().parents[1]


def _first_part(url: str, timeout: float = 10.0, headers: dict | None = None) -> tuple[str, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        ctype = resp.headers["Content-Type"]
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buf += resp.read1(65536)
            start = buf.find(b"\r\n\r\n")
            if start >= 0 and b"Content-Length:" in buf[:start]:
                n = int(buf[:start].split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(buf) >= start + 4 + n:
                    return ctype, buf[start + 4:start + 4 + n]
    raise AssertionError("no complete part received")


def _check_jpeg(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # SOI ... EOI
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _get(url: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class _Sse:
    """A Server-Sent Events client over a raw socket: (event, data) pairs as they arrive."""

    def __init__(self, server: PreviewServer, query: str = "") -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.sock.sendall(f"GET /events{query} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.headers = head.decode("latin-1")

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the event stream")
            self.buf += chunk
        item, self.buf = self.buf.split(sep, 1)
        return item

    def next(self, timeout: float = 10.0) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            block = self._until(b"\n\n").decode("utf-8")
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])
        raise AssertionError(f"no event within {timeout} s")

    def until(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event, data = self.next(max(0.1, deadline - time.monotonic()))
            if predicate(event, data):
                return data
        raise AssertionError("no such message in time")

    def close(self) -> None:
        self.sock.close()


def _event(state: str, label: str = "move_left", start: float = 1.0, end: float | None = None) -> ActionEvent:
    return ActionEvent(label, start, end, 0.8, 0.9, state=state)


def _threads_settle(before: set, timeout: float = 8.0) -> set:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        extra = {t for t in set(threading.enumerate()) - before if t.is_alive()}
        if not extra:
            return extra
        time.sleep(0.1)
    return extra


# --------------------------------------------------------------------------- the server


def test_server_serves_page_mjpeg_and_jpeg():
    before = set(threading.enumerate())
    server = MjpegServer(port=0)  # the 0.3 name still works
    try:
        assert server.host == "127.0.0.1"
        server.update(np.full((48, 64, 3), 200, np.uint8))  # the single-stream call: the default stream
        assert server.streams == [DEFAULT_STREAM]
        ctype, jpeg = _first_part(server.url + "stream.mjpg")
        assert ctype.startswith("multipart/x-mixed-replace") and BOUNDARY in ctype
        img = _check_jpeg(jpeg)
        assert img.shape == (48, 64, 3) and abs(int(img.mean()) - 200) < 5
        status, _, body = _get(server.url + "frame.jpg")
        assert status == 200
        _check_jpeg(body)
        status, headers, page = _get(server.url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"EventSource" in page and b"<title>" in page
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        status, _, body = _get(server.url + "nothing")
        assert status == 404 and b"/stream.mjpg" in body
        status, _, body = _get(server.url + "frame.jpg?stream=nope")
        assert status == 404 and b"default" in body
    finally:
        server.close()
    assert not _threads_settle(before)


def test_streams_are_named_and_each_has_its_own_frames_results_events_and_stats():
    with PreviewServer(port=0) as server:
        server.publish_frame("front", np.full((32, 32, 3), 30, np.uint8))
        server.publish_frame("back", np.full((40, 60, 3), 220, np.uint8))
        server.publish_result("back", {"type": "result", "timestamp": 5.0, "label": "recede", "confidence": 0.7})
        server.publish_event("back", JsonlWriter_event(_event("started")))
        server.publish_event("back", JsonlWriter_event(_event("ended", end=2.5)))  # replaces the started one
        server.publish_stats("front", {"source_state": "reconnecting", "reconnects": 2})
        server.publish("front", {"type": "stream", "state": "lost", "timestamp": 1.0, "frame": 3, "reconnects": 0})
        assert server.streams == ["front", "back"]
        assert _check_jpeg(_get(server.url + "frame.jpg?stream=back")[2]).shape == (40, 60, 3)
        assert int(_check_jpeg(_get(server.url + "frame.jpg?stream=front")[2]).mean()) < 60
        assert int(_check_jpeg(_first_part(server.url + "stream.mjpg?stream=back")[1]).mean()) > 180
        state = json.loads(_get(server.url + "state.json")[2])
        by = {s["stream"]: s for s in state["streams"]}
        assert by["back"]["result"]["label"] == "recede" and by["front"]["result"] is None
        assert [(e["state"], e["end"]) for e in by["back"]["events"]] == [("ended", 2.5)]
        assert by["front"]["stats"]["source_state"] == "reconnecting" and by["front"]["line"]["state"] == "lost"
        assert by["back"]["size"] == [40, 60]
        with pytest.raises(ValueError, match="expected result, event, stream or stats"):
            server.publish("front", {"type": "nonsense"})


def JsonlWriter_event(ev: ActionEvent) -> dict:  # noqa: N802 - reads as what it is
    """The event line exactly as the JSON Lines write it."""
    out = io.StringIO()
    JsonlWriter(out).write_event(ev)
    return json.loads(out.getvalue())


def test_event_json_is_the_json_lines_event():
    for ev in (_event("started"), _event("ended", end=3.25), ActionEvent("x", 1, 2, 0.5, 0.6, "ended", "source lost")):
        assert pv.event_json(ev) == JsonlWriter_event(ev)


def test_server_sent_events_push_every_change():
    with PreviewServer(port=0, title="bench") as server:
        sse = _Sse(server)
        try:
            assert sse.status == 200 and "text/event-stream" in sse.headers
            event, hello = sse.next()
            assert event == "hello" and hello["title"] == "bench" and len(hello["legend"]) >= 2
            server.publish_result("cam", {"type": "result", "timestamp": 1.0, "label": "appear", "confidence": 0.9})
            got = sse.until(lambda e, d: e == "update" and d.get("result"))
            assert got["stream"] == "cam" and got["result"]["label"] == "appear"
            server.publish_event("cam", JsonlWriter_event(_event("started", "appear", 0.5)))
            got = sse.until(lambda e, d: e == "update" and d.get("events"))
            assert got["events"][0]["label"] == "appear" and got["events"][0]["state"] == "started"
            server.publish_event("cam", JsonlWriter_event(_event("ended", "appear", 0.5, 2.0)))
            got = sse.until(lambda e, d: e == "update" and d.get("events"))
            assert got["events"][0]["state"] == "ended" and got["event_ids"] == [got["events"][0]["id"]]
            server.publish_stats("cam", {"source_state": "live", "capture_fps": 14.9})
            assert sse.until(lambda e, d: e == "update" and d.get("stats"))["stats"]["capture_fps"] == 14.9
            server.publish_frame("cam", np.full((20, 30, 3), 90, np.uint8))
            frame = sse.until(lambda e, d: e == "frame")
            import base64

            assert frame["stream"] == "cam" and frame["size"] == [20, 30]
            assert _check_jpeg(base64.b64decode(frame["jpeg"])).shape == (20, 30, 3)
        finally:
            sse.close()


def test_a_slow_page_gets_the_newest_frame_not_a_backlog():
    """30 frames published at once, while the page reads nothing: it gets a few of them, the newest last."""
    import base64

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 40, (480, 640, 3), np.uint8)
    frames = [noise + np.uint8(6 * i) for i in range(30)]  # each ~8 ms to encode, all published in ~1 ms
    with PreviewServer(port=0) as server:
        sse = _Sse(server)
        try:
            sse.next()  # hello
            for f in frames:
                server.publish_frame("cam", f)
            got = []
            while not got or got[-1] < frames[-1].mean() - 3:
                data = sse.until(lambda e, d: e == "frame", timeout=10)
                got.append(float(_check_jpeg(base64.b64decode(data["jpeg"])).mean()))
            assert len(got) < 15 and got == sorted(got), got
        finally:
            sse.close()


def test_events_older_than_the_history_are_dropped():
    with PreviewServer(port=0, history_s=10.0) as server:
        server.publish_event("cam", JsonlWriter_event(_event("ended", "appear", 1.0, 2.0)))
        server.publish_event("cam", JsonlWriter_event(_event("ended", "recede", 20.0, 25.0)))
        server.publish_result("cam", {"type": "result", "timestamp": 30.0, "label": "recede", "confidence": 0.5})
        assert [e["label"] for e in server.snapshot()["streams"][0]["events"]] == ["recede"]


@pytest.mark.parametrize("how", ["query", "bearer", "header"])
def test_the_token_is_required_from_every_request(how):
    before = set(threading.enumerate())
    with PreviewServer(port=0, token="s3cret t") as server:
        server.update(np.full((24, 24, 3), 128, np.uint8))
        for path in ("", "frame.jpg", "stream.mjpg", "events", "state.json", "index.html"):
            for headers, suffix in (({}, ""), ({}, "?token=wrong"), ({"Authorization": "Bearer nope"}, ""),
                                    ({"X-Preview-Token": ""}, "")):
                status, hdrs, body = _get(server.url + path + suffix, headers)
                assert status == 401 and b"\xff\xd8" not in body and b"token" in body, (path, suffix, status)
                assert hdrs["WWW-Authenticate"].startswith("Bearer")
        good = {"query": ({}, "?token=s3cret%20t"), "bearer": ({"Authorization": "Bearer s3cret t"}, ""),
                "header": ({"X-Preview-Token": "s3cret t"}, "")}[how]
        status, _, body = _get(server.url + "frame.jpg" + good[1], good[0])
        assert status == 200
        _check_jpeg(body)
        assert _get(server.url + good[1], good[0])[0] == 200
        assert server.page_url().endswith("?token=s3cret+t")
    assert not _threads_settle(before)
    with pytest.raises(ValueError, match="empty"):
        PreviewServer(port=0, token=" ")


def test_clients_that_hang_up_end_only_their_connection():
    before = set(threading.enumerate())
    server = PreviewServer(port=0)
    try:
        server.update(np.zeros((16, 16, 3), np.uint8))
        socks = []
        for path in ("/events", "/stream.mjpg", "/events"):
            s = socket.create_connection((server.host, server.port), timeout=5)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
            s.recv(256)
            socks.append(s)
        time.sleep(0.3)
        assert len(server._clients) == 3
        for s in socks:
            s.close()
        deadline = time.monotonic() + 8  # an idle event stream notices at its next ping (2 s)
        while server._clients and time.monotonic() < deadline:
            server.update(np.zeros((16, 16, 3), np.uint8))
            time.sleep(0.1)
        assert not server._clients
        assert _get(server.url + "frame.jpg")[0] == 200  # still serving
    finally:
        server.close()
    assert not _threads_settle(before)


# --------------------------------------------------------------------------- with a recogniser


def test_recognizer_preview_shows_annotated_frames(tmp_path_factory):
    pkg = demo_package(tmp_path_factory)
    with Recognizer(pkg, "synthetic://?seed=3&segments=2&speed=2&size=112", preview_port=0) as rec:
        ctype, jpeg = _first_part(rec.preview.url + "stream.mjpg")
        img = _check_jpeg(jpeg)
        assert img.shape == (560, 560, 3)  # as the run CLI's page: 112 px scaled by 5 for display


def test_hooks_feed_a_stream_from_a_recognizer(tmp_path_factory):
    """What run.py wires: frames scaled up for display, results and events as JSON Lines, telemetry."""
    pkg = demo_package(tmp_path_factory)
    out = io.StringIO()
    with PreviewServer(port=0) as server:
        hooks = PreviewHooks(server, "cam")
        with Recognizer(pkg, "synthetic://?seed=3&segments=2&speed=0&size=112&block=true", jsonl=out,
                        keep_images=True, on_result=hooks.on_result, on_event=hooks.on_event) as rec:
            hooks.watch(rec)
            results = list(rec)
            # the stats reach the page on the next telemetry tick (1 s)
            wait_for(lambda: (server.snapshot()["streams"][0]["stats"] or {}).get("results") == len(results), 10)
            snap = server.snapshot()["streams"][0]
        lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
        jpeg = server.wait_frame(-1, 1.0, "cam")[1]
    assert results and all(r.image is None for r in results)  # released once drawn
    assert snap["size"] == [560, 560]  # 112 px scaled by 5 for display; the model saw 112 px
    assert _check_jpeg(jpeg).shape == (560, 560, 3)
    assert snap["result"] == [o for o in lines if o["type"] == "result"][-1]
    ended = [o for o in lines if o["type"] == "event" and o["state"] == "ended"]
    # the page numbers its events in "id" (its own sequence, for updates), in place of the event's id
    assert ended and [{k: v for k, v in e.items() if k != "id"} for e in snap["events"]] == \
        [{k: v for k, v in e.items() if k != "id"} for e in ended]
    assert snap["stats"]["source_state"] in ("live", "ended") and snap["stats"]["results"] == len(results)


def test_a_failing_preview_never_stops_recognition(tmp_path_factory, caplog, monkeypatch):
    pkg = demo_package(tmp_path_factory)
    server = PreviewServer(port=0)
    server.close()

    def broken(*a, **k):
        raise OSError("encoder gone")

    monkeypatch.setattr(server, "publish_frame", broken)
    monkeypatch.setattr(server, "publish_event", broken)
    hooks = PreviewHooks(server)
    caplog.set_level(logging.WARNING)
    with Recognizer(pkg, "synthetic://?seed=3&segments=2&speed=0&size=64&block=true", keep_images=True,
                    on_result=hooks.on_result, on_event=hooks.on_event) as rec:
        results = list(rec)
    assert len(results) > 5
    assert len([r for r in caplog.records if "encoder gone" in r.getMessage()]) == 1


# --------------------------------------------------------------------------- flags


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    pv.add_arguments(p)
    return p.parse_args(list(argv))


def test_validate_flags(monkeypatch):
    monkeypatch.delenv(pv.TOKEN_ENV, raising=False)
    pv.validate(_args())
    pv.validate(_args("--preview-port", "0", "--preview-token", "t"))
    for argv, message in [
        (("--preview-port", "70000"), "--preview-port 70000: expected a whole number >= 0 and <= 65535"),
        (("--preview-port", "-1"), "--preview-port -1: expected a whole number >= 0 and <= 65535"),
        (("--preview-port", "0", "--preview-token", ""), "--preview-token: empty; expected a non-empty secret"),
        (("--preview-port", "0", "--preview-token", "  "), "--preview-token: empty"),
        (("--preview-token", "t"), "--preview-token: given without --preview-port"),
        (("--preview-port", "0", "--preview-host", "no.such.host.invalid"), "--preview-host no.such.host.invalid"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
            pv.validate(_args(*argv))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--preview-port {port}: cannot serve the preview on "
                                              f"127.0.0.1:{port}: already in use"):
            pv.validate(_args("--preview-port", str(port)))
    monkeypatch.setenv(pv.TOKEN_ENV, "   ")
    with pytest.raises(ConfigError, match=pv.TOKEN_ENV):
        pv.validate(_args("--preview-port", "0"))


def test_from_args_token_from_the_environment_and_the_loopback_warning(monkeypatch, caplog):
    monkeypatch.setenv(pv.TOKEN_ENV, "from-env")
    caplog.set_level(logging.WARNING)
    args = _args("--preview-port", "0")
    pv.validate(args)
    server = pv.from_args(args)
    try:
        assert server is not None and server.token_required
        assert _get(server.url + "state.json")[0] == 401
        assert _get(server.url + "state.json?token=from-env")[0] == 200
    finally:
        server.close()
    assert not caplog.records  # loopback: no warning
    monkeypatch.delenv(pv.TOKEN_ENV)
    server = pv.from_args(_args("--preview-port", "0", "--preview-host", "0.0.0.0"))
    try:
        assert not server.token_required
    finally:
        server.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "reachable from other machines" in warnings[0] and pv.TOKEN_ENV in warnings[0]
    assert pv.from_args(_args()) is None
    assert pv.is_loopback("127.0.0.1") and pv.is_loopback("localhost") and not pv.is_loopback("0.0.0.0")


@pytest.mark.parametrize("argv,message", [
    (["--preview-port", "0", "--preview-token", ""], "--preview-token: empty"),
    (["--preview-port", "65536"], "--preview-port 65536: expected a whole number >= 0 and <= 65535"),
])
def test_bad_preview_flags_are_one_error_line_before_recognition(argv, message):
    """The wiring run.py uses (tests/peers/preview_run.py): one error line, exit 2, nothing started."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(PEER), "synthetic://?seed=1", "--package", "/no/such/package", *argv],
                       capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_hooks_route_by_the_stream_results_and_events_name():
    """A MultiRecognizer's results and events name their camera; its stats() is a mapping by name."""
    from types import SimpleNamespace

    def result(stream):
        r = SimpleNamespace(stream=stream, label="appear", confidence=0.8, fps=3.0, latency_ms=9.0, timestamp=2.0,
                            window_start=0.0, keypoints=[(1.0, 5.0, 5.0, 0.5)],
                            image=np.full((48, 48, 3), 100, np.uint8))
        r.to_json = lambda: {"stream": stream, "type": "result", "timestamp": 2.0, "label": "appear",
                             "confidence": 0.8}
        return r

    snap = SimpleNamespace(to_dict=lambda: {"source_state": "live", "capture_fps": 15.0})
    rec = SimpleNamespace(stats=lambda: {"front": snap, "rear": snap})
    with PreviewServer(port=0) as server:
        hooks = PreviewHooks(server)
        hooks.on_result(result("front"))
        hooks.on_result(result("rear"))
        ev = _event("started", "appear", 0.5)
        ev.stream = "rear"
        hooks.on_event(ev)
        hooks.watch(rec)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(s["stats"] for s in server.snapshot()["streams"]):
            time.sleep(0.1)
        by = {s["stream"]: s for s in server.snapshot()["streams"]}
        assert PreviewHooks(server, "cam")._name(result("front")) == "cam"  # an explicit name wins
    assert sorted(by) == ["front", "rear"]
    assert by["front"]["size"] == [480, 480] and by["front"]["result"]["stream"] == "front"  # 48 px x 10
    assert [e["stream"] for e in by["rear"]["events"]] == ["rear"] and not by["front"]["events"]
    assert by["front"]["stats"]["capture_fps"] == 15.0 and by["rear"]["stats"]["source_state"] == "live"


def test_the_pipeline_sink_feeds_the_page():
    """PreviewSink: results, events, stream lines, frames and telemetry reach the page under the camera's name."""
    from types import SimpleNamespace

    def result(stream, label):
        return SimpleNamespace(stream=stream, to_json=lambda: {"type": "result", "timestamp": 2.0, "label": label,
                                                               "confidence": 0.8})

    def snap(state, fps):
        return TelemetrySnapshot(10, 2, fps, 1.0, 5.0, 9.0, 0, 0, 0, 3.0, source_state=state)

    with PreviewServer(port=0) as server:
        sink = PreviewSink(server)
        assert sink.wants_frames and sink.wants_stats
        sink.stats(snap("live", 15.0))  # a one-camera snapshot before the camera fed anything: no card yet
        assert server.streams == []
        # one unnamed camera: the default stream
        sink.result(result(None, "appear"))
        sink.frame(None, np.full((24, 32, 3), 90, np.uint8))
        sink.stream_state(None, "lost", {"timestamp": 1.5, "frame": 7, "reconnects": 0})
        sink.event(_event("started"))
        sink.stats(SimpleNamespace(to_dict=snap("reconnecting", 0.0).to_dict, streams={"0": snap("live", 1.0)}))
        # two named cameras: each its own card, each lane's telemetry to its own
        rear = _event("ended", end=2.5)
        rear.stream = "rear"
        sink.result(result("front", "recede"))
        sink.frame("rear", np.full((40, 60, 3), 220, np.uint8))
        sink.event(rear)
        sink.stats(SimpleNamespace(to_dict=lambda: {}, streams={"front": snap("live", 12.0),
                                                                "rear": snap("ended", 0.0)}))
        assert _check_jpeg(server.wait_frame(-1, 5.0, "rear")[1]).shape == (40, 60, 3)
        assert _check_jpeg(server.wait_frame(-1, 5.0, DEFAULT_STREAM)[1]).shape == (24, 32, 3)
        by = {s["stream"]: s for s in server.snapshot()["streams"]}
        sink.close()  # the caller's server: left open
        assert not server.closing
    assert sorted(by) == sorted([DEFAULT_STREAM, "front", "rear"])
    one = by[DEFAULT_STREAM]
    assert one["result"]["label"] == "appear" and one["stats"]["source_state"] == "reconnecting"
    assert one["line"]["type"] == "stream" and one["line"]["state"] == "lost" and one["line"]["frame"] == 7
    assert [{k: v for k, v in e.items() if k != "id"} for e in one["events"]] == [JsonlWriter_event(_event("started"))]
    assert by["front"]["result"]["label"] == "recede" and by["front"]["stats"]["capture_fps"] == 12.0
    assert [e["state"] for e in by["rear"]["events"]] == ["ended"] and by["rear"]["stats"]["source_state"] == "ended"
    owned = PreviewServer(port=0)
    shown = PreviewSink(owned, owns_server=True, display=True)  # the run CLI's page: overlay drawn for display
    assert shown.wants_images and not shown.wants_frames
    cam = result("cam", "appear")
    cam.image = np.full((24, 32, 3), 90, np.uint8)
    shown.result(cam)
    assert _check_jpeg(owned.wait_frame(-1, 5.0, "cam")[1]).shape == (480, 640, 3)  # 24 px x 20
    shown.close()
    assert owned.closing
