"""MQTT output against a real broker: Debian's mosquitto on 127.0.0.1 (tests/peers/mosquitto.py), paho subscribers.

What must hold (issue "Events leave the box"): every event of the JSON Lines reaches the broker, in order, after
the broker was away (stopped for OUTAGE_S = 20 seconds mid-run, the runtime's reconnect backoff reaching its
10 s cap meanwhile) and after the runtime itself was killed while the broker was away
(the on-disk spool); ``status`` is ``online`` again after reconnecting and the Last Will says ``offline`` when
the runtime is killed; a wrong password or an unreachable broker at start is one ``error:`` line (exit 2)
unless ``--mqtt-optional``; the hooks never wait for the broker. Receivers keep one line per ``(id, state)``.

Tests that need the broker skip with the reason where mosquitto or paho-mqtt is missing.
"""

from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from aknet_edge.cli_common import run_cli
from aknet_edge.errors import ConfigError
from aknet_edge.runtime import mqtt
from aknet_edge.runtime.events import ActionEvent
from aknet_edge.runtime.spool import Spool
from conftest import REPO

sys.path.insert(0, str(Path(__file__).parent / "peers"))
import mosquitto as peer  # noqa: E402  (tests/peers/mosquitto.py)

PKG = REPO / "tests" / "data" / "package-0.2.0"  # runs without building anything (and without torch)
MISSING = peer.missing()
needs_broker = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
try:
    import paho.mqtt.client  # noqa: F401

    NO_PAHO = None
except ImportError:
    NO_PAHO = "no paho-mqtt here (pip install 'aknet-edge[mqtt]')"
needs_paho = pytest.mark.skipif(NO_PAHO is not None, reason=str(NO_PAHO))
OUTAGE_S = 20.0  # the outage; the run lasts long enough to reconnect (backoff cap 10 s) after it
FAST = "cam=synthetic://?seed=1&segments=3&speed=0&size=112"  # unpaced: 6 events in about a second


def _paced(segments: int, seed: int = 2) -> str:
    """Real-time synthetic camera "cam": about 2.4 s and 2 events per segment."""
    return f"cam=synthetic://?seed={seed}&segments={segments}&speed=1&size=112"


def _argv(src: str, *extra: str) -> List[str]:
    return [src, "--package", str(PKG), *extra]


def _spawn(tmp_path: Path, name: str, argv: List[str]) -> Tuple[subprocess.Popen, Path]:
    err = tmp_path / f"{name}.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "aknet_edge.run", *argv], stdout=subprocess.DEVNULL,
                                stderr=fh, cwd=str(REPO))
    return proc, err


