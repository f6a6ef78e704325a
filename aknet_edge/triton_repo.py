"""A Triton Inference Server model repository from a model package.

Why: past one machine, the model goes behind Triton (NVIDIA's serving engine; DeepStream's ``nvinferserver``
hands inference to it too) and capture stays at the edge. This module writes the repository from a package
(the one contract, :mod:`aknet_edge.package`), torch-free, so ``python -m aknet_edge.build --from PACKAGE
--triton-repo DIR`` runs on the GPU server itself:

* ``aknet_clip``: the package's whole-clip graph, stateless, under Triton's dynamic batcher; ``backend:
  "onnxruntime"``, or ``platform: "tensorrt_plan"`` with the package's engine where one was built (an engine
  runs only on the TensorRT and GPU it was built for: build it with the server's TensorRT). Names, types and
  dims from the manifest; ``max_batch_size`` is the build's batch profile maximum.
* ``aknet_stream``: streaming by camera. One ONNX graph per request step, composed here from the package's
  ``frame_encoder`` and ``clip_head`` graphs: one uint8 frame (S x S x 3, already resized, in the colour order
  the repository declares) -> the package's preprocessing -> the frame encoder with its shift state -> a ring
  of the last T frame features and a step counter -> the clip head. Under the sequence batcher (Oldest
  strategy, START/READY/CORRID controls) the shift state, the ring and the counter are implicit state, so
  each camera's state (a sequence, the camera as correlation id) lives on the server, and a request is a
  37.6 kB frame instead of a 1.2 MB float clip. This is the carried-state incremental mode (one encoder chain
  per camera, as :class:`~aknet_edge.runtime.window.IncrementalEncoder` with ``exact=False``).

Exact incremental mode does not fit this graph: a window equal to the whole-clip graph needs, besides the
carried chain, up to L fresh chains per camera whose rows the encoder forks from row 0 of its input. With
several cameras batched in one request that row 0 belongs to another camera, so a batched graph would need a
parent-row index per row (a change to the encoder graph). At ``max_batch_size`` 0 (one camera per execution)
it could fit: states padded to L + 1 rows with a mask of live chains, and a second ring holding the fresh
chains' first L features; not built here.

The labels and the package's manifest travel with each model (``labels.txt``, ``manifest.json``), and the
config's ``parameters`` carry what a client checks before the first result (labels, preprocessing, input
colour, the model's identity -- :func:`~aknet_edge.triton_contract.model_sha256` -- and the manifest's SHA-256):
:mod:`aknet_edge.runtime.triton_client`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import graph_io
from . import package as pk
from .errors import AknetError, ConfigError, DependencyError
from .io_utils import os_error_reason
from .triton_contract import (CLIP_MODEL, COLORS, CORRID, CORRID_OUTPUT, COUNT_STATE, IMAGE_INPUT,  # noqa: F401
                              LABELS_FILE, MANIFEST_FILE, MARKER, MODEL_VERSION, PARAM_COLOR, PARAM_LABELS,
                              PARAM_MANIFEST, PARAM_MODE, PARAM_MODEL, PARAM_PACKAGE, PARAM_PREPROCESSING, READY,
                              RING_STATE, START, STEPS_OUTPUT, STREAM_MODE, STREAM_MODEL, TRITON_DTYPES,
                              mode_unavailable, model_sha256)

log = logging.getLogger(__name__)

# the repository contract (names the client reads too) is ground: aknet_edge.triton_contract, re-exported above
CLIP_KINDS = ("auto", "onnx", "tensorrt")
INSTANCE_KINDS = ("auto", "cpu", "gpu")


class TritonRepoError(AknetError, ValueError):
    """The package cannot become a Triton repository (missing graphs, graphs that do not compose)."""


@dataclass(frozen=True)
class TritonRepoOptions:
    """What the repository serves and how Triton schedules it. Every field is checked in ``__post_init__``."""

    precision: str = pk.AUTO  # the ONNX precision of aknet_clip (auto: the package's rule, FP32 first)
    clip_kind: str = "auto"  # auto: the package's TensorRT engine where one was built, else ONNX
    stream: bool = True  # write aknet_stream (needs the package's frame_encoder and clip_head)
    # the colour order of the frames aknet_stream takes: OpenCV cameras and decoders deliver BGR; the client
    # reorders frames of the other order (a 112 x 112 copy), so this is about which side pays for it
    stream_color: str = "BGR"
    stream_max_batch: int = 8  # cameras the sequence batcher runs in one execution
    max_sequences: int = 64  # sequences (cameras) the Oldest strategy keeps as batching candidates
    # a camera silent this long loses its state on the server (the client restarts its sequence); longer than
    # a reconnect the recogniser rides out without restarting its window (span_s) and short enough to free the
    # slots of cameras that went away
    idle_s: float = 10.0
    queue_delay_us: int = 0  # how long the batchers wait for more requests before running a smaller batch
    instance_kind: str = "auto"  # auto: Triton's default (one instance per GPU, else CPU)
    instances: int = 1
    threads: Optional[int] = None  # ONNX Runtime intra-op threads per instance (None: the backend's default)

    def __post_init__(self) -> None:
        if self.precision != pk.AUTO and self.precision not in pk.PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: expected {pk.AUTO} or one of {', '.join(pk.PRECISIONS)}")
        for name, value, choices in (("clip_kind", self.clip_kind, CLIP_KINDS),
                                     ("stream_color", self.stream_color, COLORS),
                                     ("instance_kind", self.instance_kind, INSTANCE_KINDS)):
            if value not in choices:
                raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        for name, low in (("stream_max_batch", 1), ("max_sequences", 1), ("queue_delay_us", 0), ("instances", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name}={v!r}: expected a whole number >= {low}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"threads={self.threads!r}: expected a whole number >= 1 or None")
        if isinstance(self.idle_s, bool) or not isinstance(self.idle_s, (int, float)) or not self.idle_s > 0 \
                or self.idle_s != self.idle_s or self.idle_s == float("inf"):
            raise ConfigError(f"idle_s={self.idle_s!r}: expected a finite number of seconds > 0")


@dataclass
class TritonRepo:
    """What :func:`write_triton_repo` wrote."""

    root: Path
    models: Dict[str, Path] = field(default_factory=dict)  # model name -> its folder
    clip_backend: str = ""  # "onnxruntime" or "tensorrt_plan"
    notes: List[str] = field(default_factory=list)  # what was left out, and why


# -- the streaming graph ---------------------------------------------------------------------------------------

def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is a runtime dependency
        raise DependencyError("writing a Triton repository needs onnx: pip install onnx") from exc
    return onnx


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@dataclass(frozen=True)
class StreamSpec:
    """The shapes aknet_stream is built from (per camera, without the batch axis)."""

    frames: int
    size: int
    features: Tuple[int, ...]  # (C, h, w)
    states: Tuple[Tuple[str, Tuple[int, ...]], ...]  # (name, shape) of each shift state
    outputs: Tuple[Tuple[str, str, Tuple[int, ...]], ...]  # the head's (name, dtype, shape)

    @classmethod
    def of(cls, package: pk.Package) -> "StreamSpec":
        enc, head = package.io(graph_io.FRAME_ENCODER), package.io(graph_io.CLIP_HEAD)
        if enc is None or head is None:
            raise TritonRepoError(f"{package.root}: {mode_unavailable(STREAM_MODEL)} (or write only {CLIP_MODEL}: "
                                  "stream=False)")
        feats = next(t for t in enc.outputs if t.name == graph_io.FEATURES)
        spec = package.clip_spec
        return cls(spec.frames, spec.size, feats.static_shape,
                   tuple((t.name, t.static_shape) for t in enc.state_inputs),
                   tuple((t.name, t.dtype, t.static_shape) for t in head.outputs))


def stream_graph(package: pk.Package, color: str = "BGR") -> Any:
    """aknet_stream's ONNX model, composed from the package's FP32 frame encoder and clip head (no torch).

    Every tensor has a leading batch axis (one row per camera the sequence batcher put in this execution).
    At START a row's state is taken as zero whatever the server passed in, and a row whose READY is 0 keeps
    its state unchanged, so the graph is right under either batching strategy.
    """
    onnx = _onnx()
    from onnx import TensorProto, compose, helper, numpy_helper

    import numpy as np

    if color not in COLORS:
        raise ConfigError(f"color={color!r}: expected one of {', '.join(COLORS)}")
    spec = StreamSpec.of(package)
    roles = package.roles("onnx", "fp32")
    if not all(r in roles for r in graph_io.SPLIT_ROLES):
        raise TritonRepoError(f"{package.root} has no FP32 ONNX frame_encoder/clip_head variants")
    enc = onnx.load(str(package.path(roles[graph_io.FRAME_ENCODER])))
    head = onnx.load(str(package.path(roles[graph_io.CLIP_HEAD])))
    opset = max(_opset(enc), _opset(head), 13)  # 13: Unsqueeze/Slice/Squeeze with tensor inputs
    from onnx import version_converter

    enc, head = [m if _opset(m) == opset else version_converter.convert_version(m, opset) for m in (enc, head)]
    enc = compose.add_prefix(enc, "enc/")
    head = compose.add_prefix(head, "head/")

    T, S = spec.frames, spec.size
    cfg = package.clip_spec
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    # the affine of aknet_edge.preprocess (x * 1/(255 std) - mean/std), float32 as it computes it
    scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(3, 1, 1)
    offset = (-mean / std).astype(np.float32).reshape(3, 1, 1)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (scale, "pre/scale"), (offset, "pre/offset"), (np.array(0.0, np.float32), "zero_f"),
        (np.array(0, np.int64), "zero_i"), (np.array(1, np.int64), "one_i"), (np.array([1], np.int64), "axis1"),
        (np.array([T], np.int64), "ring_end"), (np.array([2, 1, 0], np.int64), "pre/flip"),
    )]
    nodes: List[Any] = []
    N = helper.make_node
    # controls (batch, 1) -> bool masks shaped to broadcast over each state
    nodes += [N("Cast", [START], ["start_b"], to=TensorProto.BOOL),
              N("Cast", [READY], ["ready_b"], to=TensorProto.BOOL)]
    masks: Dict[int, Tuple[str, str]] = {}

    def mask(rank: int) -> Tuple[str, str]:
        if rank not in masks:
            shape = f"mask_shape_{rank}"
            inits.append(numpy_helper.from_array(np.array([-1] + [1] * (rank - 1), np.int64), shape))
            nodes.extend([N("Reshape", ["start_b", shape], [f"start_{rank}"]),
                          N("Reshape", ["ready_b", shape], [f"ready_{rank}"])])
            masks[rank] = (f"start_{rank}", f"ready_{rank}")
        return masks[rank]

    # the package's preprocessing on the uint8 frame (resized by the client as aknet_edge.preprocess resizes)
    x = "pre/float"
    nodes.append(N("Cast", [IMAGE_INPUT], [x], to=TensorProto.FLOAT))
    if color != cfg.color:
        nodes.append(N("Gather", [x, "pre/flip"], ["pre/reordered"], axis=3))
        x = "pre/reordered"
    nodes += [N("Transpose", [x], ["pre/chw"], perm=[0, 3, 1, 2]), N("Mul", ["pre/chw", "pre/scale"], ["pre/scaled"]),
              N("Add", ["pre/scaled", "pre/offset"], ["enc/" + graph_io.FRAME_INPUT])]
    # shift state: zero at START
    for name, shape in spec.states:
        start_m, _ = mask(1 + len(shape))
        nodes.append(N("Where", [start_m, "zero_f", name], ["enc/" + name]))
    # inputs the encoder has besides the frame and its states: the parent-row index of encoders that fork
    # chains per camera (exact mode); in carried mode no row is forked, so any valid index does: zeros
    fed = {"enc/" + graph_io.FRAME_INPUT} | {"enc/" + n for n, _ in spec.states}
    parent_rows = "enc/" + graph_io.PARENT_ROWS
    for inp in enc.graph.input:
        if inp.name in fed or inp.name in {i.name for i in enc.graph.initializer}:
            continue
        if inp.name != parent_rows:
            raise TritonRepoError(f"the frame encoder has an input {inp.name[4:]!r} aknet_stream does not know how "
                                  "to feed; expected frame and shift states (aknet_edge.graph_io)")
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero_1d"))
        nodes += [N("Shape", [IMAGE_INPUT], ["pre/shape"]), N("Slice", ["pre/shape", "zero_1d", "axis1"], ["pre/rows"]),
                  N("ConstantOfShape", ["pre/rows"], [parent_rows],
                    value=numpy_helper.from_array(np.array([0], np.int32)))]
    nodes += list(enc.graph.node)
    # the ring of the last T features, oldest first (zero at START), then the head on it
    start5, ready5 = mask(2 + len(spec.features))
    nodes += [N("Where", [start5, "zero_f", RING_STATE], ["ring/in"]),
              N("Slice", ["ring/in", "axis1", "ring_end", "axis1"], ["ring/tail"]),
              N("Unsqueeze", ["enc/" + graph_io.FEATURES, "axis1"], ["ring/new_row"]),
              N("Concat", ["ring/tail", "ring/new_row"], ["head/" + graph_io.FEATURES], axis=1)]
    nodes += list(head.graph.node)
    # outputs and next states (a row that is not READY keeps its state)
    nodes += [N("Where", ["start_b", "zero_i", COUNT_STATE], ["count/in"]),
              N("Add", ["count/in", "one_i"], ["count/next"]),
              N("Identity", ["count/next"], [STEPS_OUTPUT]), N("Identity", [CORRID], [CORRID_OUTPUT]),
              N("Where", ["ready_b", "count/next", COUNT_STATE], [graph_io.state_output(COUNT_STATE)]),
              N("Where", [ready5, "head/" + graph_io.FEATURES, RING_STATE], [graph_io.state_output(RING_STATE)])]
    for name, shape in spec.states:
        _, ready_m = mask(1 + len(shape))
        nodes.append(N("Where", [ready_m, "enc/" + graph_io.state_output(name), name], [graph_io.state_output(name)]))
    for name, _, _ in spec.outputs:
        nodes.append(N("Identity", ["head/" + name], [name]))

    B = "batch"
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    vi = helper.make_tensor_value_info
    inputs = [vi(IMAGE_INPUT, TensorProto.UINT8, [B, S, S, 3]), vi(START, TensorProto.INT32, [B, 1]),
              vi(READY, TensorProto.INT32, [B, 1]), vi(CORRID, TensorProto.UINT64, [B, 1])]
    inputs += [vi(name, f32, [B, *shape]) for name, shape in spec.states]
    inputs += [vi(RING_STATE, f32, [B, T, *spec.features]), vi(COUNT_STATE, i64, [B, 1])]
    np_to_onnx = {"float32": f32, "float16": TensorProto.FLOAT16, "int64": i64, "int32": TensorProto.INT32}
    outputs = [vi(name, np_to_onnx[dt], [B, *shape]) for name, dt, shape in spec.outputs]
    outputs += [vi(STEPS_OUTPUT, i64, [B, 1]), vi(CORRID_OUTPUT, TensorProto.UINT64, [B, 1])]
    outputs += [vi(graph_io.state_output(name), f32, [B, *shape]) for name, shape in spec.states]
    outputs += [vi(graph_io.state_output(RING_STATE), f32, [B, T, *spec.features]),
                vi(graph_io.state_output(COUNT_STATE), i64, [B, 1])]
    graph = helper.make_graph(nodes, STREAM_MODEL, inputs, outputs,
                              initializer=inits + list(enc.graph.initializer) + list(head.graph.initializer),
                              value_info=list(enc.graph.value_info) + list(head.graph.value_info))
    # the graphs' own domains (model-local functions such as the head's keypoint selection) come along
    domains = {o.domain: o.version for m in (enc, head) for o in m.opset_import if o.domain not in ("", "ai.onnx")}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)] + [
        helper.make_opsetid(d, v) for d, v in sorted(domains.items())], producer_name="aknet_edge.triton_repo",
        ir_version=max(enc.ir_version, head.ir_version), functions=list(enc.functions) + list(head.functions))
    onnx.checker.check_model(model)
    return model


# -- config.pbtxt (protobuf text format, written by hand: the device side has no tritonclient) -------------------

def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid protobuf text string (UTF-8 kept as is)


def _dims(shape: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def _tensor(name: str, dtype: str, shape: Sequence[int], extra: str = "") -> str:
    if dtype not in TRITON_DTYPES:
        raise TritonRepoError(f"tensor {name}: dtype {dtype} has no Triton type")
    return f"  {{ name: {_q(name)} data_type: {TRITON_DTYPES[dtype]} dims: {_dims(shape)}{extra} }}"


def _params(values: Dict[str, str]) -> str:
    return "".join(f"parameters {{ key: {_q(k)} value {{ string_value: {_q(v)} }} }}\n" for k, v in values.items())


def _instances(opts: TritonRepoOptions) -> str:
    if opts.instance_kind == "auto" and opts.instances == 1:
        return ""  # Triton's default: one instance on each GPU, or on the CPU without one
    kind = {"auto": "", "cpu": " kind: KIND_CPU", "gpu": " kind: KIND_GPU"}[opts.instance_kind]
    return f"instance_group [ {{ count: {opts.instances}{kind} }} ]\n"


def _common_params(package: pk.Package, opts: TritonRepoOptions, manifest_sha: str) -> Dict[str, str]:
    p = {PARAM_LABELS: json.dumps(package.labels), PARAM_MANIFEST: manifest_sha, PARAM_PACKAGE: package.root.name,
         PARAM_MODEL: model_sha256(package.manifest),
         PARAM_PREPROCESSING: json.dumps(package.manifest.preprocessing.to_dict(), sort_keys=True)}
    if opts.threads is not None:
        p["intra_op_thread_count"] = str(opts.threads)  # read by Triton's onnxruntime backend
    return p


def clip_config(package: pk.Package, opts: TritonRepoOptions, backend: str, manifest_sha: str,
                io: Optional[pk.GraphIO] = None) -> str:
    """aknet_clip's config.pbtxt: stateless, dynamic batching, I/O from the manifest (or the graph read)."""
    io = io or package.io(graph_io.CLIP)
    assert io is not None
    engine = "platform: \"tensorrt_plan\"" if backend == "tensorrt_plan" else "backend: \"onnxruntime\""
    ins = ",\n".join(_tensor(t.name, t.dtype, t.static_shape) for t in io.inputs)
    outs = ",\n".join(_tensor(t.name, t.dtype, t.static_shape,
                              f" label_filename: {_q(LABELS_FILE)}" if t.name == graph_io.LOGITS else "")
                      for t in io.outputs)
    return (f"# written by aknet_edge.triton_repo from {package.root.name}: the whole-clip graph, stateless\n"
            f"name: {_q(CLIP_MODEL)}\n{engine}\nmax_batch_size: {package.manifest.build.batch[2]}\n"
            f"input [\n{ins}\n]\noutput [\n{outs}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {opts.queue_delay_us} }}\n"
            + _instances(opts) + _params(_common_params(package, opts, manifest_sha)))


