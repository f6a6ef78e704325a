"""Argument groups and error handling shared by every command-line tool."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

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
