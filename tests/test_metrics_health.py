"""``--metrics-port``: ``/metrics`` parsed by prometheus-client's own parser equals the run's stats; ``/healthz``
follows the inference loop; ``/readyz`` goes not-ready while a camera is lost and ready when it is back; the
preview's token guards ``/metrics``; the run CLI serves them and refuses a busy port with one error line.

Everything over real HTTP on 127.0.0.1 (urllib), against real runs of the committed package.
"""

from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import collections
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from aknet_edge.runtime import Recognizer
from aknet_edge.runtime import sources as S
from aknet_edge.runtime.prom import MetricsOptions, MetricsSink
from aknet_edge.runtime.sinks import Sink
from aknet_edge.runtime.sources.memory import ArraySource
from aknet_edge.synthetic import iter_long_video

from conftest import REPO
from test_runtime_outage import _camera

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PKG = Path(__file__).parent / "data" / "package-0.2.0"


def _get(url: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def _samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, through prometheus-client's parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _metrics_sink(rec: Any) -> MetricsSink:
    return next(s for s in rec.sinks if isinstance(s, MetricsSink))


class QueueingSink(Sink):
    """A sink of the user's own with a queue and a spool (as the MQTT sink has): the metrics read them by name."""

    name = "uplink"
    queue_depth = 3
    spool_bytes = 4096

    def spool_messages(self) -> int:
        return 7


def _frames(seed: int, segments: int) -> List[np.ndarray]:
    _, it = iter_long_video(seed, segments, 15.0, 112, (2.0, 3.0))
    return [rgb for _, rgb in it]


def test_metrics_equal_the_runs_stats_and_health_follows_the_loop(tmp_path):
    opts = MetricsOptions(0, health_s=0.5)
    with Recognizer(PKG, ArraySource(_frames(3, 5), fps=15.0), stream="cam", metrics=opts,
                    sinks=[QueueingSink()], event_clips=str(tmp_path)) as rec:
        sink = _metrics_sink(rec)
        base = sink.url
        code, body = _get(base + "healthz")
        assert code in (200, 503)  # 503 only before the loop's first turn
        results = list(rec)  # the run ends: the loop has stopped, the pipeline is not closed yet
        stats = rec.stats()
        events = list(rec.events)
        code, text = _get(base + "metrics")
        assert code == 200
        m = _samples(text)
        lane = (("stream", "cam"),)
        assert results and stats.results == len(results) + rec.results_dropped
        for name, value in (("aknet_frames_total", stats.frames), ("aknet_results_total", stats.results),
                            ("aknet_dropped_frames_total", stats.dropped),
                            ("aknet_reconnects_total", stats.reconnects),
                            ("aknet_skipped_windows_total", stats.skipped_windows),
                            ("aknet_outages_total", stats.outages)):
            assert m[(name, lane)] == value, name
        assert stats.frames > 0 and m[("aknet_inference_latency_seconds_count", lane)] == stats.results
        assert m[("aknet_inference_latency_seconds_sum", lane)] > 0
        started = collections.Counter(e.label for e in events if e.state == "started")
        counted = {k[1]: v for k, v in m.items() if k[0] == "aknet_events_total"}
        assert started and counted == {(("label", label), ("stream", "cam")): n for label, n in started.items()}
        assert m[("aknet_source_state", (("state", "ended"), ("stream", "cam")))] == 1.0
        assert m[("aknet_source_up", lane)] == 0.0
        assert m[("aknet_sink_queue_depth", (("sink", "uplink"),))] == 3
        assert m[("aknet_sink_spool_bytes", (("sink", "uplink"),))] == 4096
        assert m[("aknet_sink_spool_messages", (("sink", "uplink"),))] == 7
        assert ("aknet_sink_queue_depth", (("sink", "event-clips"),)) in m  # the clip writer's queue
        # the loop has stopped: health fails once its last turn is older than health_s, and readiness with it
        time.sleep(0.7)
        code, body = _get(base + "healthz")
        assert code == 503 and "last turned" in body
        assert _get(base + "readyz")[0] == 503
    with pytest.raises(OSError):  # closed with the recogniser
        _get(base + "healthz")


def test_readyz_is_not_ready_while_a_camera_is_lost():
    """The camera of tests/test_runtime_outage.py: frames, a 2 s outage (reads and reopens fail), frames again."""
    cam = _camera(before_s=3.0, outage_s=2.0, after_s=2.5)
    seen: List[Tuple[str, int, float, float]] = []  # (source state, /readyz code, source_up, reconnects)
    with Recognizer(PKG, cam, metrics=MetricsOptions(0, ready_grace_s=0.3)) as rec:
        base = _metrics_sink(rec).url
        while True:
            try:
                rec.next_result(timeout=0.1)
            except S.EndOfStream:
                break
            state = rec.stats().source_state
            code, _ = _get(base + "readyz")
            m = _samples(_get(base + "metrics")[1])
            if rec.stats().source_state != state:  # it changed between the readings: they may disagree, skip them
                continue
            seen.append((state, code, m[("aknet_source_up", (("stream", "0"),))],
                         m[("aknet_reconnects_total", (("stream", "0"),))]))
        final = rec.stats()
        m = _samples(_get(base + "metrics")[1])
    lost = [i for i, s in enumerate(seen) if s[0] == "reconnecting"]
    assert lost, "the outage was not seen"
    before, during, after = seen[:lost[0]], [seen[i] for i in lost], seen[lost[-1] + 1:]
    assert any(code == 200 for _, code, _, _ in before)
    # past the grace time the camera makes the box not ready, and the source is down
    assert during[-1][1] == 503 and during[-1][2] == 0.0
    assert any(code == 200 and up == 1.0 for state, code, up, _ in after if state == "live")
    assert after[-1][3] == 1.0 and m[("aknet_reconnects_total", (("stream", "0"),))] == final.reconnects == 1
    assert m[("aknet_outages_total", (("stream", "0"),))] == final.outages == 1


def test_the_preview_token_guards_metrics_but_not_health():
    with Recognizer(PKG, ArraySource(_frames(4, 1), fps=15.0), metrics=MetricsOptions(0, token="s3cret")) as rec:
        base = _metrics_sink(rec).url
        assert _get(base + "metrics")[0] == 401
        assert _get(base + "metrics", {"Authorization": "Bearer wrong"})[0] == 401
        code, text = _get(base + "metrics", {"Authorization": "Bearer s3cret"})
        assert code == 200 and _samples(text)
        assert _get(base + "metrics?token=s3cret")[0] == 200
        assert _get(base + "readyz")[0] in (200, 503) and _get(base + "healthz")[0] in (200, 503)
        # a loopback server answers only to its own names (no DNS rebinding from a browser page)
        assert _get(base + "healthz", {"Host": "evil.example:80"})[0] == 421
        # the preview's rule itself (runtime/http_access.py), so its cases hold here too: a request in absolute
        # form names its host in the URL whatever its Host header says; the token in an X-Preview-Token header
        port = int(base.rsplit(":", 1)[1].strip("/"))
        assert _raw_status(port, f"http://evil.example:{port}/healthz") == 421
        assert _raw_status(port, "/metrics", b"X-Preview-Token: s3cret\r\n") == 200
        assert _get(base + "nothing")[0] == 404
        list(rec)


def _raw_status(port: int, target: str, headers: bytes = b"") -> int:
    """The status of a request sent as written (urllib would not send an absolute-form target)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n".encode() + headers
                  + b"\r\n")
        return int(s.recv(64).split(b" ", 2)[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_run_cli_serves_metrics_and_health():
    proc = subprocess.Popen([sys.executable, "-m", "aknet_edge.run", "synthetic://?seed=1&segments=4",
                             "--package", str(PKG), "--metrics-port", "0", "--max-seconds", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        url = None
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("metrics: "):
                url = line.split(None, 1)[1].strip()
                break
        assert url is not None and url.endswith("/metrics"), "no metrics line on stderr"
        base = url[:-len("metrics")]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _get(base + "readyz")[0] != 200:
            time.sleep(0.1)
        assert _get(base + "readyz")[0] == 200 and _get(base + "healthz")[0] == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the first window needs 2 s of frames
            m = _samples(_get(base + "metrics")[1])
            if m.get(("aknet_results_total", (("stream", "0"),)), 0) > 0:
                break
            time.sleep(0.2)
        assert m[("aknet_frames_total", (("stream", "0"),))] > 0
        assert m[("aknet_source_state", (("state", "live"), ("stream", "0")))] == 1.0
        assert m[("aknet_results_total", (("stream", "0"),))] > 0
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_busy_metrics_port_is_one_error_line(capsys):
    from aknet_edge.cli_common import run_cli
    from aknet_edge.run import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rc = run_cli(main, ["--package", str(PKG), "--metrics-port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: --metrics-port {port}: ") and "in use" in err[0]
    for argv, words in ((["--metrics-host", "0.0.0.0"], "--metrics-host: given without --metrics-port"),
                        (["--metrics-port", "70000"], "--metrics-port 70000: expected a whole number"),
                        (["--metrics-port", str(_free_port()), "--ready-grace", "-1"], "--ready-grace -1.0")):
        rc = run_cli(main, ["--package", str(PKG), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and words in err[0], err
