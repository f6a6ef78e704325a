"""The model package: a folder whose ``manifest.json`` is the contract between build and runtime.

This module owns that contract end to end: the typed records of the manifest
(:class:`Manifest`, :class:`Variant`, :class:`Preprocessing`, :class:`GraphIO`,
...), their validation (``from_dict`` names the bad field, as
:class:`~aknet_edge.config.ModelConfig` does), the one writer every build path
uses (:func:`write`), and the accessors the runtime reads (the clip spec, a
role's I/O, choosing a variant by kind, precision and role with one default).

Why one place: a package is written on a workstation and read on a robot,
possibly by another release of the toolkit. Every reader going through these
records means a missing or malformed field is reported once, by name, instead
of surfacing as a ``KeyError`` deep in the runtime.

Torch-free and numpy-free, so the runtime loads packages anywhere (Python 3.8+).
Schema 1 packages written by 0.2.0 load unchanged; fields added since are
optional with the 0.2.0 meaning as their default.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from . import graph_io, trt_eras
from .calib_options import CALIB_METHODS, DEFAULT_INT8_WEIGHTS, INT8_WEIGHT_FORMS, check_percentile
from .config import ClipSpec, ModelConfig
from .errors import AknetError, ConfigError
from .io_utils import atomic_write_text

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LABELS_FILE = "labels.txt"

# precisions a graph or engine can have; "best" is a build request, not a precision
PRECISIONS = ("fp32", "fp16", "int8")
AUTO = "auto"
KINDS = ("onnx", "tensorrt")
# What ``auto`` picks when a package holds several variants of a kind. ONNX Runtime on a CPU: FP32, because
# INT8 measured no faster there and FP16 is emulated (README, INT8 section). TensorRT: the engine the build
# made on purpose, INT8 first, as ``--precision best`` builds it (:data:`ENGINE_PRECISION_FOR`).
PREFERENCE: Dict[str, Tuple[str, ...]] = {"onnx": ("fp32", "fp16", "int8"), "tensorrt": ("int8", "fp16", "fp32")}
# the engine precision the build compiles for each ``--precision`` request
ENGINE_PRECISION_FOR: Dict[str, str] = {"best": "int8", "int8": "int8", "fp16": "fp16", "fp32": "fp32"}

# what the runtime's preprocessing implements (aknet_edge.preprocess); a package declaring anything else is refused
SAMPLING = "time"
LAYOUT = "NTCHW"
SCALE = 1.0 / 255.0
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")  # graph I/O element types
BUILD_TARGETS = ("auto", "onnxruntime") + tuple(r.target for r in trt_eras.RELEASES)
ENGINE_FIELDS = ("tensorrt_version", "gpu", "compute_capability", "cache_key", "calibration", "calibration_cache",
                 "flags", "plugins")
# Which TensorRT versions each INT8 weight form serves, [since, until): TensorRT 8.4's builder rejected INT8
# constants behind DequantizeLinear and nothing shows 8.5/8.6 take them, so 8.x gets FP32 weights behind a
# Q -> DQ pair (a form every version takes); 10.x/11.x get the smaller INT8 initializers
# (shared/design/tensorrt.md, "Q/DQ details per version"). ``build --from`` picks by the installed version.
INT8_WEIGHTS_SERVE: Dict[str, Tuple[Tuple[int, int], Optional[Tuple[int, int]]]] = {
    "qdq": (trt_eras.SUPPORTED_SINCE, (10, 0)),
    "int8": ((10, 0), None),
}
FLOAT_MODULE_PRECISIONS = ("fp16", "int8")  # the reduced precisions a model declares FP32 modules for


class PackageError(AknetError, ValueError):
    """A package is incomplete, corrupted, or was built for another TensorRT or GPU."""


def _is_hex(text: str, length: int = 64) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _local_file(name: str) -> bool:
    """A plain file name inside the package folder (no folders, no way out of it)."""
    p = Path(name)
    return bool(name) and not p.is_absolute() and len(p.parts) == 1 and name not in (".", "..")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_major_minor(text: str) -> Tuple[int, int]:
    """``"10.3"`` (or ``"10.3.0"``) -> ``(10, 3)``; ValueError for anything else."""
    parts = str(text).split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise ValueError(f"expected MAJOR.MINOR, e.g. 10.3; got {text!r}")
    return int(parts[0]), int(parts[1])


def int8_weights_for(version: Iterable[int]) -> str:
    """The INT8 weight form that serves TensorRT ``version`` (:data:`INT8_WEIGHTS_SERVE`)."""
    v = tuple(version)[:2]
    for form, (since, until) in INT8_WEIGHTS_SERVE.items():
        if since <= v and (until is None or v < until):
            return form
    return DEFAULT_INT8_WEIGHTS


def _version_text(v: Optional[Tuple[int, int]]) -> Optional[str]:
    return None if v is None else f"{v[0]}.{v[1]}"


def format_serves(serves: Optional[Tuple[Tuple[int, int], Optional[Tuple[int, int]]]]) -> str:
    """``((8, 5), (10, 0))`` -> ``"8.5 to 9.x"``; ``((10, 0), None)`` -> ``"10.0+"``; None -> ``"any"``."""
    if serves is None:
        return "any"
    since, until = serves
    if until is None:
        return f"{_version_text(since)}+"
    last = f"{until[0] - 1}.x" if until[1] == 0 else f"{until[0]}.{until[1] - 1}"
    return f"{_version_text(since)} to {last}"


# -- field reading -----------------------------------------------------------------------------

_MISSING = object()


class _Fields:
    """Reads one JSON object field by field; every error names the field's full path."""

    def __init__(self, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise PackageError(f"{where}: expected an object, got {type(data).__name__} {data!r:.60}")
        self.where, self.data, self.used = where, data, set()  # type: str, Dict[str, Any], set

    def _bad(self, name: str, value: Any, expected: str) -> PackageError:
        return PackageError(f"{self.where}.{name} = {value!r:.80}: expected {expected}; rebuild the package with "
                            "python -m aknet_edge.build")

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise PackageError(f"{self.where}.{name} is missing: this aknet_edge needs it; rebuild the package "
                                   "with python -m aknet_edge.build")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _MISSING, choices: Optional[Iterable[str]] = None,
            optional: bool = False) -> Any:
        v = self.raw(name, default)
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise self._bad(name, v, "a non-empty string")
        if choices is not None and v not in tuple(choices):
            raise self._bad(name, v, f"one of {', '.join(choices)}")
        return v

    def int(self, name: str, default: Any = _MISSING, minimum: Optional[int] = None, optional: bool = False) -> Any:
        v = self.raw(name, default)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
            raise self._bad(name, v, "an integer" + (f" >= {minimum}" if minimum is not None else ""))
        return v

    def float(self, name: str, default: Any = _MISSING, check: Optional[Callable[[float], bool]] = None,
              expected: str = "a number", optional: bool = False) -> Any:
        v = self.raw(name, default)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (check and not check(v)):
            raise self._bad(name, v, expected)
        return float(v)

    def list(self, name: str, default: Any = _MISSING, length: Optional[int] = None) -> list:
        v = self.raw(name, default)
        if not isinstance(v, list) or (length is not None and len(v) != length):
            raise self._bad(name, v, "a list" + (f" of {length} items" if length is not None else ""))
        return v

    def obj(self, name: str, default: Any = _MISSING, optional: bool = False) -> Any:
        v = self.raw(name, default)
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            raise self._bad(name, v, "an object")
        return v

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise PackageError(f"{self.where} has unknown fields {unknown}; known: {sorted(self.used)} "
                               "(written by a newer aknet_edge? upgrade aknet_edge, or rebuild the package)")


