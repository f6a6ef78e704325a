"""A stand-in for ``python -m aknet_edge.run`` wired to the preview page, until run.py is.

It is what run.py does with the preview flags (``runtime.preview.add_arguments`` / ``validate`` /
``from_args``) and one :class:`~aknet_edge.runtime.preview.PreviewHooks` per stream; the browser tests
(tests/test_preview_browser.py) run it as a subprocess, as they run the real CLI::

    python tests/peers/preview_run.py 'synthetic://?seed=1&loop=1' --package PKG --preview-port 0 \\
        [--preview-token T] [--stream NAME ...] [--max-seconds S]

``--stream NAME`` (repeatable) runs one recogniser per name on the same source URI, all on one page
(what the multi-camera runtime will do). Prints ``preview: URL`` to stderr once serving; SIGINT/SIGTERM
stop it cleanly (exit 0); bad flags are one ``error:`` line and exit 2, before recognition starts.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, List, Optional

from aknet_edge.cli_common import CliParser, run_cli
from aknet_edge.runtime import preview


def main(argv: Optional[List[str]] = None) -> int:
    p = CliParser(prog="tests/peers/preview_run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("source")
    p.add_argument("--package", required=True)
    p.add_argument("--stream", action="append", help="stream name (repeatable; default: one default stream)")
    p.add_argument("--max-seconds", type=float)
    preview.add_arguments(p)
    args = p.parse_args(argv)
    preview.validate(args)
    from aknet_edge.runtime import EndOfStream, Recognizer

    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = preview.from_args(args, title="aknet_edge")
    recs: List[Any] = []
    try:
        for name in args.stream or [preview.DEFAULT_STREAM]:
            hooks = preview.PreviewHooks(server, name) if server is not None else None
            rec = Recognizer(args.package, args.source, max_seconds=args.max_seconds, keep_images=hooks is not None,
                             on_result=hooks.on_result if hooks else None, on_event=hooks.on_event if hooks else None)
            if hooks is not None:
                hooks.watch(rec)
            rec.start()
            recs.append(rec)
        if server is not None:
            print(f"preview: {server.url}", file=sys.stderr, flush=True)
        running = list(recs)
        while running and not stop.is_set():
            for rec in list(running):
                try:
                    rec.next_result(timeout=0.2 / len(running))
                except EndOfStream:
                    running.remove(rec)
    finally:
        for rec in recs:
            rec.close()
        if server is not None:
            server.close()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
