"""Prometheus metrics and health checks: ``/metrics``, ``/healthz`` and ``/readyz`` (``--metrics-port N``).

Why: a box on a pole is watched by the site's monitoring, not by someone reading ``--stats``. Prometheus
scrapes ``/metrics`` (its text format, written by ``prometheus-client``); systemd, Docker and Kubernetes ask
``/healthz`` whether to restart the process and ``/readyz`` whether it serves.

* ``/metrics``: per stream (the lanes' names, as in ``stats().streams``) frames, dropped and corrupt frames,
  reconnects, outages, results, skipped windows, capture and inference rates, the source's state; events by
  stream and label; capture-to-result latency as a histogram; the queue depth of every sink that has a queue
  (``queue_depth``) and the spool of every sink that has one (``spool_bytes``, ``spool_messages``); sinks
  switched off; the inference server's state (backend "triton"). Counters are read from the pipeline's
  telemetry when scraped, so they equal its ``stats()``.
* ``/healthz``: 200 while the inference loop turns (its last turn younger than ``health_s``), else 503: the
  process is alive and not stuck. No token needed (it says nothing about the cameras).
* ``/readyz``: 200 when the backend is loaded and every stream is live or lost for less than ``ready_grace_s``
  (a short outage is not worth pulling the box out of service), the inference server (if any) is reachable and
  the loop turns; else 503 with the reasons. No token needed.

Binding and token follow the preview's rules: 127.0.0.1 unless ``--metrics-host`` says otherwise (any other
address is warned about when no token guards it); the token is the preview's (``--preview-token``, else
``AKNET_PREVIEW_TOKEN``) and ``/metrics`` then needs it (``Authorization: Bearer TOKEN`` -- Prometheus's
``authorization`` setting -- or ``?token=TOKEN``).
"""

from __future__ import annotations

import argparse
import errno
import http.server
import json
import logging
import math
import socket
import socketserver
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from aknet_edge.checks import check_number
from aknet_edge.errors import ConfigError, DependencyError

from .lane import lane_name
from .http_access import host_allowed, token_given
from .preview.cli import env_token, is_loopback
from .sinks import Sink
from .telemetry import LIVE, RECONNECTING, SOURCE_STATES

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
HEALTH_S = 5.0  # /healthz: the inference loop turns at least every 0.1 s; this long without a turn is stuck
READY_GRACE_S = 10.0  # /readyz: a camera lost for less than this still counts (reconnects take a few seconds)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # seconds
MAX_CLIENTS = 16


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise DependencyError("--metrics-port needs prometheus-client: pip install 'aknet-edge[metrics]'") from None
    return prometheus_client


