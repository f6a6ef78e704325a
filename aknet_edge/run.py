"""``python -m aknet_edge.run [SRC ...]``: recognise actions live and print or stream them.

With no arguments it runs the bundled demo package on the synthetic source and
prints action events. Each SRC is a URI or ``NAME=URI``; several sources share one
model and one engine (:class:`~aknet_edge.runtime.multistream.MultiRecognizer`), and
every JSON Lines record carries its ``"stream"`` (the name, or the source's index).
SIGINT/SIGTERM stop it cleanly (sources released, outputs flushed, exit 0); errors
print one ``error: ...`` line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, List, Optional, Tuple

from .cli_common import (CliParser, add_bool_flag, add_source_args, check_number, defaults_of, run_cli,
                         source_options_from_args)
from .errors import ConfigError, DependencyError
from .media import FOURCC, listing

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "synthetic://?seed=1&fps=15&segments=6&size=112"


def demo_package_dir() -> Path:
    """Where the demo package is cached (``AKNET_EDGE_CACHE/demo_package``)."""
    from . import settings

    return settings.cache_dir() / "demo_package"


def demo_package() -> Path:
    """The bundled demo package, built on first use and rebuilt when the bundled weights or the toolkit
    version change (a new version may export a different graph from the same weights; needs torch)."""
    from . import __version__
    from .config import DEMO_WEIGHTS
    from .errors import AknetError
    from .package import read_manifest, sha256_file

    where = demo_package_dir()
    if (where / "manifest.json").is_file():
        try:
            m = read_manifest(where)
            if m.source_sha256 == sha256_file(DEMO_WEIGHTS) and m.created_by == f"aknet_edge {__version__}":
                return where
        except (OSError, AknetError):  # a stale or broken cache is rebuilt
            pass
        log.info("the cached demo package %s is stale or unreadable: rebuilding it", where)
    if where.is_dir() and not where.is_symlink():
        from .build import is_package_dir

        if not is_package_dir(where):  # our own cache folder, broken: --force replaces only packages
            import shutil

            shutil.rmtree(where)
    import importlib.util

    try:
        has_torch = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        has_torch = False
    if not has_torch:
        raise DependencyError(
            f"no model package given and the demo package {where} is missing; building it needs torch. "
            "Pass --package DIR with a package built elsewhere (python -m aknet_edge.build --out DIR), "
            "or pip install aknet-edge[build] to build the demo here")
    from .build import BuildOptions, build

    log.info("building the demo package into %s (once)", where)
    where.parent.mkdir(parents=True, exist_ok=True)
    build(BuildOptions(out=where, precision="fp32", eval_clips_per_class=1, compare_methods=False,
                       progress=False, force=True))
    return where


def parser() -> argparse.ArgumentParser:
    from aknet_edge.package import AUTO, PRECISIONS
    from aknet_edge.runtime.backend_choice import BACKENDS
    from aknet_edge.runtime.events import SMOOTHING
    from aknet_edge.runtime.recognizer import RecognizerOptions

    d = defaults_of(RecognizerOptions)
    p = CliParser(prog="python -m aknet_edge.run", description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="*", metavar="SRC", default=[DEFAULT_SOURCE],
                   help="csi://N, /dev/videoN, rtsp://, http(s)://, udp://, a file, an image folder, a GStreamer "
                        "pipeline, rosbag2://BAG?topic=/camera/image_raw or synthetic://?seed=..&fps=..&segments=.., "
                        "optionally as NAME=URI; several share one engine, each its own stream "
                        f"(default {DEFAULT_SOURCE})")
    p.add_argument("--package", help="model package folder (default: the bundled demo package)")
    p.add_argument("--backend", choices=BACKENDS, default=d["backend"])
    p.add_argument("--precision", choices=(AUTO, *PRECISIONS), default=d["precision"],
                   help="variant to run (default %(default)s: the package's preference for the backend)")
    p.add_argument("--plugin-lib", dest="plugin_libs", action="append", default=[], metavar="PATH",
                   help="TensorRT plugin library (.so) the engine needs; repeatable; loaded before the engine")
    p.add_argument("--providers", help="onnxruntime execution providers, comma-separated "
                                       "(e.g. CUDAExecutionProvider,CPUExecutionProvider)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (1 is best on 2-core boards)")
    p.add_argument("--triton-url", metavar="HOST:PORT", help="with --backend triton: the gRPC endpoint of the Triton "
                   "server serving the repository build --triton-repo wrote")
    p.add_argument("--triton-sequence-base", type=int, default=d["triton_sequence_base"], metavar="N",
                   help="Triton correlation id of the first stream (stream i uses N + i; default: a random 64-bit "
                        "base per run, so devices sharing a server never mix their cameras)")
    p.add_argument("--jsonl", metavar="FILE", help="write results and events as JSON Lines ('-' = stdout)")
    p.add_argument("--output-video", metavar="FILE",
                   help=f"write the annotated video ({listing(FOURCC)}); with several sources one file per "
                        "stream: FILE's name plus -NAME (out.mp4 -> out-front.mp4)")
    p.add_argument("--display", action="store_true", help="show a window (only where a display exists)")
    p.add_argument("--stats", type=float, metavar="SECONDS", help="print telemetry every SECONDS to stderr")
    p.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds")
    add_bool_flag(p, "--incremental", d["incremental"],
                  "per-frame encoder + head (default: when the package has the split graphs)")
    add_bool_flag(p, "--exact-incremental", d["exact_incremental"],
                  "incremental mode: every window equals whole-clip inference (fresh encoder chains where windows "
                  "start); off: only the carried state, cheaper per frame but not equal to whole clips at a "
                  "window's first frames (as Triton's aknet_stream)")
    add_bool_flag(p, "--require-all-sources", d["require_all_sources"],
                  "fail at start when any source does not open; by default a live camera that is down at start is "
                  "retried in the background and reported lost until it comes up, while the others run (the start "
                  "fails only when no source opens)")
    add_bool_flag(p, "--overlap", d["overlap"],
                  "run each window's last model call, events and outputs on a second thread while the next "
                  "frames are encoded (ONNX Runtime; same results)")
    p.add_argument("--stride", type=float, metavar="SECONDS", help="seconds between windows (default: one sample)")
    p.add_argument("--smoothing", choices=SMOOTHING, default=d["smoothing"])
    p.add_argument("--enter", type=float, default=d["enter"], help="probability that starts an event")
    p.add_argument("--exit", type=float, default=d["exit"], help="probability below which an event ends")
    p.add_argument("--min-duration", type=float, default=d["min_duration_s"], help="seconds a change must last")
    p.add_argument("--roi", dest="regions", action="append", default=[], metavar="[STREAM:]NAME=x,y,w,h",
                   help="recognise a fixed region of a camera as its own lane (pixels, or fractions of the frame "
                        "when every value is <= 1); repeatable; STREAM: picks the camera when there are several")
    p.add_argument("--tracks", metavar="FILE|-", help="recognise each tracked actor: JSON Lines detections, one "
                   'record per frame {"t": SECONDS, ["stream": NAME,] "tracks": [{"id": ID, "box": [x, y, w, h]}]} '
                   "from a file or '-' (stdin)")
    p.add_argument("--max-tracks", type=int, default=d["max_tracks"], metavar="N",
                   help="most tracked actors recognised per camera; newer tracks wait (default %(default)s)")
    p.add_argument("--track-timeout", type=float, default=d["track_timeout_s"], metavar="S",
                   help="a track without a box for S seconds ends its lane: 'track lost' (default %(default)s)")
    add_source_args(p)
    from aknet_edge.runtime import clips, preview, prom

    preview.add_arguments(p)  # --preview-port, --preview-host, --preview-token
    clips.add_arguments(p)  # --event-clips DIR, --pre-roll, --post-roll, ...
    prom.add_arguments(p)  # --metrics-port, --metrics-host, --ready-grace, --health-timeout
    from aknet_edge.runtime import mqtt, webhook

    mqtt.add_arguments(p)  # --mqtt URL, --mqtt-ca, --mqtt-results-every, --mqtt-spool, --mqtt-spool-max-mb, ...
    webhook.add_arguments(p)  # --webhook URL (repeatable), --webhook-secret
    from . import site_config

    site_config.add_arguments(p)  # --config FILE, --print-config, --check-config
    return p


def stream_args(args: argparse.Namespace) -> List[Tuple[str, str]]:
    """The sources as (name, URI): ``NAME=URI`` or a bare URI (named by its index); a rosbag2 URI with several image
    topics (or none named) is one stream per topic. Names must be unique."""
    from aknet_edge.runtime.multistream import check_stream_names, split_source_arg
    from aknet_edge.runtime.sources import expand_source

    pairs: List[Tuple[str, str]] = []
    for i, text in enumerate(args.sources):
        name, uri = split_source_arg(text, i)
        pairs += expand_source(name, uri, explicit=uri != text)  # NAME=URI: the user named it
    check_stream_names([n for n, _ in pairs])
    return pairs


def check_args(args: argparse.Namespace) -> None:
    """Every numeric option's range and every output's place, before a package, backend or source opens."""
    check_number("--threads", args.threads, minimum=1, whole=True)
    from aknet_edge.runtime.triton_client import MAX_CAMERAS, MAX_CORRID

    check_number("--triton-sequence-base", args.triton_sequence_base, minimum=1, maximum=MAX_CORRID - MAX_CAMERAS,
                 whole=True)
    if (args.backend == "triton") != (args.triton_url is not None):
        raise ConfigError("--backend triton needs --triton-url HOST:PORT, and --triton-url needs --backend triton")
    if args.triton_url is not None:
        from aknet_edge.runtime.triton_client import parse_url

        parse_url(args.triton_url)
    check_number("--stats", args.stats, above=0, unit="seconds")
    check_number("--max-seconds", args.max_seconds, above=0, unit="seconds")
    check_number("--stride", args.stride, above=0, unit="seconds")
    check_number("--enter", args.enter, minimum=0, maximum=1, optional=False)
    check_number("--exit", args.exit, minimum=0, maximum=1, optional=False)
    check_number("--min-duration", args.min_duration, minimum=0, optional=False, unit="seconds")
    check_number("--max-tracks", args.max_tracks, minimum=1, whole=True, optional=False)
    check_number("--track-timeout", args.track_timeout, minimum=0, optional=False, unit="seconds")
    if args.regions and args.tracks is not None:
        raise ConfigError("--roi and --tracks: give one or the other (a camera's lanes are its regions, or its "
                          "tracked actors)")
    if args.tracks not in (None, "-") and not Path(args.tracks).is_file():
        raise ConfigError(f"--tracks {args.tracks}: no such file; give a JSON Lines file of detections or - (stdin)")
    if args.jsonl is not None and args.jsonl != "-":
        from .io_utils import check_writable

        check_writable(args.jsonl, "--jsonl", create_parents=False)
    args.streams = stream_args(args)
    from aknet_edge.runtime.views import check_regions, parse_region

    check_regions([parse_region(r) for r in args.regions], [n for n, _ in args.streams])
    if args.output_video is not None:
        from aknet_edge.runtime.multistream import stream_video_path

        from .io_utils import check_writable

        for name, _ in args.streams:
            path = args.output_video if len(args.streams) == 1 else stream_video_path(args.output_video, name)
            check_writable(str(path), "--output-video", create_parents=False)
    from aknet_edge.runtime import clips, preview, prom

    preview.validate(args)
    clips.validate(args)
    prom.validate(args)
    from aknet_edge.runtime import mqtt, webhook

    mqtt.validate(args)
    webhook.validate(args)
    if args.plugin_libs:
        from aknet_edge.runtime.trt.plugins import load_plugin_libraries

        load_plugin_libraries(args.plugin_libs)  # process-wide, before any engine deserialises


def main(argv: Optional[List[str]] = None) -> int:
    from . import site_config

    args = site_config.parse_run_args(parser, argv)  # --config FILE under the flags
    if args.print_config:
        print(site_config.dump(site_config.effective(parser(), args, stream_args(args))), end="")
        return 0
    try:
        check_args(args)
    except ConfigError as exc:  # a value from the file: its line and key
        located = site_config.locate(exc, args, parser())
        if located is exc:
            raise
        raise located from None
    if args.check_config:
        return check_config(args)
    from aknet_edge.runtime import EndOfStream, MultiRecognizer, Recognizer

    pkg = Path(args.package) if args.package else demo_package()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    from aknet_edge.runtime import preview
    from aknet_edge.runtime.console import ConsoleSink

    streams = args.streams
    several = len(streams) > 1
    # the CLI chooses the outputs; each is a sink on the pipeline. The terminal: ended events on stdout (unless
    # JSON Lines go there), telemetry on stderr with --stats; the page: every stream's video, decisions, events
    # and telemetry
    from aknet_edge.runtime import mqtt, webhook

    # MQTT connects here, before recognition starts: a wrong password or an unreachable broker is one error
    remote = mqtt.sinks_from_args(args, [name for name, _ in streams]) + webhook.sinks_from_args(args)
    sinks: List[Any] = [ConsoleSink(events=args.jsonl != "-", stats_every=args.stats, several=several), *remote]
    server = preview.from_args(args)
    if server is not None:
        sinks.append(preview.PreviewSink(server, owns_server=True, display=True))
    providers = args.providers.split(",") if args.providers else None
    from aknet_edge.runtime import clips, prom

    names = [name for name, _ in streams]
    options = dict(backend=args.backend, precision=args.precision, providers=providers, threads=args.threads,
                   incremental=args.incremental, exact_incremental=args.exact_incremental, overlap=args.overlap,
                   stride_s=args.stride, require_all_sources=args.require_all_sources,
                   triton_url=args.triton_url, triton_sequence_base=args.triton_sequence_base,
                   smoothing=args.smoothing, enter=args.enter, exit=args.exit, min_duration_s=args.min_duration,
                   jsonl=args.jsonl, output_video=args.output_video, display=args.display,
                   max_seconds=args.max_seconds, sinks=sinks, source_options=source_options_from_args(args),
                   regions=args.regions, tracks=args.tracks, max_tracks=args.max_tracks,
                   track_timeout_s=args.track_timeout, event_clips=clips.options_from_args(args),
                   metrics=prom.options_from_args(args),
                   stream_source_options=site_config.per_stream(args.stream_source_options, names),
                   stream_events=site_config.per_stream(args.stream_events, names))
    try:
        if several:
            rec: Any = MultiRecognizer(pkg, streams, **options)
        else:
            rec = Recognizer(pkg, streams[0][1], stream=streams[0][0], **options)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rec.start()
        if server is not None:
            print(f"preview: {server.url}", file=sys.stderr, flush=True)
        metrics = next((s for s in rec.sinks if isinstance(s, prom.MetricsSink)), None)
        if metrics is not None:
            print(f"metrics: {metrics.url}metrics", file=sys.stderr, flush=True)
        while not stop.is_set():
            try:
                rec.next_result(timeout=0.2)
            except EndOfStream:
                break
    finally:
        rec.close()  # closes every sink: the last telemetry lines, the page's server
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def check_config(args: argparse.Namespace) -> int:
    """``--check-config``: the flags were checked (check_args); the package's manifest too, then one line."""
    from aknet_edge import package as packaging

    if args.package:
        packaging.load(args.package)
    where = f"{args.config}: " if args.config else ""
    print(f"{where}configuration OK: {len(args.streams)} camera(s) ({', '.join(n for n, _ in args.streams)}); "
          f"package {args.package or 'the demo package'}; nothing was opened", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