def _text(f: _Fields, name: str) -> str:
    v = f.raw(name, "")
    if not isinstance(v, str):
        raise f._bad(name, v, "a string")
    return v


def _sha_or_none(f: _Fields, name: str) -> Optional[str]:
    v = f.str(name, None, optional=True)
    if v is not None and not _is_hex(v):
        raise f._bad(name, v, "64 lowercase hex digits, or null")
    return v


def _numbers(f: _Fields, name: str, length: int, positive: bool = False) -> Tuple[float, ...]:
    values = f.list(name, length=length)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and (x > 0 or not positive)
               for x in values):
        raise f._bad(name, values, f"{length} {'positive ' if positive else ''}numbers")
    return tuple(float(x) for x in values)


# -- records -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, NumPy dtype name, shape (ints, or axis names where dynamic)."""

    name: str
    dtype: str
    shape: Tuple[Any, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "TensorSpec":
        f = _Fields(where, data)
        name, dtype = f.str("name"), f.str("dtype", choices=DTYPES)
        shape = f.list("shape")
        if not all((isinstance(d, int) and not isinstance(d, bool) and d >= 0) or (isinstance(d, str) and d)
                   for d in shape):
            raise f._bad("shape", shape, "a list of sizes (integers) or axis names (strings)")
        f.finish()
        return cls(name, dtype, tuple(shape))

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @property
    def static_shape(self) -> Tuple[int, ...]:
        """The shape after the leading (batch or rows) axis, which must be static."""
        rest = self.shape[1:]
        if not all(isinstance(d, int) for d in rest):
            raise PackageError(f"{self.name}: expected static sizes after the first axis, got {list(self.shape)}")
        return tuple(int(d) for d in rest)


@dataclass(frozen=True)
class GraphIO:
    """The inputs and outputs of one role's graph, in graph order."""

    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "GraphIO":
        f = _Fields(where, data)
        ins = tuple(TensorSpec.from_dict(t, f"{where}.inputs[{i}]") for i, t in enumerate(f.list("inputs")))
        outs = tuple(TensorSpec.from_dict(t, f"{where}.outputs[{i}]") for i, t in enumerate(f.list("outputs")))
        f.finish()
        if not ins or not outs:
            raise PackageError(f"{where}: expected at least one input and one output")
        return cls(ins, outs)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike) -> "GraphIO":
        """Read a graph's I/O (initializers excluded) without loading its weights."""
        import onnx

        g = onnx.load(str(path), load_external_data=False).graph

        def spec(v: Any) -> TensorSpec:
            t = v.type.tensor_type
            return TensorSpec(v.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                              tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim))

        inits = {i.name for i in g.initializer}
        return cls(tuple(spec(v) for v in g.input if v.name not in inits), tuple(spec(v) for v in g.output))

    def to_dict(self) -> Dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    @property
    def state_inputs(self) -> List[TensorSpec]:
        """The frame encoder's online-shift state inputs, in order (empty for other roles)."""
        return [t for t in self.inputs if graph_io.is_state_input(t.name)]


