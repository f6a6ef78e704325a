"""MQTT output: events (and, rate-limited, results) to a broker, nothing lost while it is away.

``--mqtt mqtt://[USER:PASSWORD@]HOST[:PORT][/PREFIX]`` (``mqtts://`` for TLS, ``--mqtt-ca FILE`` for a
private CA; PREFIX defaults to ``aknet/HOSTNAME``). Topics, every payload a JSON Lines record
(:mod:`aknet_edge.runtime.records`, the same schema) except the two plain words:

* ``PREFIX/STREAM/event``: every event line, at QoS 1, through the spool (below);
* ``PREFIX/STREAM/result``: result lines at QoS 0, at most one per lane every ``--mqtt-results-every S``
  (off by default: events only); while the broker is away they are counted as skipped, never spooled;
* ``PREFIX/STREAM/state``: ``live``, ``lost`` or ``ended``, retained (a dashboard that subscribes later sees
  the camera's state now);
* ``PREFIX/status``: ``online``, retained, once connected; ``offline`` when the runtime stops, and as the
  Last Will, which the broker publishes when the runtime vanishes (killed, power cut, network gone) so a
  dead device shows.

Why a spool: a site's broker restarts, its network drops, and the runtime itself is restarted; an event
must survive all three. Every event is written to a durable queue on disk (:class:`~.spool.Spool`,
``--mqtt-spool DIR``, default ``AKNET_EDGE_CACHE/mqtt-spool``) before it is sent and removed only when the
broker acknowledged it (PUBACK), so events reach the broker in order after an outage of either side, at
least once: a receiver keeps one line per ``(id, state)`` (the event's ``id``). The spool is bounded
(``--mqtt-spool-max-mb``): past the cap the oldest events are dropped and counted.

Why a thread of its own: recognition never waits on the broker. The sink's hooks only put records on a
queue; one worker thread writes the spool and publishes, and paho's network thread reconnects with
backoff (1 s doubling to 10 s).

A broker that refuses the credentials, or cannot be reached, when the run starts is one ``error:`` line
(exit 2) unless ``--mqtt-optional``, which starts anyway, spools, and keeps trying.

paho-mqtt (1.6 or 2.x) is an optional dependency: ``pip install 'aknet-edge[mqtt]'``.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sqlite3
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from aknet_edge import settings
from aknet_edge.checks import check_number
from aknet_edge.errors import ConfigError, DependencyError
from aknet_edge.redact import MASK, redact

from . import records
from .sinks import Sink
from .spool import Spool
from .telemetry import ENDED, LIVE, RECONNECTING

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": 1883, "mqtts": 8883}  # scheme -> default port
SPOOL_MAX_MB = 100.0
SPOOL_FOLDER = "mqtt-spool"  # under the cache folder (AKNET_EDGE_CACHE) unless --mqtt-spool says otherwise
CONNECT_TIMEOUT_S = 10.0  # at start: how long the broker may take to answer
KEEPALIVE_S = 30  # the broker declares the runtime gone (and sends the Last Will) after 1.5 x this without a word
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 10  # paho's reconnect backoff, doubling
WINDOW = 16  # spooled events handed to the client at a time, not yet acknowledged
DRAIN_S = 10.0  # at close, connected: how long delivering what is left may take (the rest stays spooled)
RESULTS_QUEUE_MAX = 1000  # results waiting for the worker; past it they are skipped (events always wait)
RESEND_GIVE_UP_S = 30.0  # after a reconnect: events paho was resending and still not acknowledged are sent again
STATUS_ONLINE, STATUS_OFFLINE = "online", "offline"
STATE_LIVE, STATE_LOST, STATE_ENDED = "live", "lost", "ended"
_SOURCE_STATE = {LIVE: STATE_LIVE, RECONNECTING: STATE_LOST, ENDED: STATE_ENDED}  # telemetry -> topic word
DEFAULT_STREAM = "default"  # the topic level of an unnamed recogniser's stream


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise DependencyError("--mqtt needs paho-mqtt: pip install 'aknet-edge[mqtt]'") from None
    return mqtt


def _level(name: Optional[str]) -> str:
    """A stream's name as one topic level (``/``, ``+`` and ``#`` would split or widen it)."""
    if name is None or name == "":
        return DEFAULT_STREAM
    return "".join("_" if c in "/+#\0" else c for c in name)


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed ``--mqtt`` URL."""

    scheme: str
    host: str
    port: int
    username: Optional[str]
    password: Optional[str]
    prefix: str

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:  # for messages: never the password
        user = "" if self.username is None else \
            urllib.parse.quote(self.username, safe="") + (f":{MASK}" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}/{self.prefix}"


def default_prefix() -> str:
    """``aknet/HOSTNAME``: devices sharing a broker do not share topics unless told to."""
    return "aknet/" + _level(socket.gethostname() or "edge")


def parse_url(url: str, flag: str = "--mqtt") -> BrokerUrl:
    """``mqtt://[user[:password]@]host[:port][/prefix]`` or ``mqtts://...``; ConfigError saying what was expected."""
    # (no "scheme://user:password@" here: the error line's redaction would mask it)
    expected = "expected mqtt://HOST[:PORT][/PREFIX] or mqtts://..., a login as USER:PASSWORD@HOST"
    shown = str(url)
    try:
        parts = urllib.parse.urlsplit(shown)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{flag} {_redacted(shown)}: {exc}; {expected}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        given = f"{parts.scheme}://" if parts.scheme else "(none)"
        raise ConfigError(f"{flag} {_redacted(shown)}: unknown scheme {given}; {expected}")
    if not parts.hostname:
        raise ConfigError(f"{flag} {_redacted(shown)}: no host; {expected}")
    if "#" in shown or "?" in shown:
        raise ConfigError(f"{flag} {_redacted(shown)}: a query (?) or fragment (#) means nothing here, and the "
                          f"prefix takes no wildcards; {expected}")
    if port == 0:
        raise ConfigError(f"{flag} {_redacted(shown)}: port 0; {expected}")
    prefix = urllib.parse.unquote(parts.path).strip("/")
    if not prefix:
        prefix = default_prefix()
    bad = [c for c in "+#\0" if c in prefix]
    if bad or any(level == "" for level in prefix.split("/")):
        raise ConfigError(f"{flag} {_redacted(shown)}: topic prefix {prefix!r}: expected topic levels separated "
                          "by single '/', without the wildcards + and #")
    username = None if parts.username is None else urllib.parse.unquote(parts.username)
    password = None if parts.password is None else urllib.parse.unquote(parts.password)
    return BrokerUrl(scheme, parts.hostname, port or SCHEMES[scheme], username, password, prefix)


