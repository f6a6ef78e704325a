"""Shared helpers for the runtime tests (no tests here): the demo package built once per session."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

_LOCK = threading.Lock()


COMMITTED_PACKAGE = Path(__file__).parent / "data" / "package-0.2.0"


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """``predicate()``'s first truthy value within ``timeout`` seconds, else its last value: the tests' one way to
    wait for something a thread or another process does, instead of a fixed sleep a busy runner can outlast."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def demo_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo model as an fp32 package, built once per test session.

    Building needs torch. Where torch is not installed (the device-side venvs of ``.ci/run``, as on a Jetson),
    a copy of the committed package built by 0.2.0 stands in (the demo model, fp32, whole-clip and split graphs).
    """
    out = tmp_path_factory.getbasetemp() / "runtime_demo_package"
    with _LOCK:
        if not (out / "manifest.json").is_file():
            if not _has_torch():
                shutil.copytree(COMMITTED_PACKAGE, out)
                return out
            from aknet_edge.build import BuildOptions, build

            build(BuildOptions(out=out, precision="fp32", eval_clips_per_class=1, compare_methods=False,
                               progress=False, force=True))
    return out


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))