@dataclass(frozen=True)
class Preprocessing:
    """How frames become the model's input; the runtime refuses what it does not implement."""

    frames: int
    span_s: float
    size: Tuple[int, int]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    color: str = "RGB"
    sampling: str = SAMPLING
    layout: str = LAYOUT
    scale: float = SCALE

    @classmethod
    def from_clip(cls, clip: ClipSpec) -> "Preprocessing":
        return cls(clip.frames, clip.span_s, (clip.size, clip.size), tuple(clip.mean), tuple(clip.std), clip.color)

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest.preprocessing") -> "Preprocessing":
        f = _Fields(where, data)
        size = f.raw("size")
        if isinstance(size, int) and not isinstance(size, bool):
            size = [size, size]
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
            raise f._bad("size", size, "[height, width] in pixels")
        if size[0] != size[1]:
            raise f._bad("size", size, "a square input (height == width)")
        pre = cls(
            frames=f.int("frames", minimum=1),
            span_s=f.float("span_s", check=lambda v: v > 0, expected="a positive duration in seconds"),
            size=(int(size[0]), int(size[1])),
            mean=_numbers(f, "mean", 3),  # type: ignore[arg-type]
            std=_numbers(f, "std", 3, positive=True),  # type: ignore[arg-type]
            color=f.str("color", "RGB", choices=("RGB", "BGR")),
            sampling=f.str("sampling", SAMPLING, choices=(SAMPLING,)),
            layout=f.str("layout", LAYOUT, choices=(LAYOUT,)),
            scale=f.float("scale", SCALE, check=lambda v: abs(v - SCALE) < 1e-9, expected=f"1/255 ({SCALE!r})"),
        )
        f.finish()
        return pre

    def to_dict(self) -> Dict[str, Any]:
        return {"frames": self.frames, "sampling": self.sampling, "span_s": self.span_s, "size": list(self.size),
                "mean": list(self.mean), "std": list(self.std), "color": self.color, "layout": self.layout,
                "scale": self.scale}

    @property
    def clip_spec(self) -> ClipSpec:
        """The clip contract as the runtime, training and calibration share it."""
        return ClipSpec(self.frames, self.size[0], self.span_s, self.mean, self.std, self.color)


@dataclass(frozen=True)
class EngineInfo:
    """Where and how a TensorRT engine was built: an engine runs only on that TensorRT and GPU."""

    tensorrt_version: str
    gpu: str
    compute_capability: Optional[str] = None
    cache_key: Optional[str] = None
    calibration: Optional[str] = None  # "explicit" (Q/DQ graph) or "implicit" (TensorRT calibrator)
    calibration_cache: Optional[str] = None  # file in the package
    flags: Dict[str, Any] = field(default_factory=dict)
    plugins: Tuple["PluginLibrary", ...] = ()  # loaded (--plugin-lib) when the engine was built

    @classmethod
    def read(cls, f: _Fields) -> "EngineInfo":
        cache = f.str("calibration_cache", None, optional=True)
        if cache is not None and not _local_file(cache):
            raise f._bad("calibration_cache", cache, "a file name inside the package folder")
        plugins = tuple(PluginLibrary.from_dict(p, f"{f.where}.plugins[{i}]")
                        for i, p in enumerate(f.list("plugins", [])))
        return cls(f.str("tensorrt_version"), f.str("gpu"), f.str("compute_capability", None, optional=True),
                   f.str("cache_key", None, optional=True),
                   f.str("calibration", None, choices=("explicit", "implicit"), optional=True),
                   cache, dict(f.obj("flags", {})), plugins)

    def to_dict(self) -> Dict[str, Any]:
        out = {"tensorrt_version": self.tensorrt_version, "gpu": self.gpu,
               "compute_capability": self.compute_capability, "cache_key": self.cache_key,
               "calibration": self.calibration, "calibration_cache": self.calibration_cache, "flags": dict(self.flags)}
        if self.plugins:
            out["plugins"] = [p.to_dict() for p in self.plugins]
        return out


