"""Argument groups and error handling shared by every command-line tool."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Optional

from .config import PRESET_NAMES, ModelConfig, load_config, preset
from .errors import AknetError, ConfigError


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
    cfg = load_config(args.config) if args.config else preset(args.preset or "demo-tiny")
    changes: dict[str, object] = {}
    if getattr(args, "arch", None):
        changes["arch"] = args.arch
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        changes[key] = _parse_value(value)
    if not changes:
        return cfg
    data = cfg.to_dict()
    unknown = sorted(set(changes) - set(data))
    if unknown:
        raise ConfigError(f"--set: unknown config fields {unknown}; known: {sorted(data)}")
    data.update(changes)
    return ModelConfig.from_dict(data)


def _parse_value(text: str) -> object:
    import json

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


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """Source options from the command line; they go through the same typed check as a URI's query string."""
    g = parser.add_argument_group("source")
    g.add_argument("--buffer", type=int, metavar="N", help="frames the capture buffer keeps (newest win on live "
                                                           "sources)")
    g.add_argument("--source-option", dest="source_option", action="append", default=[], metavar="KEY=VALUE",
                   help="any option of the source, as in a URI query (e.g. --source-option fps=30); repeatable")


def source_options_from_args(args: argparse.Namespace) -> dict:
    """The source options the flags give, as strings or ints; the source's typed options check them on open."""
    from aknet_edge.runtime.sources.options import parse_option_pairs

    options: dict = dict(parse_option_pairs(args.source_option))
    if args.buffer is not None:
        options["buffer_size"] = args.buffer
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


def quiet_onnxruntime() -> None:
    """Keep ONNX Runtime's optimizer notices (from constant folding and calibration sessions) off a CLI's output.

    Process-wide, so only CLIs call it; library calls leave ONNX Runtime's log level as the application set it.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return
    ort.set_default_logger_severity(3)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a CLI: log to stderr, known errors as one message and exit 2, Ctrl-C as 130."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return main(argv)
    except AknetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
