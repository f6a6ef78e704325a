"""A site's configuration in one file: ``python -m aknet_edge.run --config site.yaml``.

Why a file: a box on a pole runs for months under systemd; its cameras, thresholds and outputs belong in
a file that is reviewed, versioned and deployed, not in a unit's 400-character command line. The file
mirrors the command line, so nothing has two names:

* every flag of ``python -m aknet_edge.run`` is a top-level key, spelled as the flag without its dashes,
  ``-`` as ``_`` (``--preview-port 8080`` is ``preview_port: 8080``, ``--event-clips DIR`` is
  ``event_clips: DIR``, ``--no-overlap`` is ``overlap: false``; a repeatable flag takes a list:
  ``webhook: [URL, URL]``). The keys are read from the run CLI's parser, so a flag added there (MQTT,
  webhooks, ...) is a key here with no change to this module;
* ``cameras`` names the sources (``SRC`` on the command line), each a URI or a mapping with ``uri`` and its
  own ``source_options`` (as ``--source-option``, checked against the source's kind), thresholds
  (``enter``, ``exit``, ``min_duration``, ``smoothing``: every lane of that camera uses them) and regions
  (``roi``: as ``--roi``, for this camera).

Flags on the command line override the file (a repeatable flag given there replaces the file's list;
``SRC`` given there replaces its cameras). ``--print-config`` prints the effective configuration (file and
flags, defaults included, secrets masked) as YAML that ``--config`` reads back; ``--check-config`` checks
everything that can be checked without opening a camera (types, ranges, files, ports, the package) and exits.

YAML is read with PyYAML's safe loader (no tags that run code). Every mistake is one error naming the file,
the line and the key (``site.yaml:7: cameras.front.enter: expected a finite number, got 'high'``); an
unknown key is an error suggesting the nearest known one; a key given twice is an error.
"""

from __future__ import annotations

import argparse
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import AknetError, ConfigError, DependencyError
from .redact import MASK, SECRET_KEYS, redact

CAMERAS = "cameras"
# flags that are about the command line itself, not the site: never keys of the file
NOT_KEYS = ("config", "print_config", "check_config", "help", "help_sources")
# a camera's own keys: its URI, its source options, the thresholds the run CLI has flags for, its regions
CAMERA_EVENT_KEYS = {"enter": "enter", "exit": "exit", "min_duration": "min_duration_s", "smoothing": "smoothing"}
CAMERA_KEYS = ("uri", "source_options", "roi") + tuple(CAMERA_EVENT_KEYS)
_EVENT_RANGES: Dict[str, Tuple[float, Optional[float]]] = {"enter": (0.0, 1.0), "exit": (0.0, 1.0),
                                                             "min_duration": (0.0, None)}
_SECRET_WORDS = ("token", "secret", "password", "passwd")


class SiteConfigError(ConfigError):
    """The site configuration file is unreadable or wrong; the message names the file, line and key."""


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise DependencyError("--config needs PyYAML: pip install 'aknet-edge[config]'") from None
    return yaml


class _Map(dict):
    """A YAML mapping that remembers the line of each key (1-based) and its own."""

    line = 0
    lines: Dict[Any, int]


def _loader(yaml: Any, where: str) -> Any:
    """PyYAML's safe loader, with mappings that keep their keys' lines and refuse a key given twice."""

    class Loader(yaml.SafeLoader):  # type: ignore[misc, name-defined]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: Dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise SiteConfigError(f"{where}:{line}: {key}: given twice (first on line {seen[key]}); keep "
                                              "one")
                    seen[key] = line
                except TypeError:
                    raise SiteConfigError(f"{where}:{line}: a key must be a name, not {key!r}") from None
            value = super().construct_mapping(node, deep=True)
            out = _Map(value)
            out.line = node.start_mark.line + 1
            out.lines = {self.construct_object(k, deep=True): k.start_mark.line + 1 for k, _ in node.value}
            return out

        def construct_yaml_map(self, node: Any) -> Any:
            data = _Map()
            yield data
            value = self.construct_mapping(node)
            data.update(value)
            data.line, data.lines = value.line, value.lines

    Loader.add_constructor("tag:yaml.org,2002:map", Loader.construct_yaml_map)
    return Loader


