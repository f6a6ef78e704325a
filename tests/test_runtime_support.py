"""Shared helpers for the runtime tests (no tests here): the demo package built once per session."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

_LOCK = threading.Lock()


def demo_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo model as an fp32 package, built once per test session (needs torch)."""
    out = tmp_path_factory.getbasetemp() / "runtime_demo_package"
    with _LOCK:
        if not (out / "manifest.json").is_file():
            pytest.importorskip("torch", reason="building the demo package needs torch")
            from aknet_edge.build import BuildOptions, build

            build(BuildOptions(out=out, precision="fp32", eval_clips_per_class=1, compare_methods=False,
                               progress=False, force=True))
    return out


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))