@dataclass
class MetricsOptions:
    """What ``--metrics-port`` and its flags ask for (``metrics=`` of the recognisers takes this or a port).

    ``token``: required by ``/metrics`` (None: ``AKNET_PREVIEW_TOKEN`` if set, else none); ``health_s``: how long
    the inference loop may go without a turn before ``/healthz`` fails; ``ready_grace_s``: how long a lost camera
    still counts as ready.
    """

    port: int
    host: str = DEFAULT_HOST
    token: Optional[str] = None
    health_s: float = HEALTH_S
    ready_grace_s: float = READY_GRACE_S

    def check(self) -> "MetricsOptions":
        check_number("--metrics-port", self.port, minimum=0, maximum=65535, whole=True, optional=False)
        check_number("--ready-grace", self.ready_grace_s, minimum=0, optional=False, unit="seconds")
        check_number("--health-timeout", self.health_s, above=0, optional=False, unit="seconds")
        if self.token is not None and not str(self.token).strip():
            raise ConfigError("metrics token: empty; expected a non-empty secret (or none)")
        return self


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], sink: "MetricsSink") -> None:
        self.sink = sink
        self.clients: set = set()  # connections being served (each holds a thread)
        self.lock = threading.Lock()
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """At most :data:`MAX_CLIENTS` connections at once: a flood of idle sockets cannot take every thread."""
        with self.lock:
            if len(self.clients) >= MAX_CLIENTS:
                return False
            self.clients.add(id(request))
        return True

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.clients.discard(id(request))
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics client %s failed", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 5.0  # a stalled client cannot hold its thread
    server_version = "aknet-metrics"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("metrics %s: " + fmt, self.client_address[0], *args)

    def _send(self, code: int, ctype: str, body: bytes, extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Dict[str, Any]) -> None:
        self._send(code, "application/json", (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8"))

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        sink = self.server.sink
        parts = urllib.parse.urlsplit(self.path)
        if not host_allowed(sink.host, sink.port, self.path, self.headers):
            self._send(421, "text/plain; charset=utf-8", b"421: answers only to its own loopback address\n")
            return
        if parts.path == "/healthz":
            ok, why = sink.health()
            self._json(200 if ok else 503, {"healthy": ok, **why})
        elif parts.path == "/readyz":
            ok, why = sink.readiness()
            self._json(200 if ok else 503, {"ready": ok, **why})
        elif parts.path == "/metrics":
            if not token_given(sink.token, parts.query, self.headers):
                self._send(401, "text/plain; charset=utf-8", b"401 unauthorised: /metrics needs the token "
                           b"('Authorization: Bearer TOKEN' or ?token=TOKEN)\n",
                           {"WWW-Authenticate": 'Bearer realm="aknet_edge metrics"'})
                return
            prom = _prometheus()
            self._send(200, prom.CONTENT_TYPE_LATEST, prom.generate_latest(sink.registry))
        else:
            self._send(404, "text/plain; charset=utf-8", b"404: /metrics, /healthz or /readyz\n")

    do_HEAD = do_GET  # noqa: N815 - http.server API


def _stream_key(item: Any) -> str:
    """The lane's name as ``stats().streams`` keys it (a single unnamed camera is "0")."""
    stream = getattr(item, "stream", None)
    return lane_name("0" if stream is None else stream, getattr(item, "roi", None),
                     getattr(item, "track", None)) or "0"


class _Collector:
    """Everything read from the pipeline when scraped (prometheus-client's custom collector protocol)."""

    def __init__(self, sink: "MetricsSink") -> None:
        self.sink = sink

    def describe(self) -> List[Any]:
        return []  # collected fresh on each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sink = self.sink
        pipe = sink.pipe
        stats = pipe.stats()
        per = dict(stats.streams)
        counters = (("frames", "frames", "Frames that reached recognition"),
                    ("dropped_frames", "dropped", "Frames the source dropped (recognition slower than the camera)"),
                    ("corrupt_frames", "corrupt", "Frames the source could not decode and skipped"),
                    ("reconnects", "reconnects", "Source reconnects"),
                    ("outages", "outages", "Times the source was lost"),
                    ("outage_seconds", "outage_s", "Time the source was lost, the current outage included"),
                    ("results", "results", "Windows recognised"),
                    ("skipped_windows", "skipped_windows", "Windows skipped (recognition behind, server lost)"))
        for name, attr, doc in counters:
            fam = CounterMetricFamily(f"aknet_{name}", doc, labels=["stream"])
            for key, snap in per.items():
                fam.add_metric([key], float(getattr(snap, attr)))
            yield fam
        gauges = (("capture_fps", "capture_fps", "Frames per second reaching recognition, now"),
                  ("inference_fps", "inference_fps", "Results per second, now"),
                  ("latency_p50_seconds", "latency_p50_ms", "Capture-to-result latency, median of recent windows"),
                  ("latency_p95_seconds", "latency_p95_ms", "Capture-to-result latency, 95th percentile"))
        for name, attr, doc in gauges:
            fam = GaugeMetricFamily(f"aknet_{name}", doc, labels=["stream"])
            for key, snap in per.items():
                value = float(getattr(snap, attr))
                fam.add_metric([key], value / 1e3 if attr.endswith("_ms") else value)
            yield fam
        up = GaugeMetricFamily("aknet_source_up", "1 while the source delivers (live), else 0", labels=["stream"])
        state = GaugeMetricFamily("aknet_source_state", "The source's state: 1 for the current one",
                                  labels=["stream", "state"])
        age = GaugeMetricFamily("aknet_frame_age_seconds", "Time since the last frame reached recognition",
                                labels=["stream"])
        for key, snap in per.items():
            up.add_metric([key], 1.0 if snap.source_state == LIVE else 0.0)
            for s in SOURCE_STATES:
                state.add_metric([key, s], 1.0 if snap.source_state == s else 0.0)
            if snap.frame_age_s is not None:
                age.add_metric([key], float(snap.frame_age_s))
        yield up
        yield state
        yield age
        depth = GaugeMetricFamily("aknet_sink_queue_depth", "Items waiting in an output's queue", labels=["sink"])
        spool = GaugeMetricFamily("aknet_sink_spool_bytes", "Bytes an output holds on disk until it can deliver",
                                  labels=["sink"])
        spooled = GaugeMetricFamily("aknet_sink_spool_messages", "Messages an output holds until it can deliver",
                                    labels=["sink"])
        for label, out in sink.sinks():
            for fam, attr in ((depth, "queue_depth"), (spool, "spool_bytes"), (spooled, "spool_messages")):
                value = _number(getattr(out, attr, None))
                if value is not None:
                    fam.add_metric([label], value)
        depth.add_metric(["results"], float(pipe._queue.qsize()))  # the recogniser's own result queue
        yield depth
        yield spool
        yield spooled
        failed = GaugeMetricFamily("aknet_sink_failed", "1 for an output switched off after a failure",
                                   labels=["sink"])
        for name in sorted(pipe.sinks.failed):
            failed.add_metric([name], 1.0)
        yield failed
        dropped = CounterMetricFamily("aknet_results_dropped", "Results the reader of the recogniser did not take "
                                      "in time (oldest dropped)")
        dropped.add_metric([], float(pipe.results_dropped))
        yield dropped
        if stats.server is not None:
            server = GaugeMetricFamily("aknet_server_up", "1 while the inference server answers")
            server.add_metric([], 1.0 if stats.server.get("state") != "lost" else 0.0)
            yield server
        beat = GaugeMetricFamily("aknet_heartbeat_age_seconds", "Time since the inference loop last turned")
        if pipe.heartbeat is not None:
            beat.add_metric([], max(0.0, time.monotonic() - pipe.heartbeat))
        yield beat
        ready = GaugeMetricFamily("aknet_ready", "1 when /readyz answers 200")
        ready.add_metric([], 1.0 if sink.readiness(stats)[0] else 0.0)
        yield ready
        backend = pipe.backend
        info = GaugeMetricFamily("aknet_info", "The model package and backend", labels=["package", "backend",
                                                                                        "precision"])
        info.add_metric([pipe.package.root.name, getattr(backend, "name", "") or "",
                         getattr(backend, "precision", "") or ""], 1.0)
        yield info


def _number(value: Any) -> Optional[float]:
    if callable(value):
        try:
            value = value()
        except Exception:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class MetricsSink(Sink):
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for ``pipe`` (see the module docstring).

    The server starts here (a busy port is an error before any source opens; ``/readyz`` answers 503 while the
    pipeline starts); :meth:`open` marks the backend loaded and the sources started; :meth:`close` stops it.
    """

    name = "metrics"

    def __init__(self, pipe: "Pipeline", options: MetricsOptions) -> None:
        prom = _prometheus()
        options.check()
        self.pipe = pipe
        self.options = options
        self.token = options.token if options.token is not None else env_token()
        self.registry = prom.CollectorRegistry(auto_describe=False)
        self.latency = prom.Histogram("aknet_inference_latency_seconds", "Capture-to-result latency of each "
                                      "window: the newest frame in the source's buffer to the window's scores",
                                      ["stream"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = prom.Counter("aknet_events", "Action events that started", ["stream", "label"],
                                   registry=self.registry)
        self.registry.register(_Collector(self))
        self._opened = False
        if not is_loopback(options.host):
            log.warning("metrics on %s:%d are reachable from other machines%s", options.host, options.port,
                        "" if self.token else "; anyone who reaches them can read them: set a preview token "
                        "(--preview-token or AKNET_PREVIEW_TOKEN)")
        try:
            self._httpd = _Server((options.host, options.port), self)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {options.port}: cannot serve on {options.host}:{options.port}: "
                              f"{_reason(exc)}; choose another port (0 picks a free one)") from None
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="aknet-metrics", daemon=True)
        self._thread.start()
        log.info("metrics at %s (health %s, readiness %s)%s", self.url + "metrics", self.url + "healthz",
                 self.url + "readyz", " (token required for /metrics)" if self.token else "")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    # -- the sink protocol
    def open(self) -> None:
        self._opened = True

    def result(self, result: Any) -> None:
        self.latency.labels(_stream_key(result)).observe(max(0.0, float(result.latency_ms) / 1e3))

    def event(self, event: Any) -> None:
        if event.state == "started":
            self.events.labels(_stream_key(event), event.label).inc()

    def close(self) -> None:
        httpd, self._httpd = getattr(self, "_httpd", None), None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            self._thread.join(5.0)

    # -- what the endpoints and the collector read
    def sinks(self) -> List[Tuple[str, Any]]:
        """(label, sink) for every live output: a name given twice is numbered (``webhook``, ``webhook#2``)."""
        seen: Dict[str, int] = {}
        out = []
        for s in self.pipe.sinks:
            name = str(getattr(s, "name", type(s).__name__))
            seen[name] = seen.get(name, 0) + 1
            out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", s))
        return out

    def health(self) -> Tuple[bool, Dict[str, Any]]:
        """Whether the inference loop turns (its last turn younger than ``health_s``)."""
        beat = self.pipe.heartbeat
        if beat is None:
            return False, {"reason": "starting: the inference loop has not turned yet"}
        age = time.monotonic() - beat
        if age > self.options.health_s:
            return False, {"reason": f"the inference loop last turned {age:.1f} s ago", "heartbeat_age_s": age}
        return True, {"heartbeat_age_s": round(age, 3)}

    def readiness(self, stats: Any = None) -> Tuple[bool, Dict[str, Any]]:
        """Whether the backend is loaded, the loop turns and every stream is live or inside its grace time."""
        pipe = self.pipe
        if not self._opened or pipe.backend is None:
            return False, {"reason": "starting: backend or sources not up yet"}
        healthy, why = self.health()
        if not healthy:
            return False, why
        stats = pipe.stats() if stats is None else stats
        streams, reasons = {}, []
        for key, snap in stats.streams.items():
            ok = snap.source_state == LIVE or (snap.source_state == RECONNECTING
                                                and snap.state_s < self.options.ready_grace_s)
            streams[key] = snap.source_state if snap.source_state == LIVE else \
                f"{snap.source_state} {snap.state_s:.1f} s"
            if not ok:
                reasons.append(f"stream {key} {streams[key]}")
        if stats.server is not None and stats.server.get("state") == "lost":
            reasons.append("inference server lost")
        out: Dict[str, Any] = {"streams": streams}
        if reasons:
            out["reason"] = "; ".join(reasons)
        return not reasons, out


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "already in use"
    return exc.strerror or str(exc)


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port``, ``--metrics-host``, ``--ready-grace``, ``--health-timeout`` (check with :func:`validate`)."""
    g = parser.add_argument_group("metrics and health")
    g.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve Prometheus metrics at http://HOST:N/metrics, and /healthz (the pipeline turns) and "
                        "/readyz (backend loaded, every camera live or inside --ready-grace) for systemd, Docker "
                        "and Kubernetes; 0 picks a free port. Needs pip install 'aknet-edge[metrics]'")
    g.add_argument("--metrics-host", default=None, metavar="ADDR",
                   help=f"address the metrics listen on (default {DEFAULT_HOST}); another address is warned about "
                        "without a token: /metrics then needs the preview's token (--preview-token or "
                        "AKNET_PREVIEW_TOKEN)")
    g.add_argument("--ready-grace", type=float, metavar="S",
                   help=f"seconds a lost camera still counts as ready on /readyz (default {READY_GRACE_S:g})")
    g.add_argument("--health-timeout", type=float, metavar="S",
                   help=f"/healthz fails when the inference loop has not turned for S seconds (default "
                        f"{HEALTH_S:g})")


_FLAGS = {"metrics_host": "--metrics-host", "ready_grace": "--ready-grace", "health_timeout": "--health-timeout"}


def options_from_args(args: argparse.Namespace) -> Optional[MetricsOptions]:
    """The metrics options the flags give (None without ``--metrics-port``; its other flags alone are an error)."""
    if getattr(args, "metrics_port", None) is None:
        given = [flag for dest, flag in _FLAGS.items() if getattr(args, dest, None) is not None]
        if given:
            raise ConfigError(f"{given[0]}: given without --metrics-port N; add --metrics-port N (0 picks a free "
                              "port) or drop it")
        return None
    pick = (lambda dest, default: default if getattr(args, dest, None) is None else getattr(args, dest))
    return MetricsOptions(args.metrics_port, pick("metrics_host", DEFAULT_HOST), getattr(args, "preview_token", None),
                          pick("health_timeout", HEALTH_S), pick("ready_grace", READY_GRACE_S))


def validate(args: argparse.Namespace) -> None:
    """The metrics flags and address, before a package, backend or source opens (a busy port is one error)."""
    opts = options_from_args(args)
    if opts is None:
        return
    opts.check()
    _prometheus()
    env_token()
    try:
        infos = socket.getaddrinfo(opts.host, opts.port, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--metrics-host {opts.host}: not an IPv4 address or host name here ({exc})") from None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(infos[0][4])
        except OSError as exc:
            raise ConfigError(f"--metrics-port {opts.port}: cannot serve on {opts.host}:{opts.port}: {_reason(exc)}; "
                              "choose another port (0 picks a free one)") from None


__all__ = ["DEFAULT_HOST", "HEALTH_S", "LATENCY_BUCKETS", "MetricsOptions", "MetricsSink", "READY_GRACE_S",
           "add_arguments", "options_from_args", "validate"]