def _redacted(url: str) -> str:
    return redact(url)


@dataclass
class MqttOptions:
    """What ``--mqtt`` and its flags say (library: ``MqttSink(MqttOptions("mqtt://broker/site"))``).

    ``results_every_s``: None publishes events only. ``spool``: the spool's folder (None:
    ``AKNET_EDGE_CACHE/mqtt-spool``). ``optional``: a broker that cannot be reached or refuses at start is a
    warning, not an error.
    """

    url: str
    ca: Optional[str] = None
    results_every_s: Optional[float] = None
    spool: Optional[str] = None
    spool_max_mb: float = SPOOL_MAX_MB
    optional: bool = False
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    keepalive_s: int = KEEPALIVE_S
    drain_s: float = DRAIN_S
    client_id: Optional[str] = None  # None: aknet-edge-<random>

    def check(self) -> BrokerUrl:
        """The URL and every value, without connecting; ConfigError naming the flag."""
        url = parse_url(self.url)
        if self.ca is not None:
            if not url.tls:
                raise ConfigError(f"--mqtt-ca {self.ca}: only for mqtts:// (TLS); use mqtts://{url.host}:... or drop "
                                  "--mqtt-ca")
            if not Path(self.ca).is_file():
                raise ConfigError(f"--mqtt-ca {self.ca}: no such file; give the PEM file of the CA that signed the "
                                  "broker's certificate")
        check_number("--mqtt-results-every", self.results_every_s, above=0, unit="seconds")
        check_number("--mqtt-spool-max-mb", self.spool_max_mb, above=0, optional=False)
        check_number("connect_timeout_s", self.connect_timeout_s, above=0, optional=False)
        check_number("keepalive_s", self.keepalive_s, minimum=5, whole=True, optional=False)
        check_number("drain_s", self.drain_s, minimum=0, optional=False)
        folder = self.spool_dir()
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--mqtt-spool {folder}: not a folder; give a folder for the spool")
        return url

    def spool_dir(self) -> Path:
        return Path(self.spool) if self.spool else settings.cache_dir() / SPOOL_FOLDER


