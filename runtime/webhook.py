"""Webhooks: every event POSTed as JSON to one or more URLs, signed, retried, never in recognition's way.

``--webhook URL`` (repeatable) POSTs each event line (:func:`~aknet_edge.runtime.records.event_record`, the
JSON Lines schema) with ``Content-Type: application/json``. With ``--webhook-secret S`` (or the
``AKNET_WEBHOOK_SECRET`` setting) every request carries ``X-Aknet-Signature: sha256=<hex>``, the HMAC-SHA256
of the exact body under the secret, so the receiver can tell the box's requests from anyone else's
(:func:`signature`; compare with ``hmac.compare_digest``).

Why a thread and a bounded queue per URL: a receiver that is slow, down or failing must neither slow
recognition (the sink's hook only appends to a queue) nor hold up the other receivers. Per URL, events go
out in order, one request at a time:

* 2xx: delivered.
* a timeout, a connection error, 5xx, 408 or 429: retried after a pause that doubles from ``backoff_s`` to
  ``backoff_max_s`` (a 429/503's ``Retry-After`` in seconds is honoured up to that), until it is delivered or
  the queue, full (``queue_max``), drops its oldest event (counted, logged).
* any other answer (4xx: the receiver will not take it, 3xx: not followed): not retried; logged and counted
  (:attr:`WebhookSink.rejected`).

At the end of a run what is queued gets ``drain_s`` seconds to go out. A request that timed out may still
have reached the receiver, so it may see an event twice: it keeps one per ``(id, state)``.

Only the standard library (http.client): the runtime stays light.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

from aknet_edge import __version__, settings
from aknet_edge.checks import check_number
from aknet_edge.errors import ConfigError
from aknet_edge.redact import redact

from . import records
from .sinks import Sink

log = logging.getLogger(__name__)

SECRET_ENV = "AKNET_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Aknet-Signature"
RETRYABLE = (408, 429)  # 4xx answers that mean "later", not "never"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Aknet-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: Optional[str]) -> bool:
    """Whether ``header`` is the signature of ``body`` (for receivers written in Python; constant time)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def check_url(url: str, flag: str = "--webhook") -> urllib.parse.SplitResult:
    """An ``http://`` or ``https://`` URL with a host; ConfigError saying what was expected."""
    expected = "expected http://HOST[:PORT]/PATH or https://..."
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"{flag} {redact(url)}: {exc}; {expected}") from None
    if parts.scheme.lower() not in ("http", "https"):
        given = f"{parts.scheme}://" if parts.scheme else "(none)"
        raise ConfigError(f"{flag} {redact(url)}: unknown scheme {given}; {expected}")
    if not parts.hostname:
        raise ConfigError(f"{flag} {redact(url)}: no host; {expected}")
    if any(c.isspace() for c in url):
        raise ConfigError(f"{flag} {redact(url)}: white space in the URL; {expected} (percent-encode it)")
    return parts


