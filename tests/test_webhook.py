"""Webhooks against a real HTTP receiver (http.server on 127.0.0.1): every event once, signed, in order, while
recognition runs at its own pace; a receiver that fails is retried with backoff, one that refuses (4xx) is not,
and one that is away fills a bounded queue, not memory."""

from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import hashlib
import hmac
import http.server
import io
import json
import logging
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import pytest

from aknet_edge.cli_common import run_cli
from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.events import ActionEvent
from aknet_edge.runtime.webhook import SIGNATURE_HEADER, WebhookOptions, WebhookSink, signature, verify
from conftest import REPO
from test_runtime_support import wait_for

PKG = REPO / "tests" / "data" / "package-0.2.0"  # runs without building anything (and without torch)
SRC = "synthetic://?seed=3&segments=4&speed=0&size=112&block=true"  # unpaced: as fast as recognition goes
CLI_SRC = "cam=synthetic://?seed=1&segments=2&speed=0&size=112"


class Receiver:
    """An HTTP receiver on 127.0.0.1: answers ``fail_first`` requests with ``fail_status``, then 200 after
    ``delay_s``; ``status`` overrides every answer. Keeps every request (body, headers, answer)."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503, delay_s: float = 0.0,
                 status: Optional[int] = None) -> None:
        self.fail_first, self.fail_status, self.delay_s, self.status = fail_first, fail_status, delay_s, status
        self.requests: List[Tuple[bytes, Dict[str, str], int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    n = len(receiver.requests)
                    code = receiver.status or (receiver.fail_status if n < receiver.fail_first else 200)
                    receiver.requests.append((body, dict(self.headers), code))
                if code == 200:
                    time.sleep(receiver.delay_s)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/aknet?site=test"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> List[Tuple[bytes, Dict[str, str]]]:
        with self.lock:
            return [(b, h) for b, h, code in self.requests if code == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _events(text: str) -> List[Dict[str, Any]]:
    return [x for x in (json.loads(ln) for ln in text.splitlines()) if x["type"] == "event"]


def _rate(sinks: list) -> Tuple[float, List[Dict[str, Any]]]:
    """Results per second of one unpaced run (the close, where the webhooks drain, is not timed), and its events."""
    out = io.StringIO()
    rec = Recognizer(PKG, SRC, jsonl=out, sinks=sinks)
    try:
        t0 = time.perf_counter()
        n = sum(1 for _ in rec)
        elapsed = time.perf_counter() - t0
    finally:
        rec.close()
    return n / elapsed, _events(out.getvalue())


def test_signatures_are_hmac_sha256_of_the_body():
    body = b'{"type":"event"}'
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) == expected and verify("k", body, expected)
    assert not verify("k", body + b" ", expected) and not verify("other", body, expected)
    assert not verify("k", body, None)


def test_a_failing_slow_receiver_gets_every_event_once_signed_and_recognition_keeps_its_pace():
    """The receiver answers 503 three times, then takes 0.15 s per event: every event arrives once, in order, signed;
    recognition runs as fast with the sink as without (the deliveries wait for the close, not the other way)."""
    secret = "s3cret-" + uuid.uuid4().hex
    with Receiver(fail_first=3, delay_s=0.15) as receiver:
        bare_rate, _ = _rate([])
        sink = WebhookSink(WebhookOptions([receiver.url], secret=secret, backoff_s=0.1, drain_s=30))
        rate, events = _rate([sink])
        accepted = receiver.accepted()
    assert events and len(receiver.requests) == len(events) + 3
    assert [json.loads(body) for body, _ in accepted] == events  # once each, in order, the JSON Lines' records
    for body, headers in accepted:
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == f"sha256={mac}"
        assert headers["Content-Type"] == "application/json"
    assert sink.sent == len(events) and sink.retries == 3 and sink.rejected == 0 and sink.dropped == 0
    # loose: the machine is shared; a sink that made recognition wait for the receiver would be ~10x slower
    assert rate > 0.3 * bare_rate, (rate, bare_rate)


def _event(i: int) -> ActionEvent:
    return ActionEvent("a", float(i), None, 0.9, 0.9, "started", stream="cam", id=uuid.uuid4().hex)


def test_a_receiver_that_refuses_is_not_retried_and_is_counted(caplog):
    with Receiver(status=400) as refusing, Receiver(status=301) as moving, Receiver() as fine:
        sink = WebhookSink(WebhookOptions([refusing.url, moving.url, fine.url], backoff_s=0.05))
        sink.open()
        with caplog.at_level(logging.WARNING, "aknet_edge.runtime.webhook"):
            for i in range(5):
                sink.event(_event(i))
            sink.close()
        assert len(refusing.requests) == 5 and len(moving.requests) == 5  # one request per event, no retry
        assert len(fine.accepted()) == 5
    assert sink.rejected == 10 and sink.sent == 5 and sink.retries == 0
    words = [r.getMessage() for r in caplog.records]
    assert any("answered 400" in w and "not sent again" in w for w in words)
    assert any("redirects are not followed" in w for w in words)


def test_a_receiver_that_is_away_fills_a_bounded_queue_and_never_holds_the_hook():
    """Nothing listens: every event waits in the queue (oldest dropped past queue_max, counted); the hook returns at
    once; the close gives up after drain_s."""
    with Receiver() as gone:
        url = gone.url
    sink = WebhookSink(WebhookOptions([url], queue_max=3, backoff_s=0.05, drain_s=0.5, timeout_s=1.0))
    sink.open()
    slowest = 0.0
    for i in range(10):
        t0 = time.perf_counter()
        sink.event(_event(i))
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.5  # a hook that waited for the receiver would take a timeout (1 s) or more
    assert sink.queue_depth == 3 and sink.dropped == 7
    t0 = time.perf_counter()
    sink.close()
    assert time.perf_counter() - t0 < 3.0 and sink.sent == 0 and sink.retries >= 1


def test_the_run_cli_signs_with_the_setting_and_the_flag_wins(tmp_path, monkeypatch, capsys):
    from aknet_edge import run

    monkeypatch.setenv("AKNET_WEBHOOK_SECRET", "from-the-environment")
    with Receiver() as a, Receiver() as b:
        out = tmp_path / "out.jsonl"
        argv = [CLI_SRC, "--package", str(PKG), "--jsonl", str(out), "--webhook", a.url, "--webhook", b.url]
        assert run_cli(run.main, argv) == 0, capsys.readouterr().err[-3000:]
        events = _events(out.read_text())
        for receiver in (a, b):
            got = receiver.accepted()
            assert [json.loads(body) for body, _ in got] == events and events
            assert all(verify("from-the-environment", body, h[SIGNATURE_HEADER]) for body, h in got)
        n = len(a.requests)
        assert run_cli(run.main, argv + ["--webhook-secret", "from-the-flag"]) == 0
        assert all(verify("from-the-flag", body, h[SIGNATURE_HEADER]) for body, h in a.accepted()[n:])
        monkeypatch.setenv("AKNET_WEBHOOK_SECRET", "")
        n = len(a.requests)
        assert run_cli(run.main, argv) == 0
        assert all(SIGNATURE_HEADER not in h for _, h in a.accepted()[n:]) and len(a.requests) > n


@pytest.mark.parametrize("argv,words", [
    (["--webhook", "ftp://host/x"], "--webhook ftp://host/x: unknown scheme ftp://"),
    (["--webhook", "http://"], "no host"),
    (["--webhook", "http://host:port/x"], "--webhook http://host:port/x"),
    (["--webhook-secret", "s3cret"], "--webhook-secret: given without --webhook URL"),
    (["--webhook", "http://127.0.0.1:9/x", "--webhook-secret", " "], "--webhook-secret: empty"),
])
def test_bad_webhook_flags_are_one_error_before_anything_opens(argv, words, capsys):
    from aknet_edge import run

    rc = run_cli(run.main, [CLI_SRC, "--package", str(PKG), *argv])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and words in errors[0], err[-2000:]
    assert "s3cret" not in err


def test_an_only_spaces_secret_in_the_environment_is_one_error(monkeypatch, capsys):
    from aknet_edge import run

    monkeypatch.setenv("AKNET_WEBHOOK_SECRET", "   ")
    rc = run_cli(run.main, [CLI_SRC, "--package", str(PKG), "--webhook", "http://127.0.0.1:9/x"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: AKNET_WEBHOOK_SECRET holds only spaces" in err


def test_webhook_urls_never_show_their_password(caplog):
    with Receiver(status=500) as receiver:
        url = receiver.url.replace("http://", "http://edge:pa55word@")
        sink = WebhookSink(WebhookOptions([url], backoff_s=0.05, drain_s=0.3))
        sink.open()
        with caplog.at_level(logging.WARNING, "aknet_edge.runtime.webhook"):
            sink.event(_event(0))
            wait_for(lambda: receiver.requests, 10)  # the worker's first try
            sink.close()
        assert receiver.requests and receiver.requests[0][1]["Authorization"].startswith("Basic ")
    assert caplog.records and not any("pa55word" in r.getMessage() for r in caplog.records)