def _rc(rc: Any, mqtt: Any) -> Tuple[bool, str]:
    """A CONNACK's code, paho 2 (a ReasonCode) or 1.x (an int) -> (accepted, words)."""
    if hasattr(rc, "is_failure"):
        return (not rc.is_failure), str(rc)
    try:
        code = int(rc)
    except (TypeError, ValueError):
        return False, str(rc)
    return code == 0, str(mqtt.connack_string(code))


def _refusal_hint(words: str) -> str:
    low = words.lower()
    if "password" in low or "authori" in low:
        return "check the user and password in the URL (mqtt://USER:PASSWORD@HOST...)"
    if "identifier" in low:
        return "the broker refused the client id"
    return "check the broker's configuration"


class MqttSink(Sink):
    """The MQTT output (see the module's docstring). ``streams``: the camera names (their state topics say
    ``live`` once the sink opens); others are learnt from their records.

    :meth:`start` connects (the run CLI calls it before recognition starts, so a wrong password is one error);
    :meth:`open` starts it if nobody did. Counters: :attr:`events_sent` (acknowledged), :attr:`results_sent`,
    :attr:`results_skipped` (rate-limited ones are not counted), :attr:`dropped` (events dropped past the spool's
    cap), :attr:`outages`.
    """

    name = "mqtt"
    wants_stats = True  # the sources' states (live, reconnecting, ended) for the state topics

    def __init__(self, options: MqttOptions, streams: Sequence[Optional[str]] = ()) -> None:
        self.options = options
        self.url = options.check()
        self._mqtt = _paho()
        self.prefix = self.url.prefix
        self.status_topic = f"{self.prefix}/status"
        self._streams: Dict[Optional[str], Optional[str]] = {s: None for s in streams}  # name -> state published
        self._inbox: "queue.Queue[Tuple[Any, ...]]" = queue.Queue()
        self._last_result: Dict[Tuple[Any, ...], float] = {}
        self._connected = False  # the worker's view (and the hooks': results while offline are skipped)
        self._connack = threading.Event()
        self._connack_words: Optional[str] = None  # a refusal at the first CONNACK
        self._inflight: Dict[int, int] = {}  # mid -> spool seq, handed to paho, not acknowledged
        self._resending: Set[int] = set()  # mids paho resends after a reconnect: new events wait for them
        self._resend_since = 0.0
        self._cursor = 0  # the newest spool seq handed to paho
        self._spool: Optional[Spool] = None
        self._client: Any = None
        self._worker: Optional[threading.Thread] = None
        self._loop_started = False
        self._started = False
        self._closed = False
        self._down_since: Optional[float] = None
        self._refused_words: Optional[str] = None
        self.events_sent = 0
        self.results_sent = 0
        self.results_skipped = 0
        self.outages = 0
        self.lost = 0  # events neither spooled (the disk failed) nor sent

    # -- metrics (aknet_edge.runtime.prom reads these)
    @property
    def queue_depth(self) -> int:
        return self._inbox.qsize()

    @property
    def spool_bytes(self) -> Optional[int]:
        return None if self._spool is None else self._spool.bytes

    @property
    def spool_messages(self) -> Optional[int]:
        return None if self._spool is None else self._spool.messages

    @property
    def dropped(self) -> int:
        return 0 if self._spool is None else self._spool.dropped

    @property
    def connected(self) -> bool:
        return self._connected

    # -- connecting
    def start(self) -> None:
        """Open the spool and connect; wait for the broker's answer. A refusal, an unreachable broker or no answer
        within ``connect_timeout_s`` is a ConfigError (with ``optional``: a warning, and paho keeps trying)."""
        if self._started:
            return
        self._started = True
        opts, url, mqtt = self.options, self.url, self._mqtt
        self._spool = Spool(opts.spool_dir(), int(opts.spool_max_mb * 1024 * 1024))
        try:
            client = self._make_client()
        except BaseException:
            self._spool.close()
            self._spool = None
            raise
        self._client = client
        self._worker = threading.Thread(target=self._run, name="aknet-mqtt", daemon=True)
        self._worker.start()
        problem: Optional[str] = None
        try:
            client.connect(url.host, url.port, opts.keepalive_s)
        except (OSError, ValueError) as exc:  # refused, unreachable, unknown host, TLS handshake (ssl.SSLError)
            problem = f"cannot connect: {_os_reason(exc)}"
        if problem is None:
            client.loop_start()
            self._loop_started = True
            if not self._connack.wait(opts.connect_timeout_s):
                problem = f"no answer from the broker within {opts.connect_timeout_s:g} s"
            elif self._connack_words is not None:
                problem = f"the broker refused the connection: {self._connack_words}; " \
                          f"{_refusal_hint(self._connack_words)}"
        if problem is None:
            log.info("MQTT: connected to %s", url)
            return
        if not opts.optional:
            self._abort()
            raise ConfigError(f"--mqtt {url}: {problem} (--mqtt-optional starts anyway and keeps trying)")
        log.warning("MQTT: --mqtt %s: %s; --mqtt-optional: recognition starts, events are spooled in %s until the "
                    "broker answers", url, problem, opts.spool_dir())
        self._note_down()
        if not self._loop_started:  # the first connect failed before the loop started: paho retries from here
            client.connect_async(url.host, url.port, opts.keepalive_s)
            client.loop_start()
            self._loop_started = True

    def _make_client(self) -> Any:
        mqtt, opts, url = self._mqtt, self.options, self.url
        cid = opts.client_id or f"aknet-edge-{uuid.uuid4().hex[:12]}"
        kwargs = dict(client_id=cid, clean_session=True, protocol=mqtt.MQTTv311)
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        else:  # paho 1.6
            client = mqtt.Client(**kwargs)
        if hasattr(client, "connect_timeout"):
            client.connect_timeout = opts.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(WINDOW + 16)  # the window, the status and a few state topics
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        if url.username is not None:
            client.username_pw_set(url.username, url.password)
        if url.tls:
            try:
                client.tls_set(ca_certs=opts.ca)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--mqtt-ca {opts.ca}: cannot be used for TLS ({_os_reason(exc)}); give the PEM "
                                  "file of the CA that signed the broker's certificate") from None
        return client

    def _abort(self) -> None:
        """A failed start: stop paho and the worker, release the spool."""
        client = self._client
        if client is not None:
            try:
                client.disconnect()
            except Exception as exc:  # not connected
                log.debug("MQTT: disconnect: %s", exc)
            if self._loop_started:
                client.loop_stop()
        self._inbox.put(("stop",))
        if self._worker is not None:
            self._worker.join(5.0)
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._closed = True

    # -- paho's callbacks (its network thread): hand over and return
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        ok, words = _rc(rc, self._mqtt)
        if ok:
            self._inbox.put(("connected",))
        else:
            if not self._connack.is_set():
                self._connack_words = words
            self._inbox.put(("refused", words))
        self._connack.set()

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        # paho 2: (flags, reason_code, properties); paho 1.x: (rc,)
        rc = args[1] if len(args) >= 2 else (args[0] if args else None)
        if isinstance(rc, int):
            words = str(self._mqtt.error_string(rc)).rstrip(".")
        else:
            words = str(rc) if rc is not None and "unspecified" not in str(rc).lower() else "connection lost"
        self._inbox.put(("disconnected", words))

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        self._inbox.put(("ack", mid))

    # -- the sink's hooks (the pipeline's head stage): hand over and return
    def open(self) -> None:
        self.start()
        for name in list(self._streams):
            self._set_state(name, STATE_LIVE)

    def result(self, result: Any) -> None:
        every = self.options.results_every_s
        if every is None:
            return
        key = (result.stream, getattr(result, "roi", None), getattr(result, "track", None))
        now = time.monotonic()
        last = self._last_result.get(key)
        if last is not None and now - last < every:
            return
        self._last_result[key] = now
        self._learn(result.stream)
        if not self._connected or self._inbox.qsize() > RESULTS_QUEUE_MAX:
            self.results_skipped += 1
            return
        self._inbox.put(("result", self._topic(result.stream, "result"), _json(records.result_record(result))))

    def event(self, event: Any) -> None:
        self._learn(event.stream)
        self._inbox.put(("event", self._topic(event.stream, "event"), _json(records.event_record(event))))

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        self._set_state(stream, STATE_LOST if state == "lost" else STATE_LIVE)

    def stats(self, stats: Any) -> None:
        for name, snap in list(getattr(stats, "streams", {}).items()):
            if name in self._streams:
                word = _SOURCE_STATE.get(getattr(snap, "source_state", None))
                if word is not None:
                    self._set_state(name, word)

    def close(self) -> None:
        """Every stream ``ended``; deliver what is spooled (up to ``drain_s`` while connected; the rest waits on
        disk for the next run); ``offline``; disconnect."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        for name, word in list(self._streams.items()):
            if word is not None:  # a camera that was reported at all (not when the run failed before it opened)
                self._set_state(name, STATE_ENDED)
        self._inbox.put(("close",))
        if self._worker is not None:
            self._worker.join(self.options.drain_s + 10.0)
            if self._worker.is_alive():
                log.warning("MQTT: the output's thread did not finish in time; closing anyway")
        client = self._client
        if client is not None and self._loop_started:
            client.loop_stop()
        if self._spool is not None:
            if self._spool.messages:
                log.warning("MQTT: %d event(s) not yet delivered stay in the spool %s; the next run with this spool "
                            "sends them", self._spool.messages, self._spool.folder)
            if self._worker is None or not self._worker.is_alive():
                self._spool.close()

    # -- helpers on the hooks' side
    def _topic(self, stream: Optional[str], kind: str) -> str:
        return f"{self.prefix}/{_level(stream)}/{kind}"

    def _learn(self, stream: Optional[str]) -> None:
        if stream not in self._streams:
            self._set_state(stream, STATE_LIVE)

    def _set_state(self, stream: Optional[str], word: str) -> None:
        if self._streams.get(stream, "") == word:
            return
        self._streams[stream] = word
        self._inbox.put(("state", stream, word))

    # -- the worker thread: spool, publish, acknowledgements
    def _run(self) -> None:
        closing_until: Optional[float] = None
        while True:
            try:
                item = self._inbox.get(timeout=0.5)
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    kind = item[0]
                    if kind == "stop":
                        return
                    if kind == "close":
                        closing_until = time.monotonic() + (self.options.drain_s if self._connected else 0.0)
                    else:
                        self._handle(item)
                self._check_resend()
                self._pump()
            except Exception:  # a bug must not end delivery silently: say so, go on
                log.exception("MQTT: the output's thread failed on %s", item[0] if item else "a tick")
            if closing_until is not None and self._inbox.empty():
                spool = self._spool
                done = spool is None or (spool.messages == 0 and not self._inflight)
                if done or time.monotonic() >= closing_until:
                    self._finish()
                    return

    def _handle(self, item: Tuple[Any, ...]) -> None:
        kind = item[0]
        spool = self._spool
        assert spool is not None
        if kind == "event":
            try:
                dropped = spool.put(item[1], item[2], qos=1)
            except sqlite3.Error as exc:  # a full or failing disk: send it unspooled if we can
                self._unspooled(item[1], item[2], exc)
                return
            if dropped:
                log.warning("MQTT: the spool %s is full (--mqtt-spool-max-mb %g): %d oldest event(s) dropped "
                            "(%d in all)", spool.folder, self.options.spool_max_mb, dropped, spool.dropped)
        elif kind == "ack":
            seq = self._inflight.pop(item[1], None)
            if seq is not None:
                spool.remove(seq)
                self.events_sent += 1
            self._resending.discard(item[1])
        elif kind == "result":
            if self._connected:
                self._publish(item[1], item[2], 0, False)
                self.results_sent += 1
            else:
                self.results_skipped += 1
        elif kind == "state":
            if self._connected:
                self._publish(self._topic(item[1], "state"), item[2].encode(), 1, True)
        elif kind == "connected":
            self._connected = True
            if self._down_since is not None:
                log.warning("MQTT: connected to %s again after %.1f s; %d spooled event(s) to deliver", self.url,
                            time.monotonic() - self._down_since, spool.messages)
                self._down_since = None
            self._refused_words = None
            # paho sends again what it had in flight (in order); newer events wait for those, so order holds
            self._resending = set(self._inflight)
            self._resend_since = time.monotonic()
            self._publish(self.status_topic, STATUS_ONLINE.encode(), 1, True)
            for name, word in list(self._streams.items()):
                if word is not None:
                    self._publish(self._topic(name, "state"), word.encode(), 1, True)
        elif kind == "disconnected":
            if self._connected:
                self._connected = False
                self._note_down()
                log.warning("MQTT: lost the broker %s (%s); events are spooled in %s and sent when it is back, "
                            "recognition goes on", self.url, item[1], spool.folder)
        elif kind == "refused":
            self._connected = False
            if self._refused_words != item[1]:
                self._refused_words = item[1]
                log.warning("MQTT: the broker %s refused the connection: %s; %s; retrying", self.url, item[1],
                            _refusal_hint(item[1]))

    def _unspooled(self, topic: str, payload: bytes, exc: BaseException) -> None:
        if self._connected and self._publish(topic, payload, 1, False) is not None:
            log.warning("MQTT: cannot write the spool %s (%s): an event was sent without it (not kept if the "
                        "broker goes away now)", self._spool.folder if self._spool else "", exc)
        else:
            self.lost += 1
            log.warning("MQTT: cannot write the spool (%s) and the broker is away: an event is lost (%d in all)",
                        exc, self.lost)

    def _note_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.outages += 1

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> Optional[int]:
        """Hand one message to paho; its mid, or None when paho refused it (logged)."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, TypeError) as exc:  # a topic or payload MQTT cannot carry
            log.warning("MQTT: cannot publish to %s: %s", topic, exc)
            return None
        return int(info.mid)

    def _pump(self) -> None:
        """Hand the oldest spooled events not yet handed to paho, up to :data:`WINDOW` unacknowledged."""
        spool = self._spool
        if not self._connected or self._resending or spool is None:
            return
        while len(self._inflight) < WINDOW:
            batch = spool.after(self._cursor, WINDOW - len(self._inflight))
            if not batch:
                return
            for msg in batch:
                self._cursor = msg.seq
                mid = self._publish(msg.topic, msg.payload, msg.qos, msg.retain)
                if mid is None:  # never deliverable: do not block the others behind it
                    spool.remove(msg.seq)
                else:
                    self._inflight[mid] = msg.seq

    def _check_resend(self) -> None:
        """After a reconnect, events paho was resending and that are still unacknowledged after
        :data:`RESEND_GIVE_UP_S`: forget their handover and send them again from the spool (a receiver may then
        get one twice, and keeps one per id)."""
        if not (self._connected and self._resending) or time.monotonic() - self._resend_since < RESEND_GIVE_UP_S:
            return
        seqs = [self._inflight.pop(mid) for mid in list(self._resending) if mid in self._inflight]
        self._resending.clear()
        if seqs:
            log.warning("MQTT: %d event(s) unacknowledged %g s after reconnecting: sending them again", len(seqs),
                        RESEND_GIVE_UP_S)
            self._cursor = min(self._cursor, min(seqs) - 1)
            for mid in list(self._inflight):  # everything after them goes again too, in order
                if self._inflight[mid] > self._cursor:
                    del self._inflight[mid]

    def _finish(self) -> None:
        """Closing: ``offline`` (retained; a clean disconnect sends no Last Will), then disconnect."""
        client = self._client
        if self._connected:
            try:
                info = client.publish(self.status_topic, STATUS_OFFLINE.encode(), qos=1, retain=True)
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError) as exc:  # paho: not connected any more
                log.debug("MQTT: offline status not sent: %s", exc)
        try:
            client.disconnect()
        except Exception as exc:
            log.debug("MQTT: disconnect: %s", exc)