def env_secret(environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The secret from ``AKNET_WEBHOOK_SECRET`` (unset or empty: none; only spaces: an error)."""
    value = settings.raw(SECRET_ENV, environ)
    if value and not value.strip():
        raise ConfigError(f"{SECRET_ENV} holds only spaces: expected a non-empty secret; fix or unset the variable")
    return value or None


@dataclass
class WebhookOptions:
    """What ``--webhook`` and ``--webhook-secret`` say, and the delivery's limits (library:
    ``WebhookSink(WebhookOptions(["https://ops/hook"], secret="..."))``)."""

    urls: List[str]
    secret: Optional[str] = None
    timeout_s: float = 5.0  # per request: connect, send, answer
    backoff_s: float = 0.5  # the first pause after a failure; doubles
    backoff_max_s: float = 30.0
    queue_max: int = 1000  # events waiting per URL; past it the oldest is dropped
    drain_s: float = 10.0  # at the end of a run: how long what is queued may take to go out
    headers: Dict[str, str] = field(default_factory=dict)  # more headers (e.g. Authorization)

    def check(self) -> "WebhookOptions":
        if not self.urls:
            raise ConfigError("webhooks: no URL given; add --webhook URL")
        for url in self.urls:
            check_url(url)
        if self.secret is not None and not self.secret.strip():
            raise ConfigError("--webhook-secret: empty; give a secret the receivers share, or drop it")
        check_number("timeout_s", self.timeout_s, above=0, optional=False)
        check_number("backoff_s", self.backoff_s, above=0, optional=False)
        check_number("backoff_max_s", self.backoff_max_s, minimum=self.backoff_s, optional=False)
        check_number("queue_max", self.queue_max, minimum=1, whole=True, optional=False)
        check_number("drain_s", self.drain_s, minimum=0, optional=False)
        return self


class _Receiver:
    """One URL: its queue, its thread, its counters."""

    def __init__(self, url: str, opts: WebhookOptions, index: int) -> None:
        self.url = url
        self.shown = redact(url)
        self.parts = check_url(url)
        self.opts = opts
        self.queue: Deque[Tuple[bytes, float]] = collections.deque()
        self.cond = threading.Condition()
        self.closing = False
        self.deadline = float("inf")  # when closing: give up then
        self.sent = 0
        self.rejected = 0
        self.dropped = 0
        self.retries = 0
        self.failing_since: Optional[float] = None
        self.thread = threading.Thread(target=self._run, name=f"aknet-webhook-{index}", daemon=True)
        self.thread.start()

    def put(self, body: bytes) -> None:
        with self.cond:
            if len(self.queue) >= self.opts.queue_max:
                self.queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("webhook %s: %d event(s) queued, the oldest dropped (%d in all): the receiver does "
                                "not keep up or is away", self.shown, self.opts.queue_max, self.dropped)
            self.queue.append((body, time.monotonic()))
            self.cond.notify()

    def close(self, drain_s: float) -> None:
        with self.cond:
            self.closing = True
            self.deadline = time.monotonic() + drain_s
            self.cond.notify()

    def _run(self) -> None:
        pause = self.opts.backoff_s
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if not self.queue or time.monotonic() >= self.deadline:
                    return
                body = self.queue[0][0]
            verdict, wait_s, why = self._post(body)
            if verdict == "retry":
                self.retries += 1
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    log.warning("webhook %s: %s; retrying (events wait, in order)", self.shown, why)
                delay = min(max(pause, wait_s or 0.0), self.opts.backoff_max_s)
                pause = min(pause * 2, self.opts.backoff_max_s)
                with self.cond:  # a pause that close() cuts short at its deadline
                    end = min(time.monotonic() + delay, self.deadline)
                    while time.monotonic() < end:
                        self.cond.wait(end - time.monotonic())
                continue
            pause = self.opts.backoff_s
            if self.failing_since is not None and verdict == "sent":
                log.warning("webhook %s: delivering again after %.1f s", self.shown,
                            time.monotonic() - self.failing_since)
                self.failing_since = None
            with self.cond:
                if self.queue and self.queue[0][0] is body:
                    self.queue.popleft()
            if verdict == "sent":
                self.sent += 1
            else:
                self.rejected += 1
                log.warning("webhook %s: %s; the event is not sent again (%d rejected in all)", self.shown, why,
                            self.rejected)

    def _post(self, body: bytes) -> Tuple[str, Optional[float], str]:
        """One request -> ("sent" | "retry" | "rejected", seconds the receiver asked to wait, why)."""
        p = self.parts
        path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        headers = {"Content-Type": "application/json", "User-Agent": f"aknet-edge/{__version__}",
                   "Content-Length": str(len(body)), **self.opts.headers}
        if self.opts.secret:
            headers[SIGNATURE_HEADER] = signature(self.opts.secret, body)
        if p.username is not None:  # credentials in the URL: HTTP basic authentication
            user = urllib.parse.unquote(p.username) + ":" + urllib.parse.unquote(p.password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        timeout = self.opts.timeout_s
        conn: Any
        if p.scheme.lower() == "https":
            conn = http.client.HTTPSConnection(p.hostname, p.port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(p.hostname, p.port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(65536)
            status = resp.status
            retry_after = _retry_after(resp.getheader("Retry-After"))
        except (OSError, http.client.HTTPException) as exc:
            return "retry", None, _reason(exc)
        finally:
            conn.close()
        if 200 <= status < 300:
            return "sent", None, ""
        if status >= 500 or status in RETRYABLE:
            return "retry", retry_after, f"the receiver answered {status}"
        return "rejected", None, f"the receiver answered {status}" + (" (redirects are not followed)"
                                                                     if 300 <= status < 400 else "")


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: the usual backoff instead
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class WebhookSink(Sink):
    """POSTs every event to each URL (see the module's docstring). Counters, summed over the URLs: :attr:`sent`,
    :attr:`rejected` (not retried), :attr:`dropped` (the queue was full), :attr:`retries`."""

    name = "webhook"

    def __init__(self, options: WebhookOptions) -> None:
        self.options = options.check()
        self._receivers: List[_Receiver] = []
        self._closed = False

    def open(self) -> None:
        if not self._receivers and not self._closed:
            self._receivers = [_Receiver(url, self.options, i) for i, url in enumerate(self.options.urls)]

    def event(self, event: Any) -> None:
        if not self._receivers:
            self.open()
        body = json.dumps(records.event_record(event), separators=(",", ":")).encode("utf-8")  # the JSON Lines' line
        for r in self._receivers:
            r.put(body)

    def close(self) -> None:
        """What is queued gets ``drain_s`` seconds (all URLs together) to go out; what is left is counted lost."""
        if self._closed:
            return
        self._closed = True
        for r in self._receivers:
            r.close(self.options.drain_s)
        end = time.monotonic() + self.options.drain_s + self.options.timeout_s + 1.0
        for r in self._receivers:
            r.thread.join(max(0.0, end - time.monotonic()))
            left = len(r.queue)
            if left:
                log.warning("webhook %s: %d event(s) not delivered when the run ended", r.shown, left)

    def _sum(self, attr: str) -> int:
        return sum(getattr(r, attr) for r in self._receivers)

    @property
    def sent(self) -> int:
        return self._sum("sent")

    @property
    def rejected(self) -> int:
        return self._sum("rejected")

    @property
    def dropped(self) -> int:
        return self._sum("dropped")

    @property
    def retries(self) -> int:
        return self._sum("retries")

    @property
    def queue_depth(self) -> int:  # aknet_edge.runtime.prom reads it
        return sum(len(r.queue) for r in self._receivers)


# -- the run CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--webhook URL`` (repeatable) and ``--webhook-secret SECRET`` (checked by :func:`validate`)."""
    g = parser.add_argument_group("webhooks")
    g.add_argument("--webhook", action="append", default=[], metavar="URL",
                   help="POST every event as JSON to URL (http:// or https://); repeatable; retried with backoff on "
                        "timeouts, connection errors and 5xx, not on other 4xx; never slows recognition")
    g.add_argument("--webhook-secret", metavar="SECRET",
                   help=f"sign every request: header {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body> "
                        f"(default: the {SECRET_ENV} variable; unset: unsigned)")


def options_from_args(args: argparse.Namespace) -> Optional[WebhookOptions]:
    """The webhook options the flags give (None without ``--webhook``; ``--webhook-secret`` alone is an error)."""
    urls = list(getattr(args, "webhook", None) or [])
    secret = getattr(args, "webhook_secret", None)
    if not urls:
        if secret is not None:
            raise ConfigError("--webhook-secret: given without --webhook URL; add --webhook URL or drop it")
        return None
    return WebhookOptions(urls, secret=secret if secret is not None else env_secret())


def validate(args: argparse.Namespace) -> None:
    """The webhook flags, before a package, backend or source opens (no request is made)."""
    opts = options_from_args(args)
    if opts is not None:
        opts.check()


def sinks_from_args(args: argparse.Namespace) -> List[Sink]:
    """The webhook sink the flags ask for ([] without ``--webhook``)."""
    opts = options_from_args(args)
    return [] if opts is None else [WebhookSink(opts)]


__all__ = ["SECRET_ENV", "SIGNATURE_HEADER", "WebhookOptions", "WebhookSink", "add_arguments", "check_url",
           "env_secret", "options_from_args", "signature", "sinks_from_args", "validate", "verify"]