@dataclass(frozen=True)
class PluginLibrary:
    """A TensorRT plugin library an engine was built with: it must be loaded again before the engine deserializes.

    ``file`` is the library's file name (where it lives differs per device, so the path is not kept),
    ``sha256`` its content, ``creators`` the plugin creators it registered (``name/version``, namespace
    appended as ``@ns`` when set), so a missing one can be named.
    """

    file: str
    sha256: str
    creators: Tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "PluginLibrary":
        f = _Fields(where, data)
        file, sha = f.str("file"), f.str("sha256")
        if not _local_file(file):
            raise f._bad("file", file, "a library file name without folders, e.g. libmyplugin.so")
        if not _is_hex(sha):
            raise f._bad("sha256", sha, "64 lowercase hex digits")
        creators = f.list("creators", [])
        if not all(isinstance(c, str) and c for c in creators):
            raise f._bad("creators", creators, "a list of plugin creator names")
        f.finish()
        return cls(file, sha, tuple(creators))

    def to_dict(self) -> Dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "creators": list(self.creators)}


@dataclass(frozen=True)
class Variant:
    """One graph or engine file of the package: which role it plays, in which precision, and its hash."""

    file: str
    precision: str
    kind: str
    sha256: str
    role: str = graph_io.DEFAULT_ROLE
    engine: Optional[EngineInfo] = None  # TensorRT engines only
    # INT8 ONNX graphs only: how the weights are stored (calib_options.INT8_WEIGHT_FORMS) and the TensorRT
    # versions [since, until) whose engine build takes this graph (INT8_WEIGHTS_SERVE); None: every version
    weights: Optional[str] = None
    serves: Optional[Tuple[Tuple[int, int], Optional[Tuple[int, int]]]] = None

    def serves_version(self, version: Iterable[int]) -> bool:
        """Whether ``build --from`` on TensorRT ``version`` builds from this graph (always, when unrecorded)."""
        if self.serves is None:
            return True
        since, until = self.serves
        v = tuple(version)[:2]
        return since <= v and (until is None or v < until)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Variant":
        f = _Fields(where, data)
        file = f.str("file")
        if not _local_file(file):
            raise f._bad("file", file, "a file name inside the package folder")
        sha = f.str("sha256")
        if not _is_hex(sha):
            raise f._bad("sha256", sha, "64 lowercase hex digits")
        precision, kind = f.str("precision", choices=PRECISIONS), f.str("kind", choices=KINDS)
        role = f.str("role", graph_io.DEFAULT_ROLE, choices=graph_io.ROLES)
        engine = EngineInfo.read(f) if kind == "tensorrt" else None
        weights = f.str("weights", None, choices=INT8_WEIGHT_FORMS, optional=True)
        serves = _read_serves(f)
        if (weights is not None or serves is not None) and (kind, precision) != ("onnx", "int8"):
            raise f._bad("weights" if weights is not None else "tensorrt", weights or f.raw("tensorrt"),
                         "no value: only INT8 ONNX graphs record a weight form and the TensorRT versions they serve")
        v = cls(file, precision, kind, sha, role, engine, weights, serves)
        f.finish()
        return v

    def to_dict(self) -> Dict[str, Any]:
        out = {"file": self.file, "precision": self.precision, "kind": self.kind, "sha256": self.sha256,
               "role": self.role}
        if self.engine is not None:
            out.update(self.engine.to_dict())
        if self.weights is not None:
            out["weights"] = self.weights
        if self.serves is not None:
            out["tensorrt"] = {"since": _version_text(self.serves[0]), "until": _version_text(self.serves[1])}
        return out

    @classmethod
    def of_file(cls, root: Path, file: str, precision: str, kind: str = "onnx", role: str = graph_io.CLIP,
                engine: Optional[EngineInfo] = None, weights: Optional[str] = None) -> "Variant":
        """A record for a file already written into ``root`` (its SHA-256 taken now).

        ``weights`` (INT8 graphs): the form, which also records the TensorRT versions it serves.
        """
        serves = INT8_WEIGHTS_SERVE[weights] if weights is not None else None
        return cls(file, precision, kind, sha256_file(Path(root) / file), role, engine, weights, serves)


def _read_serves(f: _Fields) -> Optional[Tuple[Tuple[int, int], Optional[Tuple[int, int]]]]:
    """``"tensorrt": {"since": "8.5", "until": "10.0"}`` (until null: no upper bound), or None when absent."""
    raw = f.obj("tensorrt", None, optional=True)
    if raw is None:
        return None
    where = f"{f.where}.tensorrt"
    g = _Fields(where, raw)
    try:
        since = parse_major_minor(g.str("since"))
        until_text = g.str("until", None, optional=True)
        until = parse_major_minor(until_text) if until_text is not None else None
    except ValueError as exc:
        raise PackageError(f"{where}: {exc}; rebuild the package with python -m aknet_edge.build") from None
    g.finish()
    if until is not None and not since < until:
        raise f._bad("tensorrt", raw, "since < until, e.g. {\"since\": \"8.5\", \"until\": \"10.0\"}")
    return since, until


