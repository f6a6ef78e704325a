"""Open one source through ``aknet_edge.runtime.sources``, read it, and report what happened as JSON.

tests/test_runtime_gstreamer.py calls :func:`scenario` in its own process when that process's OpenCV has
GStreamer (JetPack's, Debian's python3-opencv), and otherwise runs this file with the system Python, whose
OpenCV may have it (pip's wheels never do)::

    /usr/bin/python3 tests/peers/gst_source.py '{"uri": "videotestsrc num-buffers=30 ! videoconvert ! appsink"}'

The spec (JSON): ``uri``; ``options`` (source options); ``frames`` (stop after this many, default: until the
end); ``seconds`` (stop reading after this long, default 20); ``no_registry`` (true: do not look elements up
first, so only the open's deadline bounds it). The report: ``opencv``, ``gstreamer`` (OpenCV has it),
``open_s``, then either ``error``/``classes``/``message`` (the open failed) or ``live``, ``options``,
``frames``, ``end`` (``EndOfStream``, ``SourceError``, ``frames``, ``timeout``, ``restored`` or ``not
restored``), ``stats``, ``media_ts`` (first and last), ``read_s``, ``restore_to_frame_s``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

REPO = Path(__file__).resolve().parents[2]


def load_sources() -> Any:
    """``aknet_edge.runtime.sources``: installed, or mapped from this checkout (``runtime/`` installs as
    ``aknet_edge.runtime``, which a bare system Python has not)."""
    try:
        from aknet_edge.runtime import sources

        return sources
    except ImportError:
        pass
    sys.path.insert(0, str(REPO))
    import aknet_edge  # noqa: F401 - the checkout's top package (numpy and the standard library only)

    spec = importlib.util.spec_from_file_location("aknet_edge.runtime", REPO / "runtime" / "__init__.py",
                                                  submodule_search_locations=[str(REPO / "runtime")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["aknet_edge.runtime"] = module
    spec.loader.exec_module(module)
    from aknet_edge.runtime import sources

    return sources


def scenario(spec: Dict[str, Any]) -> Dict[str, Any]:
    import cv2

    S = load_sources()
    if spec.get("no_registry"):
        from aknet_edge.runtime.sources import gstreamer

        gstreamer._REGISTRY = ()  # as on a machine where neither gi nor gst-inspect-1.0 can be asked
    out: Dict[str, Any] = {"opencv": cv2.__version__, "gstreamer": S._has_gstreamer()}
    t0 = time.monotonic()
    try:
        src = S.open_source(spec["uri"], **spec.get("options", {}))
    except Exception as exc:
        out.update(open_s=time.monotonic() - t0, error=type(exc).__name__, message=str(exc),
                   classes=[c.__name__ for c in type(exc).__mro__])
        return out
    out.update(open_s=time.monotonic() - t0, live=src.live, options=src.options.describe())
    want, frames, stamps, end = spec.get("frames"), 0, [], "timeout"
    t1 = time.monotonic()
    deadline = t1 + float(spec.get("seconds", 20))
    try:
        while time.monotonic() < deadline:
            if want is not None and frames >= want:
                end = "frames"
                break
            frame = src.read(timeout=0.5)
            if frame is not None:
                frames += 1
                stamps.append(frame.media_ts)
        if spec.get("restart") and end == "frames":
            out["restore_to_frame_s"] = _outage(src, spec["restart"], float(spec.get("outage_s", 3.0)))
            end = "restored" if _read(src, int(spec.get("frames_after", 10)), 15.0) else "not restored"
    except S.EndOfStream:
        end = "EndOfStream"
    except S.SourceError as exc:
        end = "SourceError"
        out["message"] = str(exc)
    finally:
        src.close()
    stats = src.stats()
    out.update(frames=frames, end=end, read_s=time.monotonic() - t1, media_ts=stamps[:1] + stamps[-1:],
               stats={k: v for k, v in vars(stats).items()})
    return out


def _outage(src: Any, restart: Any, outage_s: float) -> float:
    """``restart`` (a callable, or the argv of the camera process the caller started as ``SENDER``) is
    killed; once the source noticed, ``outage_s`` later it starts again: seconds from then to a new frame."""
    sender = _SENDER.pop()
    sender.kill()
    sender.wait()
    deadline = time.monotonic() + 30
    while src.stats().connected and time.monotonic() < deadline:
        src.read(timeout=0.2)
    end = time.monotonic() + outage_s
    while time.monotonic() < end:
        src.read(timeout=0.2)
    back = time.monotonic()
    _SENDER.append(subprocess.Popen(restart, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    while time.monotonic() < back + 30:
        frame = src.read(timeout=0.2)
        if frame is not None and frame.capture_ts > back:
            return frame.capture_ts - back
    return -1.0


def _read(src: Any, n: int, timeout: float) -> bool:
    got, deadline = 0, time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        if src.read(timeout=0.5) is not None:
            got += 1
    return got >= n


_SENDER: list = []  # the camera process of a "restart" scenario


def main(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The scenario; with ``restart`` (a camera's argv), that camera runs first and is killed and restarted
    after ``frames`` frames (the report adds ``restore_to_frame_s``)."""
    if spec.get("restart"):
        _SENDER.append(subprocess.Popen(spec["restart"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        return scenario(spec)
    finally:
        for proc in _SENDER:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
