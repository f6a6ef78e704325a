"""Many cameras, one engine: the recognition pipeline with N named lanes, batched per step.

Why: a robot carries several cameras and a site runs dozens; N single-camera
:class:`~aknet_edge.runtime.recognizer.Recognizer` objects cost N engine calls per
step and N copies of the model. Here every stream keeps its own time grid, window,
shift state, smoothing, events and outage state (a :class:`~aknet_edge.runtime.lane.Lane`), and they share one
backend: each step takes at most one new frame from every stream that has one, runs
one batched encoder call for all streams with a new grid sample (incremental mode;
:func:`~aknet_edge.runtime.window.encode_batch`, exact mode included) and one
batched call for all windows that are full (the clip head, or the whole-clip graph
on the stacked windows). Results equal N single-stream recognisers on the same
frames (``tests/test_multistream.py``).

Independence: sources are polled without waiting, so a stream that stalls,
reconnects or ends never holds the others back more than one step; frame rates may
differ. A stream that is lost reconnects on its own thread (its open event ends
with reason "source lost", JSON Lines get its "lost"/"restored" lines), one that
ends or fails for good ends alone; recognition stops when every stream has ended
(or on :meth:`MultiRecognizer.close` / ``max_seconds``).

Batching is opportunistic: a step holds whatever frames have arrived, so
unsynchronised live cameras batch less than backlogged ones (files, replays);
nothing waits to fill a batch, latency first.

Threading: each source captures on its own thread; one inference thread gathers
frames, samples, preprocesses and runs the batched encoder; with ``overlap`` on a
backend that allows it (ONNX Runtime), a head thread runs each step's batched head
(or whole-clip) call and everything after it -- smoothing, events, outputs and the
``on_result``/``on_event`` callbacks, one at a time and in order -- while the next
step is encoded (without it, all inline). Results carry ``stream``. Iteration and
:meth:`MultiRecognizer.next_result` read one bounded queue for all streams (oldest
dropped when the consumer lags).

Outputs: one JSON Lines target for all streams (every line carries ``"stream"``),
one video file per stream (:func:`stream_video_path`: ``out.mp4`` ->
``out-<stream>.mp4``), the preview page shows every stream on its own, and the display
window a mosaic of every stream's latest annotated frame (:mod:`.mosaic`).

Usage::

    with MultiRecognizer("pkg/", {"front": "rtsp://a/stream", "rear": "csi://0"}) as rec:
        for result in rec:
            print(result.stream, result.label, result.confidence)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from aknet_edge.errors import ConfigError

from .events import ActionEvent
from .pipeline import Pipeline, SourceArg, check_stream_count, parse_options
from .sources import Source
from .telemetry import PipelineStats
from .video_out import stream_video_path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def split_source_arg(text: str, index: int) -> Tuple[str, str]:
    """``NAME=URI`` -> (NAME, URI); a bare URI -> (str(index), URI).

    A name is letters, digits, ``_ . -`` (up to 64, starting with a letter or digit), so a URI's own
    ``=`` (``synthetic://?seed=1``, ``rtsp://h/s?a=b``) is never taken for one.
    """
    name, sep, rest = text.partition("=")
    if sep and rest and _NAME.match(name) and not Path(text).exists():
        return name, rest
    return str(index), text


def check_stream_names(names: Sequence[str]) -> None:
    """Every stream name unique and well formed (they key the outputs)."""
    seen: Dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"stream name {name!r}: expected letters, digits, '_', '.' or '-' (up to 64, "
                              "starting with a letter or digit)")
        if name in seen:
            raise ConfigError(f"stream name {name!r} is given twice (sources {seen[name]} and {i}); give each "
                              "source its own name: NAME=URI")
        seen[name] = i


class MultiRecognizer(Pipeline):
    """Recognise actions in several named live sources with one model package and one backend.

    ``sources``: a mapping name -> source, or a sequence of sources (named "0", "1", ...) or of
    ``(name, source)`` pairs; a source is a URI for :func:`~aknet_edge.runtime.sources.open_source`
    (``source_options`` apply to all) or an unopened :class:`~aknet_edge.runtime.sources.Source`.
    Other keyword arguments are :class:`~aknet_edge.runtime.pipeline.RecognizerOptions` fields
    (``stream`` does not apply: every stream has its name). See the module docstring for batching,
    independence, threading and outputs.
    """

    def __init__(self, package_dir: Union[str, Path],
                 sources: Union[Mapping[str, SourceArg], Sequence[Union[SourceArg, Tuple[str, SourceArg]]]],
                 **options: Any) -> None:
        opts = parse_options("MultiRecognizer", options)
        pairs = self._named(sources)
        if not pairs:
            raise ConfigError("MultiRecognizer: expected at least one source")
        check_stream_names([n for n, _ in pairs])
        super().__init__(package_dir, pairs, opts)
        self.several = True  # even with one source: lines carry its name, stats sum the lanes
        self.streams: List[str] = [n for n, _ in pairs]

    @staticmethod
    def _named(sources: Any) -> List[Tuple[str, SourceArg]]:
        if isinstance(sources, Mapping):
            return [(str(k), v) for k, v in sources.items()]
        if isinstance(sources, (str, int, Source)):
            sources = [sources]
        out = []
        for i, s in enumerate(sources):
            if isinstance(s, tuple) and len(s) == 2:
                out.append((str(s[0]), s[1]))
            else:
                out.append((str(i), s))
        return out

    def total_stats(self) -> PipelineStats:
        """All streams together (the same as :meth:`stats`; kept for 0.3 callers)."""
        return self.stats()

    def events(self, stream: Optional[str] = None) -> List[ActionEvent]:
        """Started and ended events kept (the last 1000 a stream), of one stream or of all."""
        lanes = [self.lanes[stream]] if stream is not None else list(self.lanes.values())
        return [ev for lane in lanes for ev in lane.events]

    def source_state(self, stream: str) -> str:
        return self.lanes[stream].telemetry.state


__all__ = ["MultiRecognizer", "check_stream_count", "check_stream_names", "split_source_arg", "stream_video_path"]
