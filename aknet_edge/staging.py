"""Writing a package folder safely: a temporary folder beside ``--out``, a lock, and a careful replace.

Why a module of its own: the full build and ``build --from`` (on the device, without torch) write
packages the same way, and the rules that keep a user's files safe belong in one place: the
package appears only when complete (renamed into place, signals held during the swap); ``--force``
replaces only an existing package, never another folder, a link, the current folder or a parent of
it; a second build into the same ``--out`` is refused while the first holds the lock; a disk or
permission failure says which folder and why, and leaves nothing half-written.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Dict, List, Optional

from . import package as pk
from .errors import AknetError, ConfigError
from .io_utils import WriteError, os_error_reason

log = logging.getLogger(__name__)


class BuildLockedError(AknetError, RuntimeError):
    """Another build is writing the same ``--out`` right now."""


LOCK_SUFFIX = ".lock"


class BuildLock:
    """An exclusive lock on ``--out``: the file ``.NAME.lock`` beside it, held with ``flock`` for the build.

    The kernel drops the lock when its process ends however it ends, so a lock file left by a killed build
    is stale by construction and simply taken over; the holder's pid in the file is only for the message.
    The file is removed on release (re-checked by inode, so a build never holds a lock on a removed file).
    Where ``fcntl`` is missing (not Linux or macOS), ``O_EXCL`` creation with a pid liveness check stands in.
    """

    def __init__(self, out: Path) -> None:
        self.path = out.parent / f".{out.name}{LOCK_SUFFIX}"
        self.out = out
        self._fd: Optional[int] = None

    def acquire(self) -> "BuildLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux
            return self._acquire_excl()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(self.path)
                os.close(fd)
                raise BuildLockedError(
                    f"another build{f' (pid {holder})' if holder else ''} is writing {self.out} right now "
                    f"(lock {self.path}); wait for it to finish or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed the file between our open and our lock: retry
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _acquire_excl(self) -> "BuildLock":  # pragma: no cover - not on Linux
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_pid(self.path)
                if holder and _alive(holder):
                    raise BuildLockedError(f"another build (pid {holder}) is writing {self.out} right now (lock "
                                           f"{self.path}); wait for it to finish or choose another --out") from None
                log.warning("removing the stale build lock %s (pid %s is gone)", self.path, holder)
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise BuildLockedError(f"cannot take the build lock {self.path}; remove it if no build is running")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: a waiter then sees a new inode and retries
        except OSError:
            pass
        os.close(self._fd)  # drops the flock
        self._fd = None


def _read_pid(path: Path) -> Optional[int]:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _alive(pid: int) -> bool:  # pragma: no cover - only without fcntl
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_package_dir(path: Path) -> bool:
    """Whether ``path`` is a model package folder: a real folder whose ``manifest.json`` parses as a package."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        pk.read_manifest(path)
    except (AknetError, OSError, ValueError):
        return False
    return True


def check_replaceable(out: Path) -> None:
    """``--force`` replaces a model package and nothing else: not any other folder or file, never the current
    folder or one of its parents, never through a symbolic link."""
    where = out.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        raise ConfigError(f"--out {out} is the current folder or a parent of it; --force never replaces that: "
                          "choose a new folder for the package")
    if out.is_symlink():
        raise ConfigError(f"--out {out} is a symbolic link; --force replaces only a package folder: remove the link "
                          "or choose another --out")
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a model package; --force replaces only a package folder: "
                          "remove it yourself or choose another --out")
    if not is_package_dir(out):
        raise ConfigError(f"--out {out} is a folder but not a model package (no valid {pk.MANIFEST}); --force "
                          "replaces only a package folder: remove it yourself or choose another --out")


class DeferSignals:
    """Hold SIGINT/SIGTERM while a few renames run, then deliver them: a package is never half moved."""

    def __enter__(self) -> "DeferSignals":
        self.pending: List[int] = []
        self.old: Dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, lambda signum, _f: self.pending.append(signum))
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        for s in self.pending:
            handler = self.old.get(s)
            if callable(handler):
                handler(s, None)
            elif handler != signal.SIG_IGN:  # the default action (None: a handler not set from Python)
                os.kill(os.getpid(), s)


class Staging:
    """A temporary folder beside ``out`` that becomes ``out`` only when everything in it is written.

    Holds ``out``'s build lock from start to commit or discard. ``force`` replaces only an existing model
    package (:func:`_check_replaceable`); the old package is renamed aside, the new one renamed in, and only
    then the old one removed, so an interruption leaves either package, never neither.
    """

    def __init__(self, out: Path, force: bool) -> None:
        self.out = out
        self.force = force
        if not out.name or out.name in (".", ".."):
            out = self.out = Path(os.path.abspath(out))
        if not out.name:
            raise ConfigError(f"--out {out}: expected a folder for the package, not the root")
        self._check_target()  # before the lock: an --out we must refuse gets no lock file beside it
        self._lock = BuildLock(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:
            raise ConfigError(f"cannot write the package to {out}: {os_error_reason(exc)}") from None
        try:
            self._check_target()
            self._remove_stale()
            self.tmp = Path(os.path.join(out.parent, f".{out.name}.building-{os.getpid()}"))
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
        except OSError as exc:
            self._lock.release()
            raise ConfigError(f"cannot write the package to {out}: {os_error_reason(exc)}") from None
        except BaseException:
            self._lock.release()
            raise

    def _check_target(self) -> None:
        if os.path.lexists(self.out):
            if not self.force:
                raise ConfigError(f"{self.out} already exists; pass --force to replace it or choose another --out")
            check_replaceable(self.out)

    def _remove_stale(self) -> None:
        """Temporary folders of builds into ``out`` that were killed: we hold the lock, so none is running."""
        for p in self.out.parent.glob(f".{glob.escape(self.out.name)}.building-*"):
            if p.is_dir() and not p.is_symlink():
                log.info("removing %s, left by an interrupted build", p)
                shutil.rmtree(p, ignore_errors=True)
        for p in self.out.parent.glob(f".{glob.escape(self.out.name)}.replaced-*"):
            if not os.path.lexists(self.out):  # killed between its two renames: this is the only copy
                log.warning("%s holds the package %s had before an interrupted build; move it back to keep it",
                            p, self.out)
            elif p.is_dir() and not p.is_symlink() and is_package_dir(p):
                shutil.rmtree(p, ignore_errors=True)

    def commit(self) -> None:
        with DeferSignals():
            try:
                self._check_target()  # still ours to write: nothing appeared at --out while we built
                old = None
                if os.path.lexists(self.out):
                    old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
                    os.replace(self.out, old)
                try:
                    os.replace(self.tmp, self.out)
                except BaseException:
                    if old is not None:
                        os.replace(old, self.out)
                    raise
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError as exc:
                raise ConfigError(f"cannot write the package to {self.out}: {os_error_reason(exc)}") from None
            finally:
                self._lock.release()

    def discard(self) -> None:
        with DeferSignals():
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._lock.release()


def reraise_write_error(exc: BaseException, out: Path) -> None:
    """A file of the package the filesystem refused (disk full, read-only, ...): say so about ``out``, whose
    temporary folder is already gone, rather than about a file inside that folder."""
    if isinstance(exc, OSError) and (not isinstance(exc, AknetError) or isinstance(exc, WriteError)):
        reason = getattr(exc, "reason", None) or os_error_reason(exc)
        raise WriteError(f"cannot write the package to {out}: {reason}; nothing was written") from None
