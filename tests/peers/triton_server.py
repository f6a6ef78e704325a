"""A real Triton Inference Server on 127.0.0.1 for the tests and the benchmark (no tests here).

The server is the ``tritonserver`` that ``pip install nvidia-pytriton==0.7.0`` brings (Triton 2.51, CPU), in
its own venv (numpy < 2), with Triton's ONNX Runtime backend from ``../shared/triton`` assembled by its
``backend-dir.sh``. ``.ci/run`` makes that venv at ``.ci/venvs/triton``; ``AKNET_TEST_TRITON_PYTHON`` points
at another interpreter, ``AKNET_TEST_TRITON_SHARED`` at another ``shared/triton`` folder. :func:`unavailable`
says why a server cannot start here (the tests skip with that reason).

The server listens on free loopback ports, is ready when ``/v2/health/ready`` answers 200 (a bounded wait),
and is stopped by its PID (SIGTERM, then SIGKILL); :meth:`TritonServer.kill` is a crash, :meth:`start` again
brings it back on the same ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO / ".ci" / "venvs" / "triton" / "bin" / "python"
DEFAULT_SHARED = REPO.parent / "shared" / "triton"
_LOCK = threading.Lock()
_BACKENDS: dict = {}


def python() -> Path:
    return Path(os.environ.get("AKNET_TEST_TRITON_PYTHON", str(DEFAULT_PYTHON)))


def shared() -> Path:
    return Path(os.environ.get("AKNET_TEST_TRITON_SHARED", str(DEFAULT_SHARED)))


def unavailable() -> Optional[str]:
    """Why no Triton server can start here (None: it can)."""
    py, sh = python(), shared()
    if not py.is_file():
        return (f"no Triton venv at {py.parent.parent} (.ci/run makes it: pip install nvidia-pytriton==0.7.0 "
                "onnxruntime 'numpy<2'; or set AKNET_TEST_TRITON_PYTHON)")
    if not (sh / "backend-dir.sh").is_file() or not (sh / "libtriton_onnxruntime.so").is_file():
        return f"no Triton ONNX Runtime backend at {sh} (the ../shared/triton folder; or set AKNET_TEST_TRITON_SHARED)"
    try:
        import tritonclient.grpc  # noqa: F401  (the client side of the tests)
    except ImportError:
        return "tritonclient is not installed in this venv (pip install 'tritonclient[grpc]')"
    return None


def backend_dir(root: Path) -> tuple:
    """(backend folder, site-packages) assembled once per process with ../shared/triton/backend-dir.sh."""
    with _LOCK:
        if "dir" not in _BACKENDS:
            out = root / "triton-backends"
            res = subprocess.run(["bash", str(shared() / "backend-dir.sh"), str(python()), str(out)],
                                 capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                raise RuntimeError(f"backend-dir.sh failed: {res.stderr.strip()[-500:]}")
            _BACKENDS["dir"], _BACKENDS["site"] = out, Path(res.stdout.strip().splitlines()[-1])
        return _BACKENDS["dir"], _BACKENDS["site"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """One tritonserver process serving ``repo`` on loopback."""

    def __init__(self, repo: Path, workdir: Path, extra_args: tuple = ()) -> None:
        self.repo = Path(repo)
        self.workdir = Path(workdir)
        self.extra_args = tuple(extra_args)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.workdir / f"tritonserver-{self.grpc_port}.log"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 90.0) -> "TritonServer":
        backends, site = backend_dir(self.workdir)
        exe = site / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        env = {**os.environ, "LD_LIBRARY_PATH": str(site / "nvidia_pytriton.libs")}
        cmd = [str(exe), "--backend-directory", str(backends), "--model-repository", str(self.repo),
               "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port),
               "--allow-metrics", "false", "--exit-timeout-secs", "5", *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode}: {self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"tritonserver not ready within {timeout:.0f} s: {self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """A crash: SIGKILL, no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
