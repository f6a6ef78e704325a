"""Argument groups and error handling shared by every command-line tool."""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Optional, TextIO

from .checks import check_number  # noqa: F401  (re-exported: every CLI checks its numbers with it)
from .config import PRESET_NAMES, ModelConfig, load_config, preset
from .errors import AknetError, ConfigError
from .redact import install_log_filter, redact


class UsageError(ConfigError):
    """A command line the parser cannot read (unknown flag, missing value, a value of the wrong type)."""


class CliParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose mistakes are one ``error:`` line (via :func:`run_cli`), not usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_model_args(parser: argparse.ArgumentParser, default_preset: str | None = "demo-tiny") -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--preset", choices=PRESET_NAMES, default=default_preset, help="named model preset")
    g.add_argument("--config", help="model config JSON (overrides --preset)")
    g.add_argument("--arch", choices=("aknet", "tsm"), help="AK-Net or the TSM baseline on the same code")
    g.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field, e.g. --set keep_ratio=0.125 --set criterion=raster",
    )


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    try:
        cfg = load_config(args.config) if args.config else preset(args.preset or "demo-tiny")
    except TypeError as exc:  # a field of the wrong type in the JSON file
        raise ConfigError(f"--config {args.config}: a field has a value of the wrong type ({exc})") from None
    changes: dict[str, object] = {}
    if getattr(args, "arch", None):
        changes["arch"] = args.arch
    data = cfg.to_dict()
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        changes[key] = _parse_value(value)
        if key in data:
            _check_override(key, value, changes[key], data[key])
    if not changes:
        return cfg
    unknown = sorted(set(changes) - set(data))
    if unknown:
        raise ConfigError(f"--set: unknown config fields {unknown}; known: {sorted(data)}")
    data.update(changes)
    try:
        return ModelConfig.from_dict(data)
    except TypeError as exc:
        raise ConfigError(f"--set: a value of the wrong type ({exc})") from None