def _jsonl_events(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    return [x for x in (json.loads(ln) for ln in path.read_text().splitlines() if ln.endswith("}"))
            if x["type"] == "event"]


def _key(e: Dict[str, Any]) -> Tuple[str, str]:
    return e["id"], e["state"]


def _received(got: List[peer.Got], suffix: str = "/event") -> List[Dict[str, Any]]:
    return [json.loads(g.payload) for g in got if g.topic.endswith(suffix)]


def _dedup(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What a receiver keeps: the first line of each (id, state)."""
    seen, out = set(), []
    for e in events:
        if _key(e) not in seen:
            seen.add(_key(e))
            out.append(e)
    return out


def _has_all(expected: List[Dict[str, Any]]):
    want = {_key(e) for e in expected}
    return lambda got: want <= {_key(e) for e in _received(got)}


def _one_error(capsys, rc: int, words: str) -> str:
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert words in errors[0], errors[0]
    return err


@pytest.fixture
def brokers():
    """``brokers(folder, **kw)``: a started :class:`peer.Broker`, stopped after the test whatever happens."""
    made: List[peer.Broker] = []

    def make(folder: Path, **kw: Any) -> peer.Broker:
        broker = peer.Broker(folder, **kw)
        made.append(broker)
        return broker.start()

    yield make
    for broker in made:
        broker.stop()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


# -- URLs, flags and the spool: no broker needed

@pytest.mark.parametrize("url,expected", [
    ("mqtt://broker", ("mqtt", "broker", 1883, None, None, None)),
    ("mqtts://broker/site/box-1", ("mqtts", "broker", 8883, None, None, "site/box-1")),
    ("mqtt://edge:p%40ss@10.0.0.5:1884/aknet/", ("mqtt", "10.0.0.5", 1884, "edge", "p@ss", "aknet")),
    ("MQTT://[::1]:1883/x", ("mqtt", "::1", 1883, None, None, "x")),
])
def test_broker_urls(url, expected):
    u = mqtt.parse_url(url)
    prefix = expected[5] or mqtt.default_prefix()
    assert (u.scheme, u.host, u.port, u.username, u.password, u.prefix) == expected[:5] + (prefix,)
    assert "p@ss" not in str(u) and "pass" not in str(u)


@pytest.mark.parametrize("argv,words", [
    (["--mqtt", "http://broker"], "unknown scheme http://"),
    (["--mqtt", "mqtt://"], "no host"),
    (["--mqtt", "mqtt://broker:99999"], "--mqtt mqtt://broker:99999"),
    (["--mqtt", "mqtt://broker/a/#"], "the prefix takes no wildcards"),
    (["--mqtt", "mqtt://broker/a/%2B"], "without the wildcards + and #"),
    (["--mqtt", "mqtt://broker/a//b"], "separated by single '/'"),
    (["--mqtt", "mqtt://u:s3cret@broker?x=1"], "a query (?) or fragment (#)"),
    (["--mqtt", "mqtt://broker", "--mqtt-ca", "ca.pem"], "--mqtt-ca ca.pem: only for mqtts://"),
    (["--mqtt", "mqtts://broker", "--mqtt-ca", "/no/such/ca.pem"], "--mqtt-ca /no/such/ca.pem: no such file"),
    (["--mqtt", "mqtt://broker", "--mqtt-results-every", "0"], "--mqtt-results-every 0.0: expected"),
    (["--mqtt", "mqtt://broker", "--mqtt-spool-max-mb", "-1"], "--mqtt-spool-max-mb -1.0: expected"),
    (["--mqtt-optional"], "--mqtt-optional: given without --mqtt URL"),
    (["--mqtt-spool", "x"], "--mqtt-spool: given without --mqtt URL"),
])
def test_bad_mqtt_flags_are_one_error_before_anything_opens(argv, words, capsys):
    from aknet_edge import run

    err = _one_error(capsys, run_cli(run.main, _argv(FAST, *argv)), words)
    assert "s3cret" not in err


def test_the_spool_keeps_order_survives_reopening_and_drops_only_the_oldest_past_its_cap(tmp_path):
    folder = tmp_path / "spool"
    with Spool(folder, max_bytes=100) as sp:
        for i in range(4):
            assert sp.put(f"t/{i}", b"x" * 20) == 0
        assert [m.topic for m in sp.after(0, 10)] == ["t/0", "t/1", "t/2", "t/3"]
        assert (sp.messages, sp.bytes) == (4, 80)
        first = sp.after(0, 1)[0]
        sp.remove(first.seq)
        sp.remove(first.seq)  # twice: nothing more happens
        assert [m.topic for m in sp.after(first.seq, 10)] == ["t/1", "t/2", "t/3"]
    with Spool(folder, max_bytes=100) as sp:  # what a restarted runtime finds
        assert (sp.messages, sp.bytes) == (3, 60)
        assert sp.put("t/4", b"y" * 30) == 0 and sp.put("t/5", b"z" * 30) == 1  # 120 > 100: t/1 goes
        assert [m.topic for m in sp.after(0, 10)] == ["t/2", "t/3", "t/4", "t/5"] and sp.dropped == 1
        assert sp.bytes == 100 and sp.after(0, 10)[-1].payload == b"z" * 30
        assert sp.put("t/big", b"b" * 500) == 4 and [m.topic for m in sp.after(0, 10)] == ["t/big"]  # kept alone
        with pytest.raises(ConfigError, match="another running process uses this spool"):
            Spool(folder, max_bytes=100)


def test_a_broken_spool_file_is_one_error_and_left_alone(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "spool.sqlite3").write_bytes(b"not a database, the user's file" * 100)
    with pytest.raises(ConfigError, match="is not a usable spool"):
        Spool(folder, max_bytes=1000)
    assert (folder / "spool.sqlite3").read_bytes().startswith(b"not a database")


# -- against the broker

@needs_broker
def test_a_broker_outage_mid_run_loses_no_event_and_keeps_their_order(tmp_path, brokers):
    """The broker stops for OUTAGE_S seconds while the runtime recognises in real time: events made meanwhile are
    spooled and delivered after it returns; after deduplication by (id, state) the broker's events are the JSON
    Lines' events, in order; status goes back to online; results are rate-limited; nothing is left spooled."""
    prefix = "site/box1"
    broker = brokers(tmp_path / "broker")
    sub = peer.Subscriber(broker.port, f"{prefix}/#")
    out = tmp_path / "out.jsonl"
    # 20 segments, ~48 s: the first event, the 20 s outage and the 10 s backoff cap fit with room to spare
    proc, err = _spawn(tmp_path, "run", _argv(_paced(20, seed=3), "--jsonl", str(out), "--mqtt",
                                              f"{broker.url}/{prefix}", "--mqtt-spool", str(tmp_path / "spool"),
                                              "--mqtt-results-every", "0.5"))
    try:
        sub.wait_for(lambda g: _received(g), 60, "the first event")
        broker.stop()  # SIGTERM: mosquitto saves the subscriber's session; the runtime just loses its broker
        delivered = {_key(e) for e in _received(sub.snapshot())}
        time.sleep(OUTAGE_S)
        made_offline = [e for e in _jsonl_events(out) if _key(e) not in delivered]
        up_at = time.monotonic()  # before the start: the runtime may be back online before start() returns
        broker.start()
        assert proc.wait(60) == 0, err.read_text()[-3000:]
        expected = _jsonl_events(out)
        got = sub.wait_for(_has_all(expected), 30, "every event of the JSON Lines")
    finally:
        _stop(proc)
        sub.close()
    log = err.read_text()
    assert made_offline, "no event was made while the broker was away: the outage tested nothing"
    assert "lost the broker" in log and "again after" in log, log[-3000:]
    received = _received(got)
    assert _dedup(received) == expected  # every event, in order, the JSON Lines' own records
    assert all(len(e["id"]) == 32 for e in expected)
    status = [(g.payload, g.at) for g in got if g.topic == f"{prefix}/status"]
    assert status[0][0] == b"online" and any(p == b"online" and t >= up_at for p, t in status), status
    assert peer.retained(broker.port, f"{prefix}/status") == b"offline"  # the run ended: it said so, retained
    states = [g.payload for g in got if g.topic == f"{prefix}/cam/state"]
    assert states[0] == b"live" and peer.retained(broker.port, f"{prefix}/cam/state") == b"ended"
    results = _received(got, "/cam/result")
    assert len(results) >= 4 and all(r["type"] == "result" and r["stream"] == "cam" for r in results)
    times = [r["timestamp"] for r in results]  # real time: media time runs with the clock
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.5 - 0.3, times  # one every 0.5 s at most
    with Spool(tmp_path / "spool", 1 << 20) as sp:
        assert sp.messages == 0  # all acknowledged


@needs_broker
def test_events_spooled_by_a_runtime_killed_while_the_broker_was_away_go_out_after_both_return(tmp_path, brokers):
    """Runtime A loses the broker and is killed (SIGKILL) with events spooled; runtime B starts while the broker is
    still away (--mqtt-optional), spools its own, and when the broker returns delivers A's, then its own, in order."""
    prefix = "site/box2"
    spool = str(tmp_path / "spool")
    broker = brokers(tmp_path / "broker")
    sub = peer.Subscriber(broker.port, f"{prefix}/#")
    url = f"{broker.url}/{prefix}"
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    proc_a, err_a = _spawn(tmp_path, "a", _argv(_paced(8, seed=3), "--jsonl", str(out_a), "--mqtt", url,
                                                "--mqtt-spool", spool))
    proc_b = None
    try:
        sub.wait_for(lambda g: _received(g), 60, "A's first event")
        broker.stop()
        delivered = {_key(e) for e in _received(sub.snapshot())}
        deadline = time.monotonic() + 30
        count, changed = -1, time.monotonic()
        # kill A once it made events offline, in a quiet moment (no new event in the last second: its worker has
        # spooled what the JSON Lines show, even on a busy runner)
        while True:
            events = _jsonl_events(out_a)
            if len(events) != count:
                count, changed = len(events), time.monotonic()
            if time.monotonic() - changed > 1.0 and len([e for e in events if _key(e) not in delivered]) >= 2:
                break
            assert time.monotonic() < deadline, "A made no events while the broker was away"
            time.sleep(0.05)
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait(10)
        spooled_by_a = [e for e in _jsonl_events(out_a) if _key(e) not in delivered]
        with Spool(spool, 1 << 20) as sp:
            assert sp.messages >= len(spooled_by_a)  # on disk, after a crash
        proc_b, err_b = _spawn(tmp_path, "b", _argv(_paced(2, seed=4), "--jsonl", str(out_b), "--mqtt", url,
                                                    "--mqtt-spool", spool, "--mqtt-optional"))
        time.sleep(3.0)  # B runs without its broker
        broker.start()
        assert proc_b.wait(60) == 0, err_b.read_text()[-3000:]
        expected = _jsonl_events(out_a) + _jsonl_events(out_b)
        got = sub.wait_for(_has_all(expected), 30, "A's and B's events")
    finally:
        _stop(proc_a)
        if proc_b is not None:
            _stop(proc_b)
        sub.close()
    assert _dedup(_received(got)) == expected
    log_b = err_b.read_text()
    assert "--mqtt-optional: recognition starts" in log_b and "again after" in log_b, log_b[-3000:]


@needs_broker
def test_the_last_will_marks_a_killed_runtime_offline(tmp_path):
    prefix = "site/box3"
    with peer.Broker(tmp_path / "broker", persistence=False) as broker:
        with peer.Subscriber(broker.port, f"{prefix}/status", persistent=False) as sub:
            proc, err = _spawn(tmp_path, "run", _argv(_paced(30), "--mqtt", f"{broker.url}/{prefix}", "--mqtt-spool",
                                                      str(tmp_path / "spool")))
            try:
                sub.wait_for(lambda g: g and g[-1].payload == b"online", 60, "online")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                got = sub.wait_for(lambda g: g[-1].payload == b"offline", 10, "the Last Will")
            finally:
                _stop(proc)
        assert [g.payload for g in got] == [b"online", b"offline"]
        assert peer.retained(broker.port, f"{prefix}/status") == b"offline"


@needs_broker
def test_a_wrong_password_is_one_error_optional_runs_anyway_and_the_right_one_delivers(tmp_path, capsys, caplog):
    from aknet_edge import run

    if peer.MOSQUITTO_PASSWD is None:
        pytest.skip("no mosquitto_passwd here (apt-get install mosquitto)")
    user = ("edge", "right-pass")
    spool = str(tmp_path / "spool")
    with peer.Broker(tmp_path / "broker", users=dict([user]), persistence=False) as broker:
        wrong = f"mqtt://edge:wrong-pass@127.0.0.1:{broker.port}/t"
        err = _one_error(capsys, run_cli(run.main, _argv(FAST, "--mqtt", wrong, "--mqtt-spool", spool)),
                         "the broker refused the connection")
        assert "check the user and password" in err and "wrong-pass" not in err
        with caplog.at_level(logging.WARNING, "aknet_edge.runtime.mqtt"):
            rc = run_cli(run.main, _argv(FAST, "--mqtt", wrong, "--mqtt-spool", spool, "--mqtt-optional",
                                         "--jsonl", str(tmp_path / "a.jsonl")))
        assert rc == 0, capsys.readouterr().err[-3000:]
        assert any("refused" in r.getMessage() for r in caplog.records)
        assert not any("wrong-pass" in r.getMessage() for r in caplog.records)
        spooled = _jsonl_events(tmp_path / "a.jsonl")
        with Spool(spool, 1 << 20) as sp:
            assert [json.loads(m.payload) for m in sp.after(0, 100)] == spooled and spooled
        with peer.Subscriber(broker.port, "t/#", user=user) as sub:
            right = f"mqtt://edge:right-pass@127.0.0.1:{broker.port}/t"
            assert run_cli(run.main, _argv(FAST, "--mqtt", right, "--mqtt-spool", spool, "--jsonl",
                                           str(tmp_path / "b.jsonl"))) == 0
            expected = spooled + _jsonl_events(tmp_path / "b.jsonl")
            got = sub.wait_for(_has_all(expected), 20, "the spooled events and the new ones")
        assert _dedup(_received(got)) == expected


@needs_paho
def test_an_unreachable_broker_at_start_is_one_error_and_optional_spools_every_event(tmp_path, capsys):
    from aknet_edge import run

    url = f"mqtt://127.0.0.1:{peer.free_port()}/t"  # nothing listens there
    spool = tmp_path / "spool"
    _one_error(capsys, run_cli(run.main, _argv(FAST, "--mqtt", url, "--mqtt-spool", str(spool))), "cannot connect")
    with Spool(spool, 1 << 20) as sp:
        assert sp.messages == 0
    out = tmp_path / "out.jsonl"
    assert run_cli(run.main, _argv(FAST, "--mqtt", url, "--mqtt-spool", str(spool), "--mqtt-optional",
                                   "--jsonl", str(out))) == 0
    with Spool(spool, 1 << 20) as sp:
        msgs = sp.after(0, 1000)
    assert [json.loads(m.payload) for m in msgs] == _jsonl_events(out) and msgs
    lines = [ln for ln in out.read_text().splitlines() if json.loads(ln)["type"] == "event"]
    assert [m.payload.decode() for m in msgs] == lines  # byte for byte the JSON Lines' lines
    assert {m.topic for m in msgs} == {"t/cam/event"} and all(m.qos == 1 for m in msgs)


def _event(i: int) -> ActionEvent:
    return ActionEvent("a", float(i), None, 0.9, 0.9, "started", stream="cam", id=uuid.uuid4().hex)


@needs_broker
def test_the_hooks_never_wait_for_a_stalled_broker(tmp_path):
    """The broker is frozen (SIGSTOP: connected, answering nothing): the hooks still return at once; when it thaws,
    everything is delivered."""
    with peer.Broker(tmp_path / "broker", persistence=False) as broker:
        with peer.Subscriber(broker.port, "t/#", persistent=False) as sub:
            sink = mqtt.MqttSink(mqtt.MqttOptions(broker.url + "/t", spool=str(tmp_path / "spool"),
                                                  results_every_s=0.001), ["cam"])
            sink.open()
            sent = [_event(i) for i in range(200)]
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                slowest = 0.0
                for ev in sent:
                    t0 = time.perf_counter()
                    sink.event(ev)
                    slowest = max(slowest, time.perf_counter() - t0)
                time.sleep(0.5)  # the worker meets the frozen broker
                t0 = time.perf_counter()
                sink.stream_state("cam", "lost", {})
                slowest = max(slowest, time.perf_counter() - t0)
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            # waiting for the broker would block until it thaws; the bound leaves room for a busy runner's pauses
            assert slowest < 1.0, f"a hook took {slowest * 1e3:.1f} ms"
            got = sub.wait_for(lambda g: len(_received(g)) >= len(sent), 20, "every event")
            sink.close()
    assert [e["start"] for e in _dedup(_received(got))] == [float(i) for i in range(200)]


@needs_broker
def test_mqtts_with_the_sites_ca_and_a_foreign_ca_refused(tmp_path, capsys):
    from aknet_edge import run

    if shutil.which("openssl") is None:
        pytest.skip("no openssl here to make the certificates")
    tls = peer.make_certificates(tmp_path / "certs", "site")
    foreign_ca = peer.make_certificates(tmp_path / "certs", "other")[0]
    with peer.Broker(tmp_path / "broker", persistence=False, tls=tls) as broker:
        url = f"mqtts://localhost:{broker.tls_port}/t"
        _one_error(capsys, run_cli(run.main, _argv(FAST, "--mqtt", url, "--mqtt-ca", str(foreign_ca), "--mqtt-spool",
                                                   str(tmp_path / "spool"))), "TLS")
        with peer.Subscriber(broker.port, "t/#", persistent=False) as sub:  # the plain listener, same broker
            out = tmp_path / "out.jsonl"
            assert run_cli(run.main, _argv(FAST, "--mqtt", url, "--mqtt-ca", str(tls[0]), "--mqtt-spool",
                                           str(tmp_path / "spool"), "--jsonl", str(out))) == 0
            expected = _jsonl_events(out)
            got = sub.wait_for(_has_all(expected), 20, "the events over TLS")
    assert _dedup(_received(got)) == expected
