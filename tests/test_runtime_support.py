"""Shared helpers for the runtime tests (no tests here): the demo package built once per session."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

_LOCK = threading.Lock()


COMMITTED_PACKAGE = Path(__file__).parent / "data" / "package-0.2.0"


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
