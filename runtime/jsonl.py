"""JSON Lines output: one object per line, ``type`` "result", "event" or "stream".

Schema (times in seconds; ``timestamp`` is the newest sample's time: the media time when the source has one, else
monotonic capture time)::

    {"type": "result", "timestamp": 12.57, "window_start": 10.57, "label": "move_left",
     "confidence": 0.93, "top_k": [["move_left", 0.93], ["move_right", 0.04], ...],
     "keypoints": [[t_s, x_px, y_px, score], ...],
     "latency_ms": 21.4, "fps": 14.9, "frame": 188}
    {"type": "event", "state": "started" | "ended", "label": "move_left",
     "start": 10.9, "end": 13.1 | null, "confidence": 0.88, "peak": 0.97}
    {"type": "event", "state": "ended", ..., "reason": "source lost"}
    {"type": "stream", "state": "lost", "timestamp": 14.2 | null, "frame": 212 | null, "reconnects": 0}
    {"type": "stream", "state": "restored", "timestamp": 40.9, "frame": 213, "reconnects": 1,
     "outage_s": 26.7}

Where the recogniser names its cameras (``python -m aknet_edge.run`` always does; a
:class:`~aknet_edge.runtime.multistream.MultiRecognizer` serves several), every line starts with
``"stream": NAME`` (the source's name, or its index as a string).

``label``/``confidence`` are the smoothed scores; ``top_k`` the raw window's. ``keypoints`` is empty for
models without keypoints (a TSM package). ``latency_ms`` runs from the newest frame reaching the source's
buffer to the window's scores; delay before capture (camera encoder, network, decoder) is not in it.

An ended event the runtime closed, rather than the scores, carries a ``reason``: "source lost" (the
live source went away; the event ends where a stream end would end it), "stream gap" (the frames
jumped in time and the window restarted), "end of stream", "stopped" (closed, or ``max_seconds``) or
"error". Stream lines: "lost" when a live source stops delivering (``timestamp``/``frame``: the last
frame before the loss, null if none came), "restored" with the first frame after it (``outage_s``:
capture time from the last frame before the loss to that one; ``reconnects``: the source's count).

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
from typing import IO, Any, Optional, Union

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
    """Writes results, events and stream changes to a file path, ``"-"`` (stdout) or an open text stream.

    Each record is one whole line (see :class:`LineWriter` for how failures are handled). With
    ``defer`` a file path is created (truncated) only by :meth:`open` or the first line: the
    recogniser opens it once its source has started, so a run that fails to start leaves an
    existing file alone.
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

    def write(self, obj: dict[str, Any]) -> None:
        if self._out.failed is None:
            self._out.write_line(json.dumps(obj, separators=(",", ":")))

    def write_result(self, result: Any) -> None:
        self.write(result.to_json())

    def write_event(self, event: Any) -> None:
        stream = getattr(event, "stream", None)
        obj: dict[str, Any] = {} if stream is None else {"stream": stream}
        obj.update({"type": "event", "state": event.state, "label": event.label, "start": round(event.start, 4),
               "end": None if event.end is None else round(event.end, 4),
               "confidence": round(event.confidence, 4), "peak": round(event.peak, 4)})
        reason = getattr(event, "reason", None)
        if reason is not None:
            obj["reason"] = reason
        self.write(obj)

    def write_stream(self, state: str, stream: Optional[str] = None, **fields: Any) -> None:
        """A change of the source's stream: ``state`` "lost" or "restored" (fields as in the module docstring);
        ``stream``: the camera's name, where the recogniser names its streams."""
        head: dict[str, Any] = {} if stream is None else {"stream": stream}
        self.write({**head, "type": "stream", "state": state, **fields})

    def close(self) -> None:
        self._out.close()


__all__ = ["JsonlWriter", "LineWriter"]
