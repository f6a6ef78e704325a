"""TensorRT plugin libraries: loaded before an ONNX graph is parsed and before an engine is deserialised.

Why here: a plugin registers its creators with TensorRT's global plugin
registry when its library is loaded, and the parser (for a node it has no
importer for) and the runtime (for a plugin layer in a plan) look creators up
there by (name, version, namespace). So the library must be in the process
first, and the registry's own plugins (``init_libnvinfer_plugins``) set up,
or TensorRT fails with a log line deep in the build. This module loads the
libraries (``ctypes``, RTLD_GLOBAL, as NVIDIA's samples do), names what each
one registered so the package can record it (:class:`aknet_edge.package.PluginLibrary`),
and says before parsing which graph node needs a plugin nobody loaded.

Mistakes give one clear error (:class:`~aknet_edge.errors.ConfigError`): a
path that is not a file, a file that is not a shared library, a library the
dynamic loader refuses (missing dependencies, wrong architecture).

The registry's creator list is per era: ``plugin_creator_list`` (8.x, the
IPluginV2 creators), ``all_creators`` (10.0+, V2 and V3; the V2-only list is
gone in 11).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, List, Sequence, Tuple

from aknet_edge import trt_eras
from aknet_edge.errors import ConfigError

from .onnx_info import OnnxGraphInfo, PluginNode
from .version import EngineBuildError, EngineRuntimeError, Version, api_era, get_trt_logger

log = logging.getLogger(__name__)

FLAG = "--plugin-lib"
_ELF_MAGIC = b"\x7fELF"
_LOCK = threading.Lock()
_LOADED: Dict[str, "LoadedPlugin"] = {}  # resolved path -> what loading it registered
_HANDLES: List[Any] = []  # keep the libraries loaded for the life of the process
_REGISTRY_READY = False


@dataclass(frozen=True)
class LoadedPlugin:
    """A plugin library loaded into this process, and the creators it registered (``name/version[@namespace]``)."""

    path: Path
    sha256: str
    creators: Tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return self.path.name


def creator_id(name: str, version: str = "1", namespace: str = "") -> str:
    """``KeypointSelect/1`` or ``KeypointSelect/1@aknet``: how creators are named in errors and the manifest."""
    return f"{name}/{version or '1'}" + (f"@{namespace}" if namespace else "")


def check_library_file(path: Any) -> Path:
    """The path, if it names an existing file that starts like a shared library; else one ConfigError line."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise ConfigError(f"{FLAG} {path}: no such file; give the path of a TensorRT plugin library (.so), "
                          f"e.g. {FLAG} /opt/plugins/libmyplugin.so")
    if not p.is_file():
        raise ConfigError(f"{FLAG} {path}: is not a file; give the path of a TensorRT plugin library (.so)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ConfigError(f"{FLAG} {path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    if head != _ELF_MAGIC:
        raise ConfigError(f"{FLAG} {path}: is not a shared library (no ELF header); give the plugin's compiled "
                          ".so file, not its source, a folder or an archive")
    problem = _elf_problem(p)
    if problem:
        raise ConfigError(f"{FLAG} {path}: {problem}; copy or build the plugin library again")
    return p


def _elf_problem(path: Path) -> str:
    """Why the dynamic loader must not be handed this ELF file, or "" when it may try.

    A truncated library (an interrupted copy or download) has loadable segments
    past the end of the file; dlopen maps them and the process dies of SIGBUS
    on first touch, so this is checked before loading: ELF header, program
    header table and every PT_LOAD segment within the file.
    """
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        ident = fh.read(64)
        if len(ident) < 52 or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return "is truncated or not a valid ELF file (incomplete header)"
        wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if wide:
            phoff, = struct.unpack_from(order + "Q", ident, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
        else:
            phoff, = struct.unpack_from(order + "I", ident, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
        if phoff + phentsize * phnum > size:
            return f"is truncated ({size} bytes; its program headers end at byte {phoff + phentsize * phnum})"
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        kind, = struct.unpack_from(order + "I", entry, 0)
        if kind != 1:  # PT_LOAD
            continue
        if wide:
            offset, = struct.unpack_from(order + "Q", entry, 8)
            filesz, = struct.unpack_from(order + "Q", entry, 32)
        else:
            offset, filesz = struct.unpack_from(order + "I", entry, 4)[0], struct.unpack_from(order + "I", entry, 16)[0]
        if offset + filesz > size:
            return f"is truncated ({size} bytes; a loadable segment ends at byte {offset + filesz})"
    return ""


def load_plugin_libraries(paths: Iterable[Any]) -> Tuple[LoadedPlugin, ...]:
    """Load every library (each once per process) and, where TensorRT imports, its registry; in order.

    Every path is checked before any is loaded, so a typo in the second path
    fails before the first library's static initialisers run. Without
    TensorRT the libraries are still loaded (a real plugin library then
    usually fails to load: it links libnvinfer), and no creators are listed.
    """
    checked = [check_library_file(p) for p in paths]
    if not checked:
        return ()
    trt = _tensorrt_or_none()
    loaded = []
    with _LOCK:
        if trt is not None:
            _init_registry(trt)
        for path in checked:
            key = str(path.resolve())
            if key not in _LOADED:
                before = set(registered_creators(trt)) if trt is not None else set()
                try:
                    handle = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                except OSError as exc:
                    raise ConfigError(f"{FLAG} {path}: the dynamic loader refused it ({exc}); build the plugin for "
                                      "this machine's TensorRT and CUDA, and put its dependencies on "
                                      "LD_LIBRARY_PATH") from None
                _HANDLES.append(handle)
                added = sorted(set(registered_creators(trt)) - before) if trt is not None else []
                _LOADED[key] = LoadedPlugin(path, _sha256(path), tuple(added))
                log.info("loaded TensorRT plugin library %s (creators: %s)", path, ", ".join(added) or "none listed")
            loaded.append(_LOADED[key])
    return tuple(loaded)


def loaded_plugins() -> Tuple[LoadedPlugin, ...]:
    """Every plugin library loaded in this process so far, in load order."""
    with _LOCK:
        return tuple(_LOADED.values())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensorrt_or_none() -> Any:
    try:
        from .version import load_tensorrt

        return load_tensorrt()
    except ImportError:
        return None


# --------------------------------------------------------------------------- TensorRT's registry


def _init_registry(trt: Any) -> None:
    """Register TensorRT's own plugins once per process (every era has this call)."""
    global _REGISTRY_READY
    if not _REGISTRY_READY:
        trt.init_libnvinfer_plugins(get_trt_logger(), "")
        _REGISTRY_READY = True


def registered_creators(trt: Any) -> List[str]:
    """``name/version[@namespace]`` of every creator in TensorRT's global registry."""
    from .version import check_supported, trt_version

    registry = trt.get_plugin_registry()
    if api_era(check_supported(trt_version(trt))) == 8:
        creators = _creator_list_trt8(registry)
    else:
        creators = _creator_list_trt10_trt11(registry)
    return [_creator_text(creator) for creator in creators]


def _creator_list_trt8(registry: Any) -> List[Any]:
    """8.x: the IPluginV2 creators."""
    return list(registry.plugin_creator_list)


def _creator_list_trt10_trt11(registry: Any) -> List[Any]:
    """10.0+: every creator, IPluginV2 and IPluginV3 alike (``plugin_creator_list`` is gone in 11)."""
    return list(registry.all_creators)


def _creator_text(creator: Any) -> str:
    return creator_id(str(creator.name), str(creator.plugin_version), str(creator.plugin_namespace))


def ensure_registry(trt: Any) -> None:
    """Before parsing or deserialising: TensorRT's own plugins registered (idempotent)."""
    with _LOCK:
        _init_registry(trt)


# --------------------------------------------------------------------------- what a graph or engine needs


def needed_plugins(graph: OnnxGraphInfo, version: Version) -> List[PluginNode]:
    """The graph's nodes that TensorRT ``version``'s parser can only import through a plugin.

    A node whose op type is not a standard ONNX op needs a plugin, unless a
    model-local function defines it and the parser imports function bodies
    (9.0+; 8.x ignores functions). From 10.7 a node with a ``plugin_namespace``
    attribute tries a plugin first and falls back to the body: not required.
    """
    bodies = trt_eras.available("onnx_functions", version)
    return [node for node in graph.plugin_nodes if not (bodies and node.has_function)]


def missing_plugins(needed: Sequence[PluginNode], registered: Collection[str]) -> List[PluginNode]:
    """The nodes of ``needed`` whose creator (``creator_id``) is not in ``registered``."""
    have = set(registered)
    return [node for node in needed if creator_id(node.op_type, node.plugin_version, node.plugin_namespace) not in have]


def check_graph_plugins(trt: Any, graph: OnnxGraphInfo, version: Version, onnx_path: Any) -> None:
    """Before parsing: every node that needs a plugin finds its creator registered, or one clear error."""
    needed = needed_plugins(graph, version)
    if not needed:
        return
    missing = missing_plugins(needed, registered_creators(trt))
    if missing:
        first = missing[0]
        wanted = sorted({creator_id(n.op_type, n.plugin_version, n.plugin_namespace) for n in missing})
        loaded = ", ".join(p.file for p in loaded_plugins()) or "none"
        raise EngineBuildError(
            f"{onnx_path}: {len(missing)} node(s) need TensorRT plugins no loaded library registers "
            f"({', '.join(wanted)}; e.g. node {first.name!r}, {first.domain or 'ai.onnx'}::{first.op_type}); "
            f"load the plugin library with {FLAG} PATH (loaded: {loaded})")


def check_engine_plugins(required: Iterable[Any], engine_file: str = "the engine") -> None:
    """Before deserialising: every plugin library the package records for an engine is loaded here.

    ``required`` holds :class:`aknet_edge.package.PluginLibrary` records. A
    library counts as loaded when one with the same content, or the same file
    name, was loaded in this process (a rebuilt plugin keeps its name).
    """
    required = tuple(required)
    if not required:
        return
    have = loaded_plugins()
    hashes, names = {p.sha256 for p in have}, {p.file for p in have}
    missing = [r for r in required if r.sha256 not in hashes and r.file not in names]
    if missing:
        what = "; ".join(f"{r.file}" + (f" (creators {', '.join(r.creators)})" if r.creators else "") for r in missing)
        raise EngineRuntimeError(f"{engine_file} was built with TensorRT plugin librar"
                                 f"{'y' if len(missing) == 1 else 'ies'} {what}, not loaded here: pass "
                                 f"{FLAG} PATH for each before the engine loads")


def plugin_records(loaded: Sequence[LoadedPlugin]) -> Tuple[Any, ...]:
    """The manifest records (:class:`aknet_edge.package.PluginLibrary`) for libraries loaded for a build."""
    from aknet_edge.package import PluginLibrary

    return tuple(PluginLibrary(p.file, p.sha256, p.creators) for p in loaded)

