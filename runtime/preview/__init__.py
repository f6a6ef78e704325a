"""Live previews: a page in the browser per recogniser (or several), MJPEG, and an on-screen window.

Why a page: an engineer tuning thresholds next to a robot wants to look, not read. The page
(``runtime/web/preview.html``, plain HTML/JS, nothing fetched from anywhere else) shows one card
per stream: its annotated video, the smoothed label and a confidence bar, the raw top-k, a
timeline of the last minutes of action events and telemetry (rates, latency p50/p95, drops,
reconnects, the source's state), plus the keypoint time legend.

The package by job:

* :mod:`.state` -- what the page shows, per named stream, and the publishing API
  (``publish_frame``, ``publish_result``, ``publish_event``, ``publish_stats``, ``publish_stream``);
* :mod:`.server` -- :class:`PreviewServer`: that state served over HTTP (the page, Server-Sent
  Events, MJPEG, one JPEG, ``/state.json``), 127.0.0.1 unless told otherwise, optionally behind a token;
* :mod:`.sink` -- :class:`PreviewSink` (the pipeline's output to the page) and :class:`PreviewHooks`
  (the same from a recogniser's callbacks);
* :mod:`.cli` -- the ``--preview-*`` flags, checked before anything opens;
* :mod:`.window` -- :class:`DisplayWindow`, the on-screen window.

A single recogniser publishes to :data:`DEFAULT_STREAM` (and the old one-stream
:meth:`PreviewServer.update`). Publishing never blocks on, or raises from, a client's failure.
"""

from __future__ import annotations

from .cli import TOKEN_ENV, add_arguments, check_address, env_token, from_args, is_loopback, open_preview, validate
from .server import BOUNDARY, DEFAULT_HOST, PAGE, MjpegServer, PreviewServer
from .sink import PreviewHooks, PreviewSink, event_json
from .state import DEFAULT_STREAM, HISTORY_S, MAX_EVENTS, STATS_INTERVAL_S, PreviewState
from .window import DisplayWindow, display_available

__all__ = ["BOUNDARY", "DEFAULT_HOST", "DEFAULT_STREAM", "DisplayWindow", "MjpegServer", "PreviewHooks",
           "PreviewServer", "PreviewSink", "PreviewState", "TOKEN_ENV", "add_arguments", "check_address",
           "display_available", "env_token", "event_json", "from_args", "is_loopback", "open_preview", "validate"]