@dataclass(frozen=True)
class Calibration:
    """How the INT8 variant was calibrated."""

    source: str
    clips: int
    skipped: int
    method: str
    seed: int
    percentile: Optional[float] = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest.calibration") -> "Calibration":
        f = _Fields(where, data)
        method = f.str("method", choices=CALIB_METHODS)
        c = cls(f.str("source"), f.int("clips", minimum=1), f.int("skipped", minimum=0), method,
                f.int("seed"), f.float("percentile", None, optional=True))
        if c.percentile is not None:
            try:
                check_percentile(c.percentile)
            except ConfigError as exc:
                raise f._bad("percentile", c.percentile, str(exc).split(": ", 1)[-1]) from None
        f.finish()
        return c

    def to_dict(self) -> Dict[str, Any]:
        out = {"source": self.source, "clips": self.clips, "skipped": self.skipped, "method": self.method,
               "seed": self.seed}
        if self.percentile is not None:
            out["percentile"] = self.percentile
        return out


@dataclass(frozen=True)
class Accuracy:
    """One variant's accuracy on the build's held-out clips (ONNX Runtime on the CPU)."""

    precision: str
    file: str
    top1: float
    agreement: float  # top-1 agreement with FP32
    keypoint_iou: float  # overlap of the kept keypoint cells with FP32's
    clips: int
    calib_method: Optional[str] = None
    weights: Optional[str] = None  # INT8: which weight form was measured (calib_options.INT8_WEIGHT_FORMS)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Accuracy":
        f = _Fields(where, data)
        frac = dict(check=lambda v: 0.0 <= v <= 1.0, expected="a fraction in [0, 1]")
        file = f.str("file")
        if not _local_file(file):
            raise f._bad("file", file, "a file name")
        a = cls(f.str("precision", choices=PRECISIONS), file, f.float("top1", **frac), f.float("agreement", **frac),
                f.float("keypoint_iou", **frac), f.int("clips", minimum=0),
                f.str("calib_method", None, choices=CALIB_METHODS, optional=True),
                f.str("weights", None, choices=INT8_WEIGHT_FORMS, optional=True))
        f.finish()
        return a

    def to_dict(self) -> Dict[str, Any]:
        out = {"precision": self.precision, "file": self.file, "top1": self.top1, "agreement": self.agreement,
               "keypoint_iou": self.keypoint_iou, "clips": self.clips, "calib_method": self.calib_method}
        if self.weights is not None:
            out["weights"] = self.weights
        return out


@dataclass(frozen=True)
class BuildRecord:
    """The engine-shaping build settings (the batch profile an engine accepts, among them)."""

    batch: Tuple[int, int, int] = (1, 1, 4)
    workspace_mb: int = 1024
    dla: Optional[int] = None
    target: str = "auto"
    max_streams: Optional[int] = None  # cameras one engine call batches (--max-streams); None: the batch MAX

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest.build") -> "BuildRecord":
        f = _Fields(where, data)
        batch = f.list("batch", length=3)
        if not (all(isinstance(b, int) and not isinstance(b, bool) for b in batch) and 1 <= batch[0] <= batch[1] <= batch[2]):
            raise f._bad("batch", batch, "[MIN, OPT, MAX] with 1 <= MIN <= OPT <= MAX")
        b = cls(tuple(batch), f.int("workspace_mb", minimum=1), f.int("dla", None, minimum=0, optional=True),
                f.str("target", choices=BUILD_TARGETS), f.int("max_streams", None, minimum=1, optional=True))
        f.finish()
        return b

    def to_dict(self) -> Dict[str, Any]:
        out = {"batch": list(self.batch), "workspace_mb": self.workspace_mb, "dla": self.dla, "target": self.target}
        if self.max_streams is not None:  # written only when set: packages of 0.2.0/0.3.0 round-trip unchanged
            out["max_streams"] = self.max_streams
        return out


