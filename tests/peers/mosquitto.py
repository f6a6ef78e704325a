"""A real MQTT broker and subscriber for the tests: Debian's ``mosquitto`` on 127.0.0.1, paho as the client.

:class:`Broker` runs ``mosquitto -c CONF`` on a free loopback port (the same port again after a restart), with
an optional password file made by ``mosquitto_passwd`` and, by default, persistence (so a subscriber's session
and retained messages survive a restart, as on a site's broker). :class:`Subscriber` is a paho client with a
persistent session (clean_session off, QoS 1) that keeps every message it gets, in order, and reconnects on its
own. :func:`missing` says why these cannot run here (no mosquitto, no paho), or None.

Import with ``sys.path.insert(0, "tests/peers")``; used by tests/test_mqtt.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def missing() -> Optional[str]:
    """Why the broker tests cannot run here, or None."""
    if MOSQUITTO is None:
        return "no mosquitto broker here (apt-get install mosquitto)"
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "no paho-mqtt here (pip install 'aknet-edge[mqtt]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """mosquitto on 127.0.0.1:``port`` (a free one by default); ``users``: {name: password} (anonymous off then)."""

    def __init__(self, folder: Path, users: Optional[dict] = None, persistence: bool = True,
                 port: Optional[int] = None, tls: Optional[Tuple[Path, Path, Path]] = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.folder / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", f"log_dest file {self.log}", "log_type all"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # else it drops to user mosquitto: no log, no persistence
            lines.append("user root")
        if users:
            if MOSQUITTO_PASSWD is None:
                raise RuntimeError("no mosquitto_passwd here")
            pw = self.folder / "passwords"
            pw.write_text("")
            for name, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), name, password], check=True, capture_output=True)
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 1"]
        if tls:  # a second listener, TLS only: (CA, certificate, key) files
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls[0]}", f"certfile {tls[1]}",
                      f"keyfile {tls[2]}"]
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Broker":
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not (_listening(self.port) and (self.tls_port is None or _listening(self.tls_port))):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.proc.stderr.read().decode()}"
                                   f"{self.log.read_text() if self.log.exists() else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not listen in time")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: it saves its persistence file; SIGKILL: a crash) and wait until the port is free."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Got(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() when it arrived


class Subscriber:
    """A paho client subscribed to ``topic`` at QoS 1 with a persistent session; :attr:`got` in arrival order."""

    def __init__(self, port: int, topic: str = "#", user: Optional[Tuple[str, str]] = None,
                 persistent: bool = True) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.got: List[Got] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        kwargs: dict = dict(client_id=f"test-sub-{uuid.uuid4().hex[:8]}", clean_session=not persistent,
                            protocol=mqtt.MQTTv311)
        if hasattr(mqtt, "CallbackAPIVersion"):
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        else:
            self.client = mqtt.Client(**kwargs)
        if user is not None:
            self.client.username_pw_set(*user)
        self.client.reconnect_delay_set(1, 1)  # back within a second of the broker (the runtime's backoff is longer)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("the test subscriber did not connect")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        client.subscribe(self.topic, qos=1)
        self.connects += 1
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.got.append(Got(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def snapshot(self) -> List[Got]:
        with self._lock:
            return list(self.got)

    def wait_for(self, what: Callable[[List[Got]], bool], timeout: float, why: str) -> List[Got]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.snapshot()
            if what(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {why}; got {len(got)} messages: "
                                     f"{[(g.topic, g.payload[:60]) for g in got[-10:]]}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:
            pass

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_certificates(folder: Path, name: str = "test") -> Tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost and 127.0.0.1 signed by it (openssl): (ca.pem, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / f"{name}-{n}" for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                                   "server.pem"))
    ext = folder / f"{name}-ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def ssl_(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
         "-subj", f"/CN={name} test CA")
    ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ssl_("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
         "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def retained(port: int, topic: str, user: Optional[Tuple[str, str]] = None, wait_s: float = 1.0) -> Optional[bytes]:
    """The retained message on ``topic`` now (a fresh clean session subscribes and takes what comes first)."""
    with Subscriber(port, topic, user=user, persistent=False) as sub:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            got = [g for g in sub.snapshot() if g.retain]
            if got:
                return got[0].payload
            time.sleep(0.02)
    return None


__all__ = ["Broker", "Got", "MOSQUITTO", "Subscriber", "free_port", "make_certificates", "missing", "retained"]
