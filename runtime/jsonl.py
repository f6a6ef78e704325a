"""JSON Lines output: one object per line, written whole or not at all.

What the lines hold (``type`` "result", "event", "stream", "server" or "clip", ``v`` the schema version, every
field) is defined in one place, :mod:`aknet_edge.runtime.records`, with its JSON Schema
(``aknet_edge/runtime/schema/jsonl.schema.json``); :class:`JsonlWriter` builds its lines only
through it, and :class:`JsonlSink` is the same output as a pipeline sink.

Lines are written whole or not at all: a failing output (disk full, a reader that went away)
is reported once as a warning and then left alone, recognition goes on, and a line the failure
cut short is removed from a regular file (truncated back to the last whole line).
"""

from __future__ import annotations

import codecs
import errno
import io
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import IO, Any, Dict, Optional, Union

from . import records
from .sinks import Sink

log = logging.getLogger(__name__)

_PIPE_GONE = (errno.EPIPE, errno.ECONNRESET)


def _plain_file(fh: Any) -> bool:
    """Whether ``fh`` is a text file straight over an OS file (UTF-8 or ASCII), so its descriptor can take our bytes
    (not, e.g., a text layer over gzip, whose descriptor is the compressed file's)."""
    buffer = getattr(fh, "buffer", None)
    if not isinstance(fh, io.TextIOWrapper) or not isinstance(buffer, (io.BufferedWriter, io.BufferedRandom)):
        return False
    if not isinstance(getattr(buffer, "raw", None), io.FileIO):
        return False
    try:
        return codecs.lookup(fh.encoding).name in ("utf-8", "ascii")
    except (LookupError, TypeError):
        return False


