"""A durable, bounded message queue on disk: what an output holds while its receiver is away.

Why on disk: an event the broker has not acknowledged must survive the broker's outage *and* the runtime's
own restart (a power cut, systemd restarting the unit), so it is written before it is sent and removed
only once the receiver confirmed it. Why SQLite (the standard library's ``sqlite3``): one file, every
write a transaction (a message is in the file whole or not at all, even when the power goes mid-write),
the order kept by an integer key, and no format of our own to get wrong; nothing is pickled.

Bounded: the payloads' total size is capped (``max_bytes``); past the cap the oldest messages are dropped
and counted (:attr:`Spool.dropped`), never the newest, and never below the cap. One process at a time:
the folder is locked while a spool is open, so two runtimes never send (and delete) each other's messages.

Used from one thread (the output's own worker); :attr:`bytes` and :attr:`messages` are plain numbers
other threads (metrics) may read at any time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Union

from aknet_edge.errors import ConfigError

try:  # POSIX (Linux, macOS: every device this runs on); elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FILE_NAME = "spool.sqlite3"
LOCK_NAME = "spool.lock"


class Message(NamedTuple):
    """One spooled message; ``seq`` orders them (oldest first) and names it for :meth:`Spool.remove`."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Spool:
    """Messages in order in ``folder/spool.sqlite3``, at most ``max_bytes`` of payload (oldest dropped past it).

    Raises :class:`~aknet_edge.errors.ConfigError` when the folder cannot be created or written, its file is
    not a spool, or another process holds it.
    """

    def __init__(self, folder: Union[str, "os.PathLike[str]"], max_bytes: int, what: str = "--mqtt-spool") -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILE_NAME
        self.max_bytes = int(max_bytes)
        self.dropped = 0  # messages dropped past the cap since this spool opened
        self.bytes = 0
        self.messages = 0
        self._what = what
        self._lock_fd: Optional[int] = None
        self._db: Optional[sqlite3.Connection] = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{what} {self.folder}: cannot create the folder ({exc.strerror or exc}); give a "
                              "writable folder") from None
        self._lock()
        try:
            # check_same_thread off: opened here, used by the owner's worker thread (one at a time)
            self._db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")  # a commit is one append to the log
            self._db.execute("PRAGMA synchronous=FULL")  # ... on the disk before put() returns
            self._db.execute("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, "
                             "retain INTEGER NOT NULL)")
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise ConfigError(f"{what} {self.folder}: {self.path.name} is not a usable spool ({exc}); move it away "
                              "or give another folder") from None
        self.messages, self.bytes = int(row[0]), int(row[1])
        if self.messages:
            log.info("%s %s: %d message(s) (%d bytes) from an earlier run wait to be delivered", what, self.folder,
                     self.messages, self.bytes)

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fd = os.open(str(self.folder / LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{self._what} {self.folder}: cannot write in the folder ({exc.strerror or exc}); give "
                              "a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"{self._what} {self.folder}: another running process uses this spool; give each "
                              "runtime its own folder") from None
        self._lock_fd = fd

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Append a message (on disk when this returns); drop the oldest past the cap. Returns how many were
        dropped now (the new message itself is kept even when it alone is over the cap)."""
        db = self._conn()
        size, count, dropped = self.bytes + len(payload), self.messages + 1, 0
        with db:  # one transaction: the insert and the drops
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO messages (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                       (topic, sqlite3.Binary(payload), int(qos), 1 if retain else 0))
            while size > self.max_bytes and count > 1:
                seq, old = db.execute("SELECT seq, LENGTH(payload) FROM messages ORDER BY seq LIMIT 1").fetchone()
                db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                size, count, dropped = size - int(old), count - 1, dropped + 1
        self.bytes, self.messages = size, count
        self.dropped += dropped
        return dropped

    def after(self, seq: int, limit: int) -> List[Message]:
        """Up to ``limit`` messages after ``seq`` (0: from the oldest), oldest first."""
        rows = self._conn().execute("SELECT seq, topic, payload, qos, retain FROM messages WHERE seq > ? ORDER BY seq "
                                    "LIMIT ?", (int(seq), int(limit))).fetchall()
        return [Message(int(s), str(t), bytes(p), int(q), bool(r)) for s, t, p, q, r in rows]

    def remove(self, seq: int) -> None:
        """A message was delivered: forget it (a seq no longer there, dropped past the cap, is fine)."""
        db = self._conn()
        with db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT LENGTH(payload) FROM messages WHERE seq = ?", (int(seq),)).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM messages WHERE seq = ?", (int(seq),))
        self.bytes -= int(row[0])
        self.messages -= 1

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the spool {self.path} is closed")
        return self._db

    def close(self) -> None:
        """Close the file and release the folder (what is in it stays for the next run)."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error as exc:
                log.warning("closing the spool %s: %s", self.path, exc)
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["FILE_NAME", "Message", "Spool"]
