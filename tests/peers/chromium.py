"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) and a live runtime for it.

Shared by tests/test_preview_browser.py and bench/preview_screenshot.py:

* :func:`missing` says why no browser can run here (None when one can);
* :func:`open_browser` starts headless Chromium through the system chromedriver (selenium's own driver
  download is never used: the binary and the driver come from the system);
* :class:`LiveRun` runs ``python -m aknet_edge.run`` (or ``tests/peers/preview_run.py``) with a preview
  port as a subprocess, reads the ``preview: URL`` line it prints, and stops it with SIGINT.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

REPO = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parent / "preview_run.py"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _which(names: tuple) -> Optional[str]:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if path:
            return path
    return None


def missing() -> Optional[str]:
    """Why a headless browser cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _which(BROWSERS) is None:
        return "no chromium here (apt-get install chromium chromium-driver)"
    if _which(DRIVERS) is None:
        return "no chromedriver here (apt-get install chromium-driver)"
    return None


def open_browser(width: int = 1280, height: int = 900) -> Any:
    """Headless Chromium at ``width`` x ``height`` CSS pixels (device scale 1)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _which(BROWSERS) or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=_which(DRIVERS)), options=opts)


def threads_of(pid: int) -> int:
    """How many threads process ``pid`` has now (Linux)."""
    return len(os.listdir(f"/proc/{pid}/task"))


class LiveRun:
    """The runtime with a preview as a subprocess; ``url`` once it serves. A context manager.

    ``runner``: "cli" (``python -m aknet_edge.run``) or "peer" (``tests/peers/preview_run.py``).
    """

    def __init__(self, package: Path, source: str, runner: str = "cli", extra: Optional[List[str]] = None,
                 env: Optional[dict] = None, start_timeout: float = 120.0) -> None:
        cmd = [sys.executable, "-m", "aknet_edge.run"] if runner == "cli" else [sys.executable, str(PEER)]
        self.cmd = cmd + [source, "--package", str(package), "--preview-port", "0"] + list(extra or [])
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        self.url: Optional[str] = None
        self.stderr: List[str] = []
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> LiveRun:
        self.proc = subprocess.Popen(self.cmd, cwd=str(REPO), env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                if line.startswith("preview: ") and self.url is None:
                    self.url = line.split(" ", 1)[1].strip()
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        found.wait(self.start_timeout)
        if self.url is None:
            self.__exit__()
            raise RuntimeError(f"{' '.join(self.cmd)} printed no preview URL: {''.join(self.stderr)[-3000:]}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl-C; the exit status (killed after ``timeout``: then -9)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return -9
        self._reader.join(5)
        return self.proc.returncode

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def wait_for(predicate: Any, timeout: float, interval: float = 0.25) -> Any:
    """``predicate()``'s first truthy value within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