class LineWriter:
    """Whole text lines to a path, ``"-"`` (stdout) or an open text stream; a failure stops it once, quietly.

    A path is written through its own unbuffered descriptor; a text file straight over an OS
    file (stdout, ``open(path, "w")``) is flushed and then written through its descriptor, so a short
    write can be finished or, on a regular file, cut back to the last whole line; other
    streams (``io.StringIO``...) get one ``write`` and a ``flush`` per line, cut back with
    ``seek``/``truncate`` when they can. After the first failure (``failed`` holds the reason)
    nothing more is written. When stdout's reader goes away (``... | head``), stdout is pointed
    at the null device, so later prints and the interpreter's exit do not fail on it either.
    """

    def __init__(self, target: Union[str, "os.PathLike[str]", IO[str]], label: str = "output",
                 defer: bool = False) -> None:
        self.failed: Optional[str] = None
        self._fd: Optional[int] = None
        self._own = False
        self._stdout = False
        self._regular = False
        self._path: Optional[Path] = None
        self._closed = False
        if isinstance(target, str) and target == "-":
            self._fh: Optional[IO[str]] = sys.stdout
            self._stdout = True
        elif isinstance(target, (str, os.PathLike)):
            self._path = Path(target)
            self._fh = None
            self._own = True
            if not defer:
                self.open()
        else:
            self._fh = target
        if self._stdout:
            what = "stdout"
        elif self._fh is None:
            what = str(target)
        else:
            what = str(getattr(self._fh, "name", None) or type(self._fh).__name__)
        self.name = f"{label} {what}"  # for messages
        if self._fd is None and self._fh is not None and _plain_file(self._fh):
            try:
                self._fd = self._fh.fileno()
            except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
                self._fd = None  # no descriptor: a Python-level stream
        self._check_fd()
        try:
            self._seekable = self._fd is None and self._fh is not None and bool(self._fh.seekable())
        except (AttributeError, OSError, ValueError):
            self._seekable = False

    def open(self) -> None:
        """Create (or truncate) the file of a path target now; a deferred one opens here or at its first line.
        Raises what ``os.open`` raises."""
        if self._path is None or self._fd is not None or self._closed:
            return
        self._fd = os.open(str(self._path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
        self._check_fd()

    def _check_fd(self) -> None:
        if self._fd is not None:
            try:
                self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            except OSError:
                self._regular = False

    @property
    def closed(self) -> bool:
        if self._own:
            return self._closed
        return self._fh is None or bool(getattr(self._fh, "closed", False))

    def write_line(self, text: str) -> bool:
        """Write ``text`` and a newline, whole; False once the output has failed (or was closed)."""
        if self.failed is not None or self.closed:
            return False
        line = text + "\n"
        try:
            if self._own and self._fd is None:
                self.open()
            if self._fd is not None:
                self._write_fd(line.encode("utf-8"))
            else:
                self._write_stream(line)
            return True
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return False

    def _write_fd(self, data: bytes) -> None:
        assert self._fd is not None
        if self._fh is not None:
            self._fh.flush()  # whatever the stream buffered goes first, in order
        start = os.lseek(self._fd, 0, os.SEEK_CUR) if self._regular else None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:  # not expected from a blocking descriptor; never loop on it
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
        except OSError:
            if start is not None and len(view) < len(data):  # part of the line got out: take it back
                try:
                    os.ftruncate(self._fd, start)
                    os.lseek(self._fd, start, os.SEEK_SET)
                except OSError as exc:
                    log.debug("%s: could not cut back the partial line: %s", self.name, exc)
            raise

    def _write_stream(self, line: str) -> None:
        assert self._fh is not None
        start = None
        if self._seekable:
            try:
                start = self._fh.tell()
            except (OSError, ValueError):
                start = None
        try:
            self._fh.write(line)
            self._fh.flush()
        except (OSError, ValueError):
            if start is not None:
                try:
                    self._fh.seek(start)
                    self._fh.truncate()
                except (OSError, ValueError) as exc:
                    log.debug("%s: could not cut back the partial line: %s", self.name, exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        gone = isinstance(exc, (BrokenPipeError, ConnectionResetError)) or getattr(exc, "errno", None) in _PIPE_GONE
        reason = "the reader went away" if gone else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        self.failed = reason
        log.warning("%s: writing failed (%s: %s); no more lines will be written there, recognition goes on",
                    self.name, reason, exc)
        if gone and self._stdout:
            self._silence_stdout()

    def _silence_stdout(self) -> None:
        """Point the process's stdout at the null device: its reader is gone, and Python's own flush at exit
        (or a later print) would otherwise fail on the dead pipe."""
        try:
            fd = sys.stdout.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation) as exc:
            log.debug("could not redirect stdout to %s: %s", os.devnull, exc)

    def close(self) -> None:
        if self._own:
            self._closed = True
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError as exc:
                    log.debug("%s: close failed: %s", self.name, exc)
            return
        if self._fh is not None and self.failed is None and not getattr(self._fh, "closed", False):
            try:
                self._fh.flush()
            except (OSError, ValueError):
                pass


class JsonlWriter:
    """Writes results, events, stream and server changes to a file path, ``"-"`` (stdout) or an open text stream.

    Each record is one whole line built by :mod:`~aknet_edge.runtime.records` (see :class:`LineWriter` for how
    failures are handled). With ``defer`` a file path is created (truncated) only by :meth:`open` or the first
    line: the recogniser opens it once its source has started, so a run that fails to start leaves an existing
    file alone.
    """

    def __init__(self, target: Union[str, "os.PathLike[str]", IO[str]], defer: bool = False) -> None:
        self._out = LineWriter(target, label="JSON Lines output", defer=defer)

    def open(self) -> None:
        """Create the file now (a deferred path target; nothing for the others)."""
        self._out.open()

    @property
    def failed(self) -> Optional[str]:
        """Why the output stopped (None while it works)."""
        return self._out.failed

    def write(self, obj: Dict[str, Any]) -> None:
        """One record as it is (the ``write_*`` methods build theirs with :mod:`~aknet_edge.runtime.records`)."""
        if self._out.failed is None:
            self._out.write_line(json.dumps(obj, separators=(",", ":")))

    def write_result(self, result: Any) -> None:
        self.write(records.result_record(result))

    def write_event(self, event: Any) -> None:
        self.write(records.event_record(event))

    def write_stream(self, state: str, stream: Optional[str] = None, **fields: Any) -> None:
        """A change of the source's stream: ``state`` "lost" or "restored" (fields: see :mod:`records`);
        ``stream``: the camera's name, where the recogniser names its streams."""
        self.write(records.stream_record(state, stream, **fields))

    def write_server(self, state: str, info: Optional[Dict[str, Any]] = None) -> None:
        """The inference server was ``"lost"`` or came back (``"restored"``; the Triton client says ``"live"``)."""
        self.write(records.server_record(state, info))

    def write_clip(self, clip: Any) -> None:
        """An event's clip is in place (:class:`~aknet_edge.runtime.clips.EventClip`)."""
        self.write(records.clip_record(clip))

    def close(self) -> None:
        self._out.close()


class JsonlSink(Sink):
    """JSON Lines as a pipeline output (:class:`~aknet_edge.runtime.sinks.Sink`): a :class:`JsonlWriter` whose
    file is created only when the pipeline opens its sinks (every source has started)."""

    name = "jsonl"

    def __init__(self, target: Union[str, "os.PathLike[str]", IO[str]]) -> None:
        self.writer = JsonlWriter(target, defer=True)

    @property
    def failed(self) -> Optional[str]:
        return self.writer.failed

    def open(self) -> None:
        self.writer.open()

    def result(self, result: Any) -> None:
        self.writer.write_result(result)

    def event(self, event: Any) -> None:
        self.writer.write_event(event)

    def stream_state(self, stream: Optional[str], state: str, info: Dict[str, Any]) -> None:
        self.writer.write_stream(state, stream=stream, **info)

    def server_state(self, state: str, info: Dict[str, Any]) -> None:
        self.writer.write_server(state, info)

    def clip(self, clip: Any) -> None:
        self.writer.write_clip(clip)

    def close(self) -> None:
        self.writer.close()


__all__ = ["JsonlSink", "JsonlWriter", "LineWriter"]