def _json(obj: Dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")  # byte for byte the JSON Lines' line


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- the run CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mqtt URL``, ``--mqtt-ca FILE``, ``--mqtt-results-every S``, ``--mqtt-spool DIR``,
    ``--mqtt-spool-max-mb MB``, ``--mqtt-optional`` (checked by :func:`validate`)."""
    g = parser.add_argument_group("MQTT (pip install 'aknet-edge[mqtt]')")
    g.add_argument("--mqtt", metavar="URL", help="publish events to an MQTT broker: mqtt://[USER:PASSWORD@]HOST[:PORT]"
                   "[/PREFIX] or mqtts:// (TLS); topics PREFIX/STREAM/event (QoS 1, spooled on disk while the broker "
                   "is away), PREFIX/STREAM/result, PREFIX/STREAM/state and PREFIX/status (retained; offline as the "
                   "Last Will); PREFIX defaults to aknet/HOSTNAME")
    g.add_argument("--mqtt-ca", metavar="FILE", help="with mqtts://: the CA certificate (PEM) that signed the broker's "
                   "(default: the system's CAs)")
    g.add_argument("--mqtt-results-every", type=float, metavar="S", help="also publish results, at most one per "
                   "camera (region, track) every S seconds, QoS 0, not spooled (default: events only)")
    g.add_argument("--mqtt-spool", metavar="DIR", help="the folder of the on-disk spool that keeps events until the "
                   f"broker acknowledged them, also across restarts (default AKNET_EDGE_CACHE/{SPOOL_FOLDER})")
    g.add_argument("--mqtt-spool-max-mb", type=float, metavar="MB", help=f"most MB of events the spool keeps; past it "
                   f"the oldest are dropped and counted (default {SPOOL_MAX_MB:g})")
    g.add_argument("--mqtt-optional", action="store_true", default=None,
                   help="start even when the broker cannot be reached or refuses the credentials at start (events "
                        "are spooled; it keeps trying); by default that is an error")


_FLAGS = {"mqtt_ca": "--mqtt-ca", "mqtt_results_every": "--mqtt-results-every", "mqtt_spool": "--mqtt-spool",
          "mqtt_spool_max_mb": "--mqtt-spool-max-mb", "mqtt_optional": "--mqtt-optional"}


def options_from_args(args: argparse.Namespace) -> Optional[MqttOptions]:
    """The MQTT options the flags give (None without ``--mqtt``; its other flags alone are an error)."""
    if getattr(args, "mqtt", None) is None:
        given = [flag for dest, flag in _FLAGS.items() if getattr(args, dest, None) not in (None, False)]
        if given:
            raise ConfigError(f"{given[0]}: given without --mqtt URL; add --mqtt mqtt://HOST... or drop it")
        return None
    max_mb = getattr(args, "mqtt_spool_max_mb", None)
    return MqttOptions(args.mqtt, ca=getattr(args, "mqtt_ca", None),
                       results_every_s=getattr(args, "mqtt_results_every", None),
                       spool=getattr(args, "mqtt_spool", None),
                       spool_max_mb=SPOOL_MAX_MB if max_mb is None else max_mb,
                       optional=bool(getattr(args, "mqtt_optional", None)))


def validate(args: argparse.Namespace) -> None:
    """The MQTT flags, before a package, backend or source opens; nothing is connected or created here."""
    opts = options_from_args(args)
    if opts is not None:
        opts.check()
        _paho()


def sinks_from_args(args: argparse.Namespace, streams: Sequence[Optional[str]] = ()) -> List[Sink]:
    """The MQTT sink the flags ask for, connected (a refusal or an unreachable broker is a ConfigError here, before
    recognition starts, unless ``--mqtt-optional``); [] without ``--mqtt``."""
    opts = options_from_args(args)
    if opts is None:
        return []
    sink = MqttSink(opts, streams)
    sink.start()
    return [sink]


__all__ = ["BrokerUrl", "DEFAULT_STREAM", "MqttOptions", "MqttSink", "SCHEMES", "SPOOL_MAX_MB", "add_arguments",
           "default_prefix", "options_from_args", "parse_url", "sinks_from_args", "validate"]
