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
from typing import Dict, Optional, Sequence, Tuple

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
    "int64_tensors": Feature("INT64 tensors", since=(10, 0)),  # earlier versions cast them to INT32
    "unsorted_topk": Feature("TopK with sorted=0", until=(10, 0)),
    "scatternd_reduction": Feature("ScatterND reduction", since=(10, 0)),  # earlier: silently ignored
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
    return (entry.since is None or version >= entry.since) and (entry.until is None or version < entry.until)


def label(version: Sequence[int]) -> str:
    """``(10, 3)`` -> ``"TensorRT 10.3"``."""
    return "TensorRT " + ".".join(str(v) for v in version)
