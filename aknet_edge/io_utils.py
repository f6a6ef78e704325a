"""Atomic file writes: a reader never sees a half-written output, and a failed write leaves nothing behind.

Every write goes to a temporary file beside its target and is renamed into place only when complete.
When the filesystem refuses (disk full, read-only, permission denied, a file where a folder should be),
the temporary file is removed and :class:`WriteError` says which file could not be written and why, in
one line a command-line tool prints as its ``error:``. Python 3.8 compatible (the runtime uses it).
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Callable, IO, Optional, Union

from .errors import AknetError

PathLike = Union[str, "os.PathLike[str]"]

# what a user can do about the errors the filesystem reports most
_REASONS = {
    errno.ENOSPC: "no space left on the device (disk full); free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EFBIG: "file too large (disk full, the filesystem's limit or the process's file size limit)",
    errno.EROFS: "read-only file system; choose a writable location",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.ENOTDIR: "a parent of it is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENAMETOOLONG: "the name is too long",
}


class WriteError(AknetError, OSError):
    """A file could not be written (disk full, read-only filesystem, no permission, ...); nothing was left behind."""


def os_error_reason(exc: OSError) -> str:
    """The filesystem's complaint in words a user can act on (``exc.strerror`` where we have none better)."""
    return _REASONS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__


def write_error(path: PathLike, exc: OSError) -> WriteError:
    """:class:`WriteError` for ``path`` from the ``OSError`` that refused it (keeps its errno)."""
    reason = os_error_reason(exc)
    err = WriteError(f"cannot write {path}: {reason}")
    err.errno = exc.errno
    err.reason = reason  # type: ignore[attr-defined]
    return err


def _tmp_beside(path: Path) -> Path:
    # pid and a random part: two processes, or two threads of one, never share a temporary file
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_with(path: PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, then rename it into place.

    Creates missing parent folders. On any failure (or interrupt) the temporary file is removed and the
    previous ``path``, if any, is left untouched; ``OSError`` becomes :class:`WriteError`.
    """
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as fh:
                write(fh)
                fh.flush()
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            os.replace(tmp, path)
        except WriteError:
            raise
        except OSError as exc:
            raise write_error(path, exc) from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # the folder went read-only or away meanwhile: nothing more we can do
            pass
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write_with`)."""
    return atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_with`)."""
    return atomic_write_with(path, lambda fh: fh.write(text.encode("utf-8")))


def check_writable(path: PathLike, flag: Optional[str] = None, create_parents: bool = True) -> Path:
    """Refuse early an output file that cannot be written, before any long work, and write nothing.

    ``path`` must not be a folder; its nearest existing ancestor must be a writable folder (a missing
    parent is created later when ``create_parents``, else it must exist). Raises :class:`WriteError`
    naming ``flag``.
    """
    path = Path(path)
    name = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise WriteError(f"cannot write {name}: it is a folder; give a file name")
    parent = path.parent
    if not create_parents and not parent.is_dir():
        raise WriteError(f"cannot write {name}: folder {parent} does not exist")
    probe = parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise WriteError(f"cannot write {name}: {probe} is a file, not a folder")
    target = path if path.exists() else probe
    if not os.access(str(target), os.W_OK) or (target is path and not os.access(str(parent), os.W_OK)):
        code = errno.EROFS if _read_only(target) else errno.EACCES
        raise WriteError(f"cannot write {name}: {_REASONS[code]}")
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(str(path)).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False
