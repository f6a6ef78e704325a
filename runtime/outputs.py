"""The outputs a recogniser's options name, as sinks (one place that turns options into sinks).

Why here: the library's keyword options (``jsonl``, ``output_video``, ``preview_port``,
``display``) and the run CLI's flags name outputs; the pipeline only knows
:class:`~aknet_edge.runtime.sinks.Sink`. This module makes the one from the other, so a
new output is one sink class plus one line here (or a sink of the caller's own, passed in ``sinks=``: the pipeline adds those itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from .sinks import Sink

if TYPE_CHECKING:
    from .pipeline import Pipeline


def sinks_from_options(pipe: "Pipeline") -> List[Sink]:
    """The sinks for ``pipe.options``, in the order they are fed; sets ``pipe.jsonl``, ``pipe.preview`` and
    ``pipe.video_sink`` for callers that inspect them (tests, the run CLI)."""
    opts = pipe.options
    streams = [name for name, _ in pipe._pairs]
    sinks: List[Sink] = []
    pipe.jsonl = pipe.preview = pipe.video_sink = None
    try:
        if opts.jsonl is not None:
            from .jsonl import JsonlSink

            jsonl = JsonlSink(opts.jsonl)  # a file is created once the sources started (Sink.open)
            pipe.jsonl = jsonl.writer
            sinks.append(jsonl)
        if opts.preview_port is not None:  # the run CLI's rules and page: token, warning, overlay for display
            from .preview import PreviewSink, open_preview

            pipe.preview = open_preview(opts.preview_port, opts.preview_host, opts.preview_token)
            sinks.append(PreviewSink(pipe.preview, owns_server=True, display=True))
        if opts.output_video:
            from .video_out import VideoSink

            fps = 1.0 / (pipe.spec.span_s / max(1, pipe.spec.frames - 1))  # one frame a grid sample
            pipe.video_sink = VideoSink(opts.output_video, streams, fps, pipe.several)
            sinks.append(pipe.video_sink)
        if opts.display:
            from .mosaic import DisplaySink
            from .preview import DisplayWindow

            sinks.append(DisplaySink(DisplayWindow(), streams))
        if opts.event_clips is not None:  # a folder, or clips.EventClipOptions
            from .clips import EventClipOptions, EventClipSink, clip_fps

            clip_opts = opts.event_clips if isinstance(opts.event_clips, EventClipOptions) else \
                EventClipOptions(str(opts.event_clips))
            spec = pipe.spec
            fps = clip_fps(spec.span_s, spec.frames, opts.stride_s)
            # how late an event's start or end is reported: half a window, its min_duration, one window interval
            min_duration = max([opts.min_duration_s] + [c.min_duration_s for c in pipe.stream_event_configs.values()])
            sinks.append(EventClipSink(clip_opts.check(), fps, spec.span_s / 2 + min_duration + 1.0 / fps,
                                       emit=pipe.sinks.clip))
        if opts.metrics is not None:  # a port, or prom.MetricsOptions
            from .prom import MetricsOptions, MetricsSink

            # a port alone: the preview's host rule (127.0.0.1) and its token (preview_token, else AKNET_PREVIEW_TOKEN)
            sinks.append(MetricsSink(pipe, opts.metrics if isinstance(opts.metrics, MetricsOptions)
                                     else MetricsOptions(int(opts.metrics), token=opts.preview_token)))
    except BaseException:
        for sink in reversed(sinks):
            sink.close()
        raise
    return sinks


__all__ = ["sinks_from_options"]