def read_yaml(path: Path) -> "_Map":
    """The file's top-level mapping (lines kept); unreadable, not YAML or not a mapping: one error."""
    yaml = _yaml()
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiteConfigError(f"--config {where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteConfigError(f"--config {where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") \
            from None
    try:
        data = yaml.load(text, Loader=_loader(yaml, where))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SiteConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    if data is None:
        raise SiteConfigError(f"{where}:1: the file is empty; expected a mapping of settings (package, cameras, "
                              "outputs...)")
    if not isinstance(data, _Map):
        raise SiteConfigError(f"{where}:1: expected a mapping of settings (key: value lines), got "
                              f"{type(data).__name__}")
    return data


# --------------------------------------------------------------------------- the run CLI's flags as keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, ``--print-config`` and ``--check-config``."""
    g = parser.add_argument_group("site configuration")
    g.add_argument("--config", metavar="FILE", help="read the site's settings from a YAML file: every flag as a "
                   "key (--preview-port 8080 -> preview_port: 8080), cameras by name with their URI, source "
                   "options and thresholds; flags on the command line override it")
    g.add_argument("--print-config", action="store_true",
                   help="print the effective configuration (file and flags, defaults included, secrets masked) "
                        "as YAML and exit")
    g.add_argument("--check-config", action="store_true",
                   help="check the configuration (types, ranges, files, ports, the package) without opening a "
                        "camera, and exit")


def flag_keys(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """key -> the parser's action, for every long flag that can be a key (a ``--no-x`` form is ``x: false``)."""
    table: Dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public list of its actions
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        flag = longs[0]
        if flag.startswith("--no-") and action.help == argparse.SUPPRESS:
            continue  # the negative form of a --x/--no-x pair
        key = flag[2:].replace("-", "_")
        if key in NOT_KEYS or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if action.nargs == 0 and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            continue  # an action that runs something (--help-sources), not a setting
        table[key] = action
    return table


def _is_bool_flag(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


def _is_list_flag(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def _type_name(action: argparse.Action) -> str:
    t = action.type
    if action.choices:
        return "one of " + ", ".join(str(c) for c in action.choices)
    if t is int:
        return "a whole number"
    if t is float:
        return "a finite number"
    return "a string"


@dataclass
class _Where:
    """Where a value sits in the file, for the error line: ``site.yaml:7: cameras.front.enter``."""

    path: str
    line: int
    key: str

    def error(self, message: str) -> SiteConfigError:
        return SiteConfigError(f"{self.path}:{self.line}: {self.key}: {message}")


def _scalar(action: argparse.Action, value: Any, where: _Where) -> Any:
    """One YAML scalar as the flag's parser would take it from the command line."""
    if isinstance(value, bool) or isinstance(value, (dict, list)) or value is None:
        shown = "true/false" if isinstance(value, bool) else type(value).__name__ if value is not None else "null"
        raise where.error(f"expected {_type_name(action)}, got {shown}")
    if isinstance(value, float) and not math.isfinite(value):
        raise where.error(f"expected {_type_name(action)}, got {value}")
    text = str(value)
    if action.type is not None:
        try:
            out = action.type(text)  # type: ignore[misc, operator]
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise where.error(f"expected {_type_name(action)}, got {value!r}") from None
    else:
        out = text
    if action.choices is not None and out not in action.choices:
        raise where.error(f"expected {_type_name(action)}, got {value!r}")
    return out


def _value(action: argparse.Action, value: Any, where: _Where) -> Any:
    """The dest's value for a key's YAML value (bools for --x/--no-x flags, lists for repeatable ones)."""
    if _is_bool_flag(action):
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if _is_list_flag(action):
        if isinstance(value, dict):  # KEY=VALUE flags (--source-option) may be written as a mapping
            return [f"{k}=" + (str(v).lower() if isinstance(v, bool) else str(_scalar(action, v, where)))
                    for k, v in value.items()]
        items = value if isinstance(value, list) else [value]
        return [_scalar(action, item, where) for item in items]
    return _scalar(action, value, where)


def _unknown(key: Any, known: Sequence[str], where: _Where, what: str) -> SiteConfigError:
    near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else f"; known: {', '.join(sorted(known))}"
    return where.error(f"unknown {what}{hint}")


# --------------------------------------------------------------------------- cameras


@dataclass
class Camera:
    """One camera of the file: its name, URI, source options, thresholds and regions."""

    name: str
    uri: str
    source_options: Dict[str, Any] = field(default_factory=dict)
    events: Dict[str, Any] = field(default_factory=dict)  # RecognizerOptions' names: enter, exit, min_duration_s...
    regions: List[str] = field(default_factory=list)  # "NAME=x,y,w,h" (this camera's)
    line: int = 0


def _cameras(data: "_Map", where: str, table: Dict[str, argparse.Action]) -> List[Camera]:
    from aknet_edge.runtime.multistream import check_stream_names

    node = data[CAMERAS]
    at = _Where(where, data.lines.get(CAMERAS, 1), CAMERAS)
    if not isinstance(node, _Map) or not node:
        raise at.error("expected a mapping of camera names to URIs (front: rtsp://...) or to settings (front: {uri: "
                       "..., source_options: {...}, enter: 0.6})")
    cams = []
    for name, spec in node.items():
        line = node.lines.get(name, at.line)
        here = _Where(where, line, f"{CAMERAS}.{name}")
        try:
            check_stream_names([str(name)])
        except ConfigError as exc:
            raise here.error(str(exc)) from None
        if isinstance(spec, (str, int)) and not isinstance(spec, bool):
            cams.append(Camera(str(name), str(spec), line=line))
            continue
        if not isinstance(spec, _Map):
            raise here.error("expected a URI or a mapping with uri (and source_options, enter, exit, min_duration, "
                             "smoothing, roi)")
        for key in spec:
            if key not in CAMERA_KEYS:
                raise _unknown(key, CAMERA_KEYS, _Where(where, spec.lines.get(key, line), f"{CAMERAS}.{name}.{key}"),
                               "camera setting")
        if "uri" not in spec or spec["uri"] in (None, ""):
            raise here.error("no uri; give the camera's URI (uri: rtsp://..., csi://0, /dev/video0, a file...)")
        uri = spec["uri"]
        if isinstance(uri, bool) or not isinstance(uri, (str, int)):
            raise _Where(where, spec.lines["uri"], f"{CAMERAS}.{name}.uri").error(f"expected a URI, got {uri!r}")
        cam = Camera(str(name), str(uri), line=line)
        for key, dest in CAMERA_EVENT_KEYS.items():
            if key in spec and spec[key] is not None:
                at = _Where(where, spec.lines[key], f"{CAMERAS}.{name}.{key}")
                cam.events[dest] = value = _value(table[key], spec[key], at)
                if key in _EVENT_RANGES:
                    low, high = _EVENT_RANGES[key]
                    if not (low <= value and (high is None or value <= high)):
                        bounds = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
                        raise at.error(f"expected a number {bounds}, got {spec[key]!r}")
        if spec.get("source_options") is not None:
            cam.source_options = _source_options(cam, spec, where)
        if spec.get("roi") is not None:
            cam.regions = _regions(cam, spec, where)
        cams.append(cam)
    return cams


def _source_options(cam: Camera, spec: "_Map", where: str) -> Dict[str, Any]:
    """The camera's source options, each checked against its source kind (the source is made, never opened)."""
    from aknet_edge.runtime.sources import SourceOptionError, open_source

    opts = spec["source_options"]
    here = _Where(where, spec.lines["source_options"], f"{CAMERAS}.{cam.name}.source_options")
    if not isinstance(opts, _Map):
        raise here.error("expected a mapping of option: value (e.g. {fps: 15, rtsp_transport: tcp})")
    out: Dict[str, Any] = {}
    for key, value in opts.items():
        at = _Where(where, opts.lines.get(key, here.line), f"{here.key}.{key}")
        if isinstance(value, (dict, list)):
            raise at.error(f"expected a single value, got {type(value).__name__}")
        out[str(key)] = value
    try:  # a camera not plugged in here, or a kind this machine cannot open, leaves its options to the run
        open_source(cam.uri, start=False).close()
    except AknetError:
        return out
    for key, value in out.items():
        try:
            open_source(cam.uri, start=False, **{key: value}).close()
        except SourceOptionError as exc:
            raise _Where(where, opts.lines.get(key, here.line), f"{here.key}.{key}").error(str(exc)) from None
    try:
        open_source(cam.uri, start=False, **out).close()  # together: options that depend on each other
    except SourceOptionError as exc:
        raise here.error(str(exc)) from None
    return out


def _regions(cam: Camera, spec: "_Map", where: str) -> List[str]:
    from aknet_edge.runtime.views import parse_region

    value = spec["roi"]
    here = _Where(where, spec.lines["roi"], f"{CAMERAS}.{cam.name}.roi")
    if isinstance(value, _Map):  # door: [x, y, w, h]
        items = []
        for name, box in value.items():
            if not isinstance(box, list) or len(box) != 4:
                raise _Where(where, value.lines.get(name, here.line), f"{here.key}.{name}").error(
                    f"expected [x, y, w, h], got {box!r}")
            items.append(f"{name}=" + ",".join(str(v) for v in box))
    else:
        items = [str(v) for v in (value if isinstance(value, list) else [value])]
    out = []
    for item in items:
        text = f"{cam.name}:{item}"
        try:
            parse_region(text)
        except ConfigError as exc:
            raise here.error(str(exc)) from None
        out.append(text)
    return out


# --------------------------------------------------------------------------- the file and the command line


@dataclass
class SiteConfig:
    """A file's settings as the run CLI's dests (values converted and checked), and its cameras."""

    path: Path
    values: Dict[str, Any]  # dest -> value
    lines: Dict[str, Tuple[int, str]]  # dest -> (line, key): where each value came from
    cameras: List[Camera]


def load(path: "str | Path", parser: argparse.ArgumentParser) -> SiteConfig:
    """Read and check ``path`` against ``parser``'s flags (see the module docstring)."""
    path = Path(path)
    where = str(path)
    data = read_yaml(path)
    table = flag_keys(parser)
    values: Dict[str, Any] = {}
    lines: Dict[str, Tuple[int, str]] = {}
    for key, value in data.items():
        line = data.lines.get(key, 1)
        if key == CAMERAS:
            continue
        action = table.get(key) if isinstance(key, str) else None
        if action is None:
            hint = "setting" if key not in NOT_KEYS else "setting here (it is a command-line flag only)"
            raise _unknown(key, list(table) + [CAMERAS], _Where(where, line, str(key)), hint)
        if value is None:  # null: the flag's default
            continue
        values[action.dest] = _value(action, value, _Where(where, line, key))
        lines[action.dest] = (line, key)
    cameras = _cameras(data, where, table) if CAMERAS in data else []
    return SiteConfig(path, values, lines, cameras)


def given_dests(make_parser: Callable[[], argparse.ArgumentParser], argv: Optional[Sequence[str]]) -> set:
    """The dests the command line sets itself (flags and SRC), whatever their values."""
    p = make_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    p._defaults.clear()  # set_defaults of --x/--no-x pairs
    return set(vars(p.parse_args(argv)))


def parse_run_args(make_parser: Callable[[], argparse.ArgumentParser],
                   argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The run CLI's arguments with ``--config`` merged under them: the file's values where the command line gives
    none; ``args.stream_source_options``, ``args.stream_events`` (per camera) and ``args.site_config`` added."""
    parser = make_parser()
    args = parser.parse_args(argv)
    args.stream_source_options, args.stream_events, args.site_config = {}, {}, None
    if args.config is None:
        return args
    cfg = load(args.config, parser)
    given = given_dests(make_parser, argv)
    for dest, value in cfg.values.items():
        if dest not in given:
            setattr(args, dest, value)
    if cfg.cameras and "sources" not in given:  # SRC on the command line replaces the file's cameras
        args.sources = [f"{cam.name}={cam.uri}" for cam in cfg.cameras]
        args.regions = list(args.regions) + [r for cam in cfg.cameras for r in cam.regions]
        args.stream_source_options = {cam.name: cam.source_options for cam in cfg.cameras if cam.source_options}
        args.stream_events = {cam.name: cam.events for cam in cfg.cameras if cam.events}
        _check_camera_events(cfg, args)
    args.site_config = cfg
    return args


def _check_camera_events(cfg: SiteConfig, args: argparse.Namespace) -> None:
    """Each camera's thresholds over the run's (exit <= enter, both in [0, 1]...), naming the camera's line."""
    from aknet_edge.runtime.events import EventConfig

    base = dict(smoothing=args.smoothing, enter=args.enter, exit=args.exit, min_duration_s=args.min_duration)
    for cam in cfg.cameras:
        if not cam.events:
            continue
        try:
            EventConfig(**{**base, **cam.events})
        except ConfigError as exc:
            raise _Where(str(cfg.path), cam.line, f"{CAMERAS}.{cam.name}").error(str(exc)) from None
        except TypeError as exc:
            raise _Where(str(cfg.path), cam.line, f"{CAMERAS}.{cam.name}").error(f"bad threshold ({exc})") from None


def locate(exc: ConfigError, args: argparse.Namespace, parser: argparse.ArgumentParser) -> ConfigError:
    """A check's error about a flag (``--pre-roll -1: expected ...``) whose value came from the file, as the file's
    error: ``site.yaml:12: pre_roll: -1: expected ...``; other errors as they are."""
    cfg = getattr(args, "site_config", None)
    text = str(exc)
    if cfg is None or not text.startswith("--"):
        return exc
    flag = text.split(None, 1)[0].rstrip(":,")
    action = next((a for a in parser._actions if flag in a.option_strings), None)
    if action is None or action.dest not in cfg.lines or getattr(args, action.dest, None) != cfg.values[action.dest]:
        return exc  # not from the file (or the command line overrode it)
    line, key = cfg.lines[action.dest]
    return SiteConfigError(f"{cfg.path}:{line}: {key}: {text[len(flag):].lstrip(' :')}")


def per_stream(values: Dict[str, Dict[str, Any]], streams: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """A camera's settings for each of its streams: a rosbag camera ``bag`` becomes ``bag.<topic>`` streams."""
    out: Dict[str, Dict[str, Any]] = {}
    for name in streams:
        if name in values:
            out[name] = values[name]
        elif name.split(".", 1)[0] in values:
            out[name] = values[name.split(".", 1)[0]]
    return out


# --------------------------------------------------------------------------- --print-config


def _secret(key: str) -> bool:
    return any(word in key for word in _SECRET_WORDS)


def effective(parser: argparse.ArgumentParser, args: argparse.Namespace,
              streams: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    """The effective configuration as the file's keys (defaults included, secrets masked): ``--config`` reads it
    back to the same run (masked secrets aside)."""
    out: Dict[str, Any] = {}
    table = flag_keys(parser)
    for key in ("package", "backend"):
        if key in table:
            out[key] = _shown(key, getattr(args, table[key].dest))
    cams: Dict[str, Any] = {}
    for name, uri in streams:
        cam: Dict[str, Any] = {"uri": redact(uri)}
        opts = dict(getattr(args, "stream_source_options", {}).get(name, {}))
        if opts:
            cam["source_options"] = {k: (MASK if _secret(str(k).lower()) else v) for k, v in opts.items()}
        for key, dest in CAMERA_EVENT_KEYS.items():
            value = getattr(args, "stream_events", {}).get(name, {}).get(dest)
            if value is not None:
                cam[key] = value
        cams[name] = cam
    out[CAMERAS] = cams
    regions = getattr(args, "regions", [])
    for key, action in table.items():
        if key in out:
            continue
        value = getattr(args, action.dest, None)
        if _is_bool_flag(action) and isinstance(action, argparse._StoreFalseAction) and value is not None:
            value = not value
        if action.dest == "regions":
            value = list(regions)
        out[key] = _shown(key, value)
    return out


def _shown(key: str, value: Any) -> Any:
    if value is None:
        return None
    if _secret(key):
        return MASK
    if isinstance(value, list):
        return [_shown(key, v) for v in value]
    if isinstance(value, str):
        name, sep, _ = value.partition("=")
        if sep and name.strip().lower() in SECRET_KEYS:  # --source-option password=...
            return f"{name}={MASK}"
        return redact(value)
    return value


def dump(config: Dict[str, Any]) -> str:
    """YAML for :func:`effective`'s mapping, in its order."""
    yaml = _yaml()
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


__all__ = ["CAMERAS", "CAMERA_KEYS", "Camera", "SiteConfig", "SiteConfigError", "add_arguments", "dump", "effective",
           "flag_keys", "given_dests", "load", "locate", "parse_run_args", "per_stream", "read_yaml"]