def stream_config(package: pk.Package, opts: TritonRepoOptions, manifest_sha: str) -> str:
    """aknet_stream's config.pbtxt: sequence batcher (Oldest), controls, implicit state for every state tensor."""
    spec = StreamSpec.of(package)
    outs = [_tensor(n, dt, shp, f" label_filename: {_q(LABELS_FILE)}" if n == graph_io.LOGITS else "")
            for n, dt, shp in spec.outputs]
    outs += [_tensor(STEPS_OUTPUT, "int64", (1,)), _tensor(CORRID_OUTPUT, "uint64", (1,))]
    states = [(n, "float32", shp) for n, shp in spec.states]
    states += [(RING_STATE, "float32", (spec.frames, *spec.features)), (COUNT_STATE, "int64", (1,))]
    state_txt = ",\n".join(
        f"    {{ input_name: {_q(n)} output_name: {_q(graph_io.state_output(n))} data_type: {TRITON_DTYPES[dt]} "
        f"dims: {_dims(shp)}\n      initial_state {{ name: \"zero\" data_type: {TRITON_DTYPES[dt]} dims: {_dims(shp)} "
        f"zero_data: true }} }}" for n, dt, shp in states)
    controls = (
        f"    {{ name: {_q(START)} control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},\n"
        f"    {{ name: {_q(READY)} control [ {{ kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] }} ] }},\n"
        f"    {{ name: {_q(CORRID)} control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }} ] }}")
    params = _common_params(package, opts, manifest_sha)
    params.update({PARAM_COLOR: opts.stream_color, PARAM_MODE: STREAM_MODE})
    return (f"# written by aknet_edge.triton_repo from {package.root.name}: one uint8 frame per request, each camera "
            f"a sequence\n# (correlation id), its shift state, feature ring and step counter kept by Triton as "
            f"implicit state\nname: {_q(STREAM_MODEL)}\nbackend: \"onnxruntime\"\n"
            f"max_batch_size: {opts.stream_max_batch}\n"
            f"input [\n{_tensor(IMAGE_INPUT, 'uint8', (spec.size, spec.size, 3))}\n]\n"
            f"output [\n" + ",\n".join(outs) + "\n]\n"
            f"sequence_batching {{\n  max_sequence_idle_microseconds: {int(round(opts.idle_s * 1e6))}\n"
            f"  oldest {{ max_candidate_sequences: {opts.max_sequences} max_queue_delay_microseconds: "
            f"{opts.queue_delay_us} }}\n  control_input [\n{controls}\n  ]\n  state [\n{state_txt}\n  ]\n}}\n"
            + _instances(opts) + _params(params))