@dataclass(frozen=True)
class Manifest:
    """Everything a package declares; ``from_dict`` validates it, ``to_dict`` is what :func:`write` stores."""

    config: ModelConfig
    labels: Tuple[str, ...]
    preprocessing: Preprocessing
    io: Dict[str, GraphIO]
    variants: Tuple[Variant, ...]
    created_by: str = "unknown"
    command: str = ""
    source: str = ""
    source_sha256: Optional[str] = None
    calibration: Optional[Calibration] = None
    accuracy: Tuple[Accuracy, ...] = ()
    lowering: Optional[str] = None
    build: BuildRecord = field(default_factory=BuildRecord)
    # precision -> module paths its graph keeps in FP32 (model.float_modules), so a weakly typed TensorRT build on
    # the device (no torch) pins those layers to FP32 (calibration/islands.py); empty in 0.2.0 packages
    float_modules: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        f = _Fields("manifest", data)
        schema = f.raw("schema_version")
        if schema != SCHEMA_VERSION:
            raise PackageError(f"manifest.schema_version = {schema!r}: this aknet_edge reads version "
                               f"{SCHEMA_VERSION}; rebuild the package with this aknet_edge, or use the release "
                               "that built it")
        try:
            config = ModelConfig.from_dict(f.obj("config"))
        except ConfigError as exc:
            raise PackageError(f"manifest.config: {exc}") from None
        labels = f.list("labels")
        if not all(isinstance(x, str) and x for x in labels):
            raise f._bad("labels", labels, "a list of non-empty class names")
        io_raw = f.obj("io")
        io = {role: GraphIO.from_dict(spec, f"manifest.io.{role}") for role, spec in io_raw.items()}
        variants = tuple(Variant.from_dict(v, f"manifest.variants[{i}]") for i, v in enumerate(f.list("variants")))
        cal = f.obj("calibration", None, optional=True)
        m = cls(
            config=config, labels=tuple(labels), preprocessing=Preprocessing.from_dict(f.obj("preprocessing")), io=io,
            variants=variants, created_by=f.str("created_by", "unknown"), command=_text(f, "command"),
            source=_text(f, "source"), source_sha256=_sha_or_none(f, "source_sha256"),
            calibration=Calibration.from_dict(cal) if cal is not None else None,
            accuracy=tuple(Accuracy.from_dict(a, f"manifest.accuracy[{i}]") for i, a in enumerate(f.list("accuracy", []))),
            lowering=f.str("lowering", None, optional=True),
            build=BuildRecord.from_dict(f.obj("build")) if "build" in data else BuildRecord(),
            float_modules=_read_float_modules(f),
            schema_version=schema,
        )
        f.raw("engine", None)  # derived from the variants (kept for 0.2.0 readers), not read back
        f.finish()
        return m

    def _validate(self) -> None:
        """Cross-field checks: the records agree with each other and with the names the runtime feeds."""
        if len(self.labels) != self.config.num_classes:
            raise PackageError(f"manifest.labels has {len(self.labels)} names but manifest.config.num_classes is "
                               f"{self.config.num_classes}; rebuild the package")
        if tuple(self.labels) != self.config.class_names:
            raise PackageError(f"manifest.labels {list(self.labels)} differ from manifest.config.labels "
                               f"{list(self.config.class_names)}; rebuild the package")
        try:
            spec = self.preprocessing.clip_spec
        except ConfigError as exc:
            raise PackageError(f"manifest.preprocessing: {exc}; rebuild the package") from None
        if spec != self.config.clip:
            raise PackageError(f"manifest.preprocessing {self.preprocessing.to_dict()} disagrees with "
                               f"manifest.config.clip {self.config.clip}; rebuild the package")
        if graph_io.CLIP not in self.io:
            raise PackageError("manifest.io.clip is missing: every package carries the whole-clip graph")
        for role, gio in self.io.items():
            if role not in graph_io.ROLES:
                raise PackageError(f"manifest.io.{role}: unknown role; expected {', '.join(graph_io.ROLES)}")
            _check_role_io(role, gio, self)
        seen: Dict[Tuple[str, str, str, Optional[str]], str] = {}
        files = set()
        for i, v in enumerate(self.variants):
            where = f"manifest.variants[{i}] ({v.file})"
            if v.role not in self.io:
                raise PackageError(f"{where} plays role {v.role!r}, which manifest.io lacks")
            if v.file in files:
                raise PackageError(f"{where} is listed twice")
            key = (v.kind, v.precision, v.role, v.weights)
            if key in seen:
                form = f" ({v.weights} weights)" if v.weights else ""
                raise PackageError(f"{where} is a second {v.kind} {v.precision} {v.role} variant{form} (after "
                                   f"{seen[key]}): the choice would be ambiguous; rebuild the package")
            if (v.kind == "tensorrt") != (v.engine is not None):
                raise PackageError(f"{where}: a tensorrt variant carries its engine's TensorRT version and GPU, "
                                   "and only a tensorrt variant does")
            seen[key], files = v.file, files | {v.file}
        if not any(v.role == graph_io.CLIP for v in self.variants):
            raise PackageError("manifest.variants has no whole-clip graph (role 'clip'); rebuild the package")

    def to_dict(self) -> Dict[str, Any]:
        engine = self.engine
        return {
            "schema_version": self.schema_version,
            "created_by": self.created_by,
            "command": self.command,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "config": self.config.to_dict(),
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "io": {role: spec.to_dict() for role, spec in self.io.items()},
            "variants": [v.to_dict() for v in self.variants],
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "accuracy": [a.to_dict() for a in self.accuracy],
            "lowering": self.lowering,
            "build": self.build.to_dict(),
            **({"float_modules": {k: list(v) for k, v in self.float_modules.items()}} if self.float_modules else {}),
            # schema-1 readers (0.2.0) also find the whole-clip engine here
            "engine": ({"file": engine.file, "precision": engine.precision, **engine.engine.to_dict()}
                       if engine is not None and engine.engine is not None else None),
        }

    @property
    def engine(self) -> Optional[Variant]:
        """The whole-clip TensorRT engine, if one was built."""
        return next((v for v in self.variants if v.kind == "tensorrt" and v.role == graph_io.CLIP), None)

    def int8_graph_for(self, version: Iterable[int]) -> Optional[Variant]:
        """The whole-clip INT8 ONNX graph an engine build on TensorRT ``version`` uses, or None if none serves it.

        Packages that record no weight form (0.2.0) have one INT8 graph, which serves every version.
        """
        graphs = [v for v in self.variants if (v.kind, v.precision, v.role) == ("onnx", "int8", graph_io.CLIP)]
        return next((v for v in graphs if v.serves is not None and v.serves_version(version)),
                    next((v for v in graphs if v.serves is None), None))

    def replace(self, **changes: Any) -> "Manifest":
        import dataclasses

        return dataclasses.replace(self, **changes)