def _check_override(key: str, text: str, value: object, current: object) -> None:
    """``--set FIELD=VALUE`` has the type of the field's current value (and numbers are finite)."""
    if isinstance(current, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(current, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    elif isinstance(current, str):
        ok, kind = isinstance(value, str), "a name"
    elif isinstance(current, (list, tuple)):
        ok, kind = isinstance(value, list), "a JSON list"
    else:  # None (optional fields) and nested objects: the config's own checks decide
        return
    if not ok:
        raise ConfigError(f"--set {key}={text}: expected {kind} (now {json.dumps(current)})")


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_bool_flag(parser: argparse.ArgumentParser, flag: str, default: object, help: str,
                  dest: Optional[str] = None) -> None:
    """``--x`` / ``--no-x`` (argparse's BooleanOptionalAction, which Python 3.8 lacks: JetPack 5's Python)."""
    dest = dest or flag.lstrip("-").replace("-", "_")
    group = parser.add_mutually_exclusive_group()
    name = flag.lstrip("-")
    state = {True: f"on; --no-{name} turns it off", False: "off", None: "automatic"}.get(default, default)  # type: ignore[call-overload]
    group.add_argument(flag, dest=dest, action="store_true", help=f"{help} [{state}]")
    group.add_argument("--no-" + flag.lstrip("-"), dest=dest, action="store_false", help=argparse.SUPPRESS)
    parser.set_defaults(**{dest: default})


class _SourcesHelp(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        from aknet_edge.runtime.sources.options import usage

        print(usage())
        parser.exit()


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """Source options from the command line; they go through the same typed check as a URI's query string."""
    from aknet_edge.runtime.sources.options import RTSP_TRANSPORTS

    g = parser.add_argument_group("source")
    g.add_argument("--buffer", type=int, metavar="N", help="frames the capture buffer keeps (newest win on live "
                                                           "sources)")
    g.add_argument("--help-sources", action=_SourcesHelp, nargs=0,
                   help="list every source kind's options, their defaults and accepted values, and exit")
    g.add_argument("--rtsp-transport", choices=RTSP_TRANSPORTS,
                   help="RTSP over TCP (interleaved: through NAT and lossy Wi-Fi) or UDP (default: tcp, unless "
                        "OPENCV_FFMPEG_CAPTURE_OPTIONS names one)")
    g.add_argument("--source-option", dest="source_option", action="append", default=[], metavar="KEY=VALUE",
                   help="any option of the source, as in a URI query (e.g. --source-option fps=30, "
                        "reconnect_max_s=2, open_timeout_s=10, width=1280); repeatable")


def source_options_from_args(args: argparse.Namespace) -> dict:
    """The source options the flags give, as strings or ints; the source's typed options check them on open."""
    from aknet_edge.runtime.sources.options import parse_option_pairs

    options: dict = dict(parse_option_pairs(args.source_option))
    if args.buffer is not None:
        options["buffer_size"] = args.buffer
    if args.rtsp_transport is not None:  # only when given: every non-RTSP source refuses the option
        options["rtsp_transport"] = args.rtsp_transport
    return options


def format_table(rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """The one plain-text table every CLI prints: a header row, a rule, then the rows.

    The first ``left`` columns are left-aligned (names), the rest right-aligned (numbers).
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def defaults_of(cls: type) -> dict:
    """Field defaults of a dataclass: CLIs take their argparse defaults from here, never retype them."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (not a file, a pipe, CI's log or a closed stream)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class StepProgress:
    """A long command's steps: one bar redrawn in place on a terminal; one plain line per step anywhere else.

    Why two forms: tqdm redraws its line with carriage returns, which a log file or CI's output keeps, so every
    step ran into one long line there. On a terminal (``stream.isatty()``) it is tqdm's ``DESC: n/total STEP``;
    elsewhere each :meth:`step` writes ``DESC i/total: STEP`` and a newline, flushed. ``enabled=False`` writes
    nothing (``--no-progress``).
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, stream: Optional[TextIO] = None) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.started = 0  # steps begun
        self._bar: Any = None
        if enabled and is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, file=self.stream, bar_format="{desc}: {n}/{total} {postfix}")

    def step(self, name: str) -> None:
        """The previous step is done and ``name`` begins."""
        if not self.enabled:
            return
        if self._bar is not None:
            if self.started:
                self._bar.update()
            self._bar.set_postfix_str(name)
        else:
            self.stream.write(f"{self.desc} {self.started + 1}/{self.total}: {name}\n")
            self.stream.flush()
        self.started += 1

    def close(self, done: bool = True) -> None:
        """End the display (``done``: the last step finished; False: it failed or was interrupted). Idempotent."""
        bar, self._bar = self._bar, None
        if bar is not None:
            if done and self.started:
                bar.update()
            bar.close()


def quiet_onnxruntime() -> None:
    """Keep ONNX Runtime's optimizer notices (from constant folding and calibration sessions) off a CLI's output.

    Process-wide, so only CLIs call it; library calls leave ONNX Runtime's log level as the application set it.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return
    ort.set_default_logger_severity(3)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that every cleanup Ctrl-C runs also runs for it."""

    signum = signal.SIGTERM


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise Terminated(f"signal {signum}")


def one_line(text: str) -> str:
    """An error message on one line (multi-line messages are joined with '; '), secrets masked."""
    return redact("; ".join(part.strip() for part in str(text).splitlines() if part.strip()))


def _silence_stdout() -> None:
    """Point stdout at the null device: its reader went away, and the interpreter's final flush (or a later
    print) would otherwise fail on it again."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a CLI: log to stderr; a user, filesystem or network error is one ``error:`` line and exit 2;
    Ctrl-C exits 130 and SIGTERM 143, after the same cleanup (temporary files removed, nothing half-written).

    Errors we raise on purpose (:class:`~aknet_edge.errors.AknetError`, argparse mistakes included, see
    :class:`CliParser`) print their message; any other ``OSError`` (a file or socket the system refused)
    prints what was refused and why. Anything else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    install_log_filter()  # no password of a camera URI in any log line
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
        else:
            previous = None  # someone else handles SIGTERM in this process: leave it to them
    try:
        return main(argv)
    except AknetError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name != "cv2":
            raise
        print("error: OpenCV (cv2) is not installed: pip install 'aknet-edge[opencv]', or on Jetson keep the system "
              "OpenCV in a --system-site-packages venv (README, Install on Jetson)", file=sys.stderr)
        return 2
    except BrokenPipeError as exc:
        if getattr(exc, "filename", None) is None:  # stdout (``... | head``): the reader has what it wanted
            _silence_stdout()
            return 128 + 13  # as if killed by SIGPIPE, the shell's convention; no error line, no noise at exit
        print(f"error: {exc.filename}: the reader went away (broken pipe)", file=sys.stderr)
        return 2
    except OSError as exc:
        from .io_utils import os_error_reason

        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{os_error_reason(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