# -- the repository on disk -------------------------------------------------------------------------------------

def is_triton_repo(path: Path) -> bool:
    """A folder this module wrote (its marker parses): the only kind ``force`` replaces."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8")).get("writer") == __name__
    except (OSError, ValueError, AttributeError):
        return False


def check_target(out: Path, force: bool) -> None:
    """Refuse ``out`` before any work when it exists without ``force`` or is not a repository ``force`` may replace
    (a build checks this before its long run, then writes)."""
    if not os.path.lexists(out):
        return
    if not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it or choose another folder for the "
                          "Triton repository")
    where, cwd = out.resolve(), Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        raise ConfigError(f"{out} is the current folder or a parent of it; --force never replaces that: choose a "
                          "new folder for the Triton repository")
    if not is_triton_repo(out):
        raise ConfigError(f"{out} exists and is not a Triton repository written by aknet_edge (no {MARKER}); "
                          "--force replaces only such a repository: remove it yourself or choose another folder")


def _clip_choice(package: pk.Package, opts: TritonRepoOptions) -> Tuple[str, pk.Variant]:
    """(backend, variant) of aknet_clip: the engine where asked for or (auto) where the package has one."""
    engine = package.manifest.engine
    if opts.clip_kind == "tensorrt" or (opts.clip_kind == "auto" and engine is not None):
        if engine is None:
            raise TritonRepoError(f"{package.root} has no TensorRT engine for aknet_clip; build one where Triton "
                                  "runs (python -m aknet_edge.build --from PACKAGE --out NEW) or use clip_kind=onnx")
        return "tensorrt_plan", engine
    try:
        precision = package.choose_precision("onnx", opts.precision)
    except pk.PackageError as exc:
        raise TritonRepoError(str(exc)) from None
    return "onnxruntime", package.variant(precision, "onnx", graph_io.CLIP)


def write_triton_repo(package_dir: "str | os.PathLike[str]", out_dir: "str | os.PathLike[str]", force: bool = False,
                      options: Optional[TritonRepoOptions] = None, **kwargs: Any) -> TritonRepo:
    """Write a Triton model repository for the package at ``package_dir`` into ``out_dir``.

    ``options`` (or its fields as keyword arguments): :class:`TritonRepoOptions`. An existing ``out_dir`` is
    an error unless ``force``, and ``force`` replaces only a repository this function wrote. The repository is
    written into a temporary folder beside ``out_dir`` and renamed into place when complete: a failure leaves
    no half-written repository and an old one intact.
    """
    from .staging import BuildLock, DeferSignals

    if options is not None and kwargs:
        raise ConfigError("write_triton_repo: pass options or keyword options, not both")
    opts = options or TritonRepoOptions(**kwargs)
    out = Path(os.path.abspath(out_dir))
    package = pk.load(package_dir)  # verified: every variant's SHA-256
    check_target(out, force)
    backend, clip_variant = _clip_choice(package, opts)
    lock = BuildLock(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:
        raise ConfigError(f"cannot write the Triton repository to {out}: {os_error_reason(exc)}") from None
    tmp = out.parent / f".{out.name}.writing-{os.getpid()}"
    repo = TritonRepo(out, clip_backend=backend)
    try:
        check_target(out, force)
        if tmp.exists():
            shutil.rmtree(tmp)
        manifest_text = (package.root / MANIFEST_FILE).read_bytes()
        manifest_sha = pk.sha256_file(package.root / MANIFEST_FILE)
        written: Dict[str, str] = {}

        def model_dir(name: str) -> Path:
            d = tmp / name
            (d / MODEL_VERSION).mkdir(parents=True)
            (d / LABELS_FILE).write_text("\n".join(package.labels) + "\n", encoding="utf-8")
            (d / MANIFEST_FILE).write_bytes(manifest_text)
            return d

        # aknet_clip
        d = model_dir(CLIP_MODEL)
        target = "model.plan" if backend == "tensorrt_plan" else "model.onnx"
        shutil.copyfile(package.path(clip_variant), d / MODEL_VERSION / target)
        io = pk.GraphIO.from_onnx(package.path(clip_variant)) if backend == "onnxruntime" else None
        if io is not None and (io.input_names, io.output_names) != (package.io(graph_io.CLIP).input_names,
                                                                   package.io(graph_io.CLIP).output_names):
            raise TritonRepoError(f"{clip_variant.file}: graph I/O {io.input_names} -> {io.output_names} differs from "
                                  "the manifest's; rebuild the package")
        (d / "config.pbtxt").write_text(clip_config(package, opts, backend, manifest_sha, io), encoding="utf-8")
        repo.models[CLIP_MODEL] = out / CLIP_MODEL
        written[CLIP_MODEL] = f"{backend} {clip_variant.file} ({clip_variant.precision})"
        # aknet_stream
        if opts.stream:
            if package.io(graph_io.FRAME_ENCODER) is None:
                repo.notes.append(f"aknet_stream not written for {package.root}: {mode_unavailable(STREAM_MODEL)}")
            else:
                d = model_dir(STREAM_MODEL)
                onnx = _onnx()
                onnx.save(stream_graph(package, opts.stream_color), str(d / MODEL_VERSION / "model.onnx"))
                (d / "config.pbtxt").write_text(stream_config(package, opts, manifest_sha), encoding="utf-8")
                repo.models[STREAM_MODEL] = out / STREAM_MODEL
                written[STREAM_MODEL] = f"onnxruntime, composed from the fp32 frame_encoder and clip_head " \
                                        f"({STREAM_MODE} state, input {opts.stream_color})"
        marker = {"writer": __name__, "package": str(package.root), "manifest_sha256": manifest_sha,
                  "model_sha256": model_sha256(package.manifest),
                  "models": written, "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
                  "notes": repo.notes}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        with DeferSignals():
            check_target(out, force)
            old = None
            if os.path.lexists(out):
                old = out.parent / f".{out.name}.replaced-{os.getpid()}"
                os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                if old is not None:
                    os.replace(old, out)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot write the Triton repository to {out}: {os_error_reason(exc)}; nothing was "
                          "written") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.release()
    for note in repo.notes:
        log.warning("%s", note)
    log.info("Triton repository %s: %s", out, ", ".join(f"{k} ({v})" for k, v in written.items()))
    return repo


__all__ = ["CLIP_MODEL", "STREAM_MODEL", "TritonRepo", "TritonRepoError", "TritonRepoOptions", "check_target",
           "clip_config", "stream_config", "stream_graph", "write_triton_repo"]