def _read_float_modules(f: _Fields) -> Dict[str, Tuple[str, ...]]:
    raw = f.obj("float_modules", {})
    out: Dict[str, Tuple[str, ...]] = {}
    for precision, paths in raw.items():
        if precision not in FLOAT_MODULE_PRECISIONS:
            raise f._bad("float_modules", raw, f"keys among {', '.join(FLOAT_MODULE_PRECISIONS)}")
        if not isinstance(paths, list) or not all(isinstance(p, str) and p and "/" not in p for p in paths):
            raise f._bad("float_modules", raw, "lists of module paths, e.g. {\"fp16\": [\"scorer\"]}")
        out[precision] = tuple(paths)
    return out


def write(root: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``manifest.json`` and ``labels.txt`` into ``root`` (atomically): the one writer of every build path.

    What is written is first read back through :meth:`Manifest.from_dict`, so a build can never
    save a manifest the runtime would refuse.
    """
    root = Path(root)
    Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    for v in manifest.variants:
        if not (root / v.file).is_file():
            raise PackageError(f"cannot write the manifest: {root / v.file} does not exist")
    atomic_write_text(root / LABELS_FILE, "\n".join(manifest.labels) + "\n")
    return atomic_write_text(root / MANIFEST, json.dumps(manifest.to_dict(), indent=2))


def _check_role_io(role: str, gio: GraphIO, m: Manifest) -> None:
    """A role's recorded I/O carries the names the runtime feeds and reads, and shapes that fit the contract."""
    where = f"manifest.io.{role}"
    ins, outs = gio.input_names, gio.output_names
    if role == graph_io.FRAME_ENCODER:
        states = [t.name for t in gio.state_inputs]
        want_in = [graph_io.FRAME_INPUT, *states]
        if ins == want_in + [graph_io.PARENT_ROWS]:  # the optional parent-row input (batched exact mode)
            want_in = ins
        want_out = [graph_io.FEATURES, *(graph_io.state_output(n) for n in states)]
        if ins != want_in or sorted(outs) != sorted(want_out):
            raise PackageError(f"{where}: inputs {ins} and outputs {outs}; expected inputs {want_in} and outputs "
                               f"{want_out} (aknet_edge.graph_io); rebuild the package")
        return
    want_in = [graph_io.CLIP_INPUT if role == graph_io.CLIP else graph_io.FEATURES]
    if ins != want_in or not outs or outs != list(graph_io.CLIP_OUTPUTS[: len(outs)]):
        raise PackageError(f"{where}: inputs {ins} and outputs {outs}; expected inputs {want_in} and outputs "
                           f"{list(graph_io.CLIP_OUTPUTS)} or their first (aknet_edge.graph_io); rebuild the package")
    pre, logits = m.preprocessing, gio.outputs[0]
    if role == graph_io.CLIP and list(gio.inputs[0].shape[1:]) != [pre.frames, 3, *pre.size]:
        raise PackageError(f"{where}.inputs[0].shape {list(gio.inputs[0].shape)} does not fit the preprocessing "
                           f"(batch, {pre.frames}, 3, {pre.size[0]}, {pre.size[1]}); rebuild the package")
    if len(logits.shape) != 2 or logits.shape[1] != m.config.num_classes:
        raise PackageError(f"{where}: {logits.name} has shape {list(logits.shape)}; expected (batch, "
                           f"{m.config.num_classes}) for the package's classes; rebuild the package")


# -- the package on disk -------------------------------------------------------------------------

@dataclass
class Package:
    """A verified package on disk, with the accessors the runtime needs."""

    root: Path
    manifest: Manifest

    @property
    def labels(self) -> List[str]:
        return list(self.manifest.labels)

    @property
    def variants(self) -> List[Variant]:
        return list(self.manifest.variants)

    @property
    def config(self) -> ModelConfig:
        return self.manifest.config

    @property
    def clip_spec(self) -> ClipSpec:
        return self.manifest.preprocessing.clip_spec

    def io(self, role: str = graph_io.CLIP) -> Optional[GraphIO]:
        """A role's graph I/O, or None when the package has no graph for that role."""
        return self.manifest.io.get(role)

    def has_kind(self, kind: str) -> bool:
        return any(v.kind == kind for v in self.manifest.variants)

    def precisions(self, kind: str, role: str = graph_io.CLIP) -> List[str]:
        return sorted({v.precision for v in self.manifest.variants if v.kind == kind and v.role == role})

    def choose_precision(self, kind: str, precision: str = AUTO) -> str:
        """The precision to run for a kind: the one asked for, or for ``auto`` the first of :data:`PREFERENCE`."""
        if kind not in KINDS:
            raise ConfigError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
        have = self.precisions(kind)
        if precision != AUTO:
            if precision not in PRECISIONS:
                raise ConfigError(f"precision={precision!r}: expected {AUTO} or one of {', '.join(PRECISIONS)}")
            if precision not in have:
                raise PackageError(f"{self.root} has no {kind} variant in {precision}; it has {have}")
            return precision
        for p in PREFERENCE[kind]:
            if p in have:
                return p
        raise PackageError(f"{self.root} has no {kind} model; it has "
                           f"{sorted({v.kind + ':' + v.precision for v in self.manifest.variants})}")

    def _ranked(self) -> List[Variant]:
        """The variants, default INT8 weight form before the others (ONNX Runtime and the runtime take the first)."""
        return sorted(self.manifest.variants, key=lambda v: v.weights not in (None, DEFAULT_INT8_WEIGHTS))

    def variant(self, precision: str, kind: str = "onnx", role: str = graph_io.CLIP) -> Variant:
        for v in self._ranked():
            if v.precision == precision and v.kind == kind and v.role == role:
                return v
        have = ", ".join(f"{v.kind}:{v.precision}:{v.role}" for v in self.manifest.variants)
        raise PackageError(f"{self.root} has no {kind} {role} variant in {precision}; it has {have}")

    def roles(self, kind: str, precision: str) -> Dict[str, Variant]:
        """Every role's variant of one kind and precision (the split graphs exist in FP32 only)."""
        out: Dict[str, Variant] = {}
        for v in self._ranked():
            if v.kind == kind and v.precision == precision:
                out.setdefault(v.role, v)
        return out

    def path(self, variant: Variant) -> Path:
        return self.root / variant.file

    def check_engine(self, variant: Variant, tensorrt_version: str, gpu: str) -> None:
        """Refuse an engine built for another TensorRT or GPU, saying how to rebuild."""
        info = variant.engine
        built_v, built_gpu = (info.tensorrt_version, info.gpu) if info else ("?", "?")
        if built_v.split(".")[:2] != tensorrt_version.split(".")[:2] or built_gpu != gpu:
            raise PackageError(
                f"engine built for TensorRT {built_v} on {built_gpu}; this is {tensorrt_version} on {gpu}: rebuild "
                f"with python -m aknet_edge.build --from {self.root} --out <new dir>"
            )


def read_manifest(root: str | os.PathLike) -> Manifest:
    """The validated manifest of a package folder, without checking its files."""
    mpath = Path(root) / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{root} is not a model package (no {MANIFEST}); build one with python -m aknet_edge.build")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{mpath} is unreadable or not JSON ({exc})") from None
    try:
        return Manifest.from_dict(data)
    except PackageError as exc:
        raise PackageError(f"{mpath}: {exc}") from None


def load(root: str | os.PathLike, verify: bool = True) -> Package:
    """Read and validate a package: schema, every field, files present, SHA-256 of every variant."""
    root = Path(root)
    manifest = read_manifest(root)
    if verify:
        for v in manifest.variants:
            p = root / v.file
            if not p.is_file():
                raise PackageError(f"{root}: variant file {v.file} is missing; rebuild the package")
            if sha256_file(p) != v.sha256:
                raise PackageError(f"{root}: {v.file} does not match its SHA-256 in the manifest (corrupted or "
                                   "edited); rebuild the package")
            cache = v.engine.calibration_cache if v.engine else None
            if cache is not None and not (root / cache).is_file():
                raise PackageError(f"{root}: the engine's calibration cache {cache} is missing; rebuild the package")
    return Package(root, manifest)
