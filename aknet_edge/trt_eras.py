"""The TensorRT versions aknet_edge claims, and what changes between them, written once.

Why one table: two places decide by TensorRT version. ``export/targets.py``
says what each target's ONNX parser accepts (opset, function bodies, TopK,
INT64), and ``runtime/trt/`` says which builder and runtime calls exist
(strong typing, precision flags, implicit calibration). Before this module
each kept its own version comparisons, so a new release had to be taught to
both and the two could disagree. Both now read the rows below.

Plain data and comparisons only: no torch, numpy, onnx or tensorrt, so the
export side, the runtime on a Jetson and the static tests can all import it.

Versions are ``(major, minor)`` tuples; a full ``(major, minor, patch)``
compares correctly against them (``(10, 7, 0) >= (10, 7)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

MajorMinor = Tuple[int, int]


@dataclass(frozen=True)
class ApiEra:
    """A stretch of versions with one shape of the Python API.

    ``number`` is the suffix that era-only helpers in runtime/trt/ carry
    (``_trt8``, ``_trt10``, ``_trt11``); tests/test_trt_names.py checks each
    such helper against that era's symbol list.
    """

    number: int
    since: MajorMinor
    until: MajorMinor  # first version of the next era (exclusive)
    summary: str


@dataclass(frozen=True)
class Feature:
    """A capability, and the supported versions that have it.

    ``title`` is how error messages name it; ``instead`` is what to do on a
    version where it was removed.
    """

    title: str
    since: Optional[MajorMinor] = None  # None: in every supported version
    until: Optional[MajorMinor] = None  # first version without it; None: still there
    instead: str = ""
    gaps: Tuple[Tuple[MajorMinor, MajorMinor], ...] = ()  # [from, to) stretches inside since..until without it


@dataclass(frozen=True)
class Release:
    """A release line we claim, test against and export for."""

    target: str  # the export target's name (python -m aknet_edge.export --target)
    version: MajorMinor
    max_opset: int  # the newest ONNX opset we export for it
    why: str


API_ERAS: Tuple[ApiEra, ...] = (
    ApiEra(8, (8, 5), (10, 0), "8.5 to 9.x: EXPLICIT_BATCH, FP16/INT8 builder flags, binding API still present"),
    ApiEra(10, (10, 0), (11, 0), "binding API, build_engine and max_workspace_size removed; EXPLICIT_BATCH ignored"),
    ApiEra(11, (11, 0), (12, 0), "FP16/INT8 builder flags and implicit calibration removed; always strongly typed"),
)
SUPPORTED_SINCE: MajorMinor = API_ERAS[0].since
SUPPORTED_UNTIL: MajorMinor = API_ERAS[-1].until

FEATURES: Dict[str, Feature] = {
    # Builder and runtime API (runtime/trt/).
    "explicit_batch_required": Feature("the EXPLICIT_BATCH network flag", until=(10, 0)),
    "strongly_typed": Feature("strongly typed networks", since=(9, 0)),
    "weakly_typed": Feature("weakly typed networks (BuilderFlag.FP16/INT8)", until=(11, 0),
                            instead="put the precision in the ONNX (an FP16 or a Q/DQ graph)"),
    "implicit_calibration": Feature("implicit INT8 calibration", until=(11, 0),
                                    instead="quantize the ONNX to Q/DQ (explicit quantization) instead"),
    "version_compatible": Feature("version-compatible engines", since=(8, 6)),
    "parser_error_node_names": Feature("node names in ONNX parser errors", since=(10, 0)),
    # ONNX parser (export/targets.py).
    "onnx_functions": Feature("model-local ONNX functions", since=(9, 0)),  # 8.x ignores them: plugin or inline
    "plugin_before_function": Feature("a plugin taking precedence over a function body", since=(10, 7)),
    "runtime_topk_k": Feature("a TopK K computed at run time", since=(8, 6)),
    "integer_topk": Feature("TopK on an integer tensor", since=(8, 6)),  # 8.6-9.x cast INT32 to FP32 first
    "int64_tensors": Feature("INT64 tensors", since=(10, 0)),  # earlier versions cast them to INT32
    # 8.x and 9.x never read a scatter's `reduction` (wrong results); 10.x honours ScatterElements' (plugin)
    "scatter_reduction_read": Feature("a scatter's reduction attribute read, not ignored", since=(10, 0)),
    # 10.0-10.8 reject any ScatterND `reduction` attribute, even "none" (10.9 changelog: fixed)
    "scatternd_reduction_attribute": Feature("a ScatterND reduction attribute", gaps=(((10, 0), (10, 9)),)),
    "cumulative_layer": Feature("a native CumSum layer", since=(10, 8)),  # before: an ILoop, axis an initializer
    # 9.0-10.7 skip a function input whose name an outer tensor already has: the body reads the outer tensor
    "function_input_scoping": Feature("function inputs named like an outer tensor", since=(10, 8)),
    "optional_qdq_zero_point": Feature("Q/DQ without a zero-point input", since=(9, 0)),
    "onnx_default_qdq_axis": Feature("ONNX's default Q/DQ axis (1)", since=(11, 0)),  # before: 0 when absent
    "dla": Feature("DLA cores", gaps=(((11, 0), (11, 4)),),
                   instead="build for the GPU, or use TensorRT 10.x or 11.4+ (DLA is back on AGX Orin in 11.4.1)"),
}

RELEASES: Tuple[Release, ...] = (
    Release("tensorrt-8.5", (8, 5), 17, "JetPack 5.1"),
    Release("tensorrt-8.6", (8, 6), 17, "JetPack 6.0"),
    Release("tensorrt-10.3", (10, 3), 20, "JetPack 6.1/6.2"),
    # 10.7+ consult a plugin before a function body; opset kept conservative at 20
    Release("tensorrt-10", (10, 16), 20, "newest 10.x on desktop"),
    Release("tensorrt-11", (11, 0), 20, "11.x: strongly typed only"),
)

TOPK_MAX_K = 3840  # TensorRT's TopK limit, the same in every supported version


def is_supported(version: Sequence[int]) -> bool:
    """Whether ``version`` falls in one of :data:`API_ERAS`."""
    return SUPPORTED_SINCE <= tuple(version) < SUPPORTED_UNTIL


def api_era(version: Sequence[int]) -> int:
    """The number of the API era ``version`` belongs to (8, 10 or 11); the last one beyond the table."""
    version = tuple(version)
    for era in API_ERAS:
        if version < era.until:
            return era.number
    return API_ERAS[-1].number


def available(feature: str, version: Sequence[int]) -> bool:
    """Whether TensorRT ``version`` has ``feature`` (a key of :data:`FEATURES`)."""
    entry = FEATURES[feature]
    version = tuple(version)
    if any(start <= version < end for start, end in entry.gaps):
        return False
    return (entry.since is None or version >= entry.since) and (entry.until is None or version < entry.until)


def version_range(feature: str, present: bool = True) -> str:
    """Where ``feature`` is present (or absent) among the supported versions, e.g. ``"8.x, 10.9+"``."""
    return versions_where(lambda v: available(feature, v) is present)


def versions_where(holds: Callable[[MajorMinor], bool]) -> str:
    """The supported versions where ``holds(version)`` is true, as text (``"9.0-10.7"``, ``"10.8+"``, ``"none"``).

    Evaluated at every boundary of :data:`FEATURES` (nothing changes between two
    boundaries), so tables and messages take their ranges from the table, not from prose.
    """
    cuts = {SUPPORTED_SINCE, SUPPORTED_UNTIL}
    for entry in FEATURES.values():
        cuts.update(b for b in (entry.since, entry.until) if b is not None)
        cuts.update(b for gap in entry.gaps for b in gap)
    ordered = sorted(c for c in cuts if SUPPORTED_SINCE <= c <= SUPPORTED_UNTIL)
    merged: List[Tuple[MajorMinor, MajorMinor]] = []
    for a, b in zip(ordered, ordered[1:]):
        if not holds(a):
            continue
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return ", ".join(_span(a, b) for a, b in merged) or "none"


def _span(start: MajorMinor, end: MajorMinor) -> str:
    first = f"{start[0]}.{start[1]}"
    if end == SUPPORTED_UNTIL:
        return f"{first}+"
    if end[1] == 0:  # up to the end of the previous major
        if start[0] == end[0] - 1 and start == SUPPORTED_SINCE:
            return f"{start[0]}.x"
        return f"{first}-{end[0] - 1}.x"
    last = f"{end[0]}.{end[1] - 1}"
    return first if first == last else f"{first}-{last}"


def label(version: Sequence[int]) -> str:
    """``(10, 3)`` -> ``"TensorRT 10.3"``."""
    return "TensorRT " + ".".join(str(v) for v in version)
