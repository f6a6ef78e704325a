"""aknet_edge.runtime: live camera recognition. Imports neither torch nor TensorRT.

Public API (loaded lazily, so ``import aknet_edge.runtime`` stays cheap)::

    from aknet_edge.runtime import MultiRecognizer, Recognizer, open_source, open_backend

* :class:`Recognizer` -- package + source -> :class:`Result` stream, events, outputs
* :class:`MultiRecognizer` -- package + N named sources -> one backend, batched per step
  (both are the one :class:`Pipeline` of lanes, with one lane or N)
* :class:`Sink` -- the one interface every output implements (JSON Lines, video, preview, ...)
* :func:`open_source` -- one URI for cameras, streams, files, folders, synthetic
* :func:`open_backend` -- ONNX Runtime or TensorRT behind one interface
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recognizer": "recognizer", "RecognizerOptions": "recognizer", "Result": "recognizer",
    "MultiRecognizer": "multistream", "Pipeline": "pipeline", "PipelineClosedError": "pipeline",
    "Sink": "sinks", "PipelineStats": "telemetry",
    "open_source": "sources", "Source": "sources", "Frame": "sources", "EndOfStream": "sources",
    "SourceError": "sources", "SourceOpenError": "sources", "UnsupportedSourceError": "sources",
    "GStreamerUnavailableError": "sources", "ReconnectPolicy": "sources", "SourceOptions": "sources",
    "SourceOptionError": "sources", "parse_option_pairs": "sources",
    "open_backend": "backend_choice", "Backend": "backends", "BackendError": "backends",
    "ActionEvent": "events", "EventConfig": "events",
    "JsonlWriter": "jsonl", "MjpegServer": "preview", "PreviewServer": "preview", "PreviewHooks": "preview", "Telemetry": "telemetry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
