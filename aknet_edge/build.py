"""``python -m aknet_edge.build``: from a model to a deployable package, in one command.

    checkpoint -> ONNX (custom nodes) -> lowered ONNX -> FP16 / INT8 Q/DQ ONNX
               -> [TensorRT engine, where TensorRT and a GPU are present] -> package folder

This module only orchestrates: every step is a function of its own elsewhere
(export, calibration, :mod:`aknet_edge.evaluate`, :mod:`aknet_edge.engine`,
:mod:`aknet_edge.package`), :class:`BuildOptions` validates itself on
construction (so the Python API and the CLI reject the same mistakes with the
same words), and the CLI takes its defaults and choices from those
definitions. The package is built in a temporary folder beside ``--out`` and
renamed into place at the end, so no half-written package ever looks complete.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import graph_io, trt_eras
from . import package as pk
from .calib_options import (CALIB_METHODS, CALIB_MODES, DEFAULT_CLIPS, DEFAULT_INT8_WEIGHTS, DEFAULT_METHOD,
                            DEFAULT_PERCENTILE, check_method, check_percentile)
from .cli_common import (CliParser, StepProgress, add_bool_flag, add_model_args, check_number, config_from_args,
                         defaults_of, quiet_onnxruntime, run_cli)
from .config import ModelConfig
from .engine import compile_engine, engine_precision
from .errors import AknetError, ConfigError, DataError
from .evaluate import EVAL_CLIPS_PER_CLASS
from .io_utils import os_error_reason
from .media import SYNTHETIC
from .staging import Staging, reraise_write_error

log = logging.getLogger(__name__)
BUILD_PRECISIONS = pk.PRECISIONS + ("best",)
BASE_LOWERING = trt_eras.RELEASES[0].target  # the strictest target; its graph runs on every other one and in ONNX Runtime
DEFAULT_OUT = "aknet_demo_package"
AUTO_TARGET = "auto"


class EngineUnavailable(AknetError, RuntimeError):
    """An engine was required but TensorRT or a GPU is not present here."""


def _targets() -> Tuple[str, ...]:
    from .export.targets import TARGETS

    return tuple(TARGETS)


BATCH_RULE = "expected MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, e.g. 1,1,4"


def parse_batch(text: str) -> Tuple[int, int, int]:
    """``MIN,OPT,MAX`` -> a batch profile (the CLI's ``--batch``)."""
    try:
        batch = tuple(int(v) for v in text.split(","))
    except ValueError:
        batch = ()
    if len(batch) != 3:
        raise ConfigError(f"--batch {text}: {BATCH_RULE}")
    return batch  # type: ignore[return-value]


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: expected True or False")


@dataclass(frozen=True)
class BuildOptions:
    """Everything the build needs; validated on construction. The CLI fills it from flags."""

    out: Path = Path(DEFAULT_OUT)
    checkpoint: Optional[Path] = None
    config: Optional[ModelConfig] = None  # an untrained model from a config (cost/graph work only)
    precision: str = "best"
    calib: str = SYNTHETIC
    calib_method: str = DEFAULT_METHOD
    calib_percentile: float = DEFAULT_PERCENTILE
    calib_clips: int = DEFAULT_CLIPS
    calib_seed: int = 0
    calib_mode: str = "explicit"  # "implicit": TensorRT < 11 calibrates the FP32 graph itself (cache kept in the package)
    compare_methods: bool = True  # also quantize with the other methods and report them side by side
    batch: Tuple[int, int, int] = (1, 1, 4)
    workspace_mb: int = 1024
    dla: Optional[int] = None
    target: str = AUTO_TARGET
    eval_data: str = SYNTHETIC
    eval_clips_per_class: int = EVAL_CLIPS_PER_CLASS
    force: bool = False
    require_engine: bool = False
    progress: bool = True
    plugin_libs: Tuple[Path, ...] = ()  # TensorRT plugin libraries (--plugin-lib), loaded before parsing
    max_streams: Optional[int] = None  # cameras one engine call batches (--max-streams); None: the batch MAX

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.precision not in BUILD_PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: expected one of {', '.join(BUILD_PRECISIONS)}")
        check_method(self.calib_method)
        object.__setattr__(self, "calib_percentile", check_percentile(self.calib_percentile))
        if isinstance(self.calib_clips, bool) or not isinstance(self.calib_clips, int) or self.calib_clips < 1:
            raise DataError(f"--calib-clips {self.calib_clips}: expected at least 1")
        check_number("--calib-seed", self.calib_seed, minimum=0, whole=True, optional=False)
        if self.calib_mode not in CALIB_MODES:
            raise ConfigError(f"--calib-mode {self.calib_mode!r}: expected one of {', '.join(CALIB_MODES)}")
        b = tuple(self.batch)
        if len(b) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in b) \
                or not 1 <= b[0] <= b[1] <= b[2]:
            raise ConfigError(f"--batch {','.join(map(str, b))}: {BATCH_RULE}")
        object.__setattr__(self, "batch", b)
        check_number("--max-streams", self.max_streams, minimum=1, whole=True, optional=True)
        if isinstance(self.workspace_mb, bool) or not isinstance(self.workspace_mb, int) or self.workspace_mb < 1:
            raise ConfigError(f"--workspace {self.workspace_mb}: expected at least 1 MiB")
        if self.dla is not None and (isinstance(self.dla, bool) or not isinstance(self.dla, int) or self.dla < 0):
            raise ConfigError(f"--dla {self.dla}: expected a DLA core number (0 or 1 on Jetson AGX Orin)")
        if self.target != AUTO_TARGET and self.target not in _targets():
            raise ConfigError(f"--target {self.target!r}: expected {AUTO_TARGET} or one of {', '.join(_targets())}")
        release = next((r for r in trt_eras.RELEASES if r.target == self.target), None)
        if self.calib_mode == "implicit" and release and not trt_eras.available("implicit_calibration", release.version):
            raise ConfigError(f"--calib-mode implicit: {trt_eras.label(release.version)} has no implicit calibration; "
                              "use --calib-mode explicit (the INT8 Q/DQ graph)")
        if isinstance(self.eval_clips_per_class, bool) or not isinstance(self.eval_clips_per_class, int) \
                or self.eval_clips_per_class < 1:
            raise DataError(f"--eval-clips-per-class {self.eval_clips_per_class}: expected at least 1")
        for name in ("compare_methods", "force", "require_engine", "progress"):
            _flag(name, getattr(self, name))
        from .runtime.trt.plugins import check_library_file  # torch- and TensorRT-free

        libs = (self.plugin_libs,) if isinstance(self.plugin_libs, (str, Path)) else tuple(self.plugin_libs)
        object.__setattr__(self, "plugin_libs", tuple(check_library_file(p) for p in libs))

    @property
    def graph_precisions(self) -> List[str]:
        """The graphs to export: FP32 always (the reference), plus what was asked for."""
        return list(pk.PRECISIONS) if self.precision == "best" else (
            ["fp32"] if self.precision == "fp32" else ["fp32", self.precision])

    @property
    def int8_forms(self) -> Tuple[str, ...]:
        """The INT8 graphs to write, default form first: both for ``auto``, else the one the target's TensorRT takes
        (:data:`aknet_edge.package.INT8_WEIGHTS_SERVE`)."""
        release = next((r for r in trt_eras.RELEASES if r.target == self.target), None)
        if release is not None:
            return (pk.int8_weights_for(release.version),)
        if self.target == AUTO_TARGET:
            return (DEFAULT_INT8_WEIGHTS,) + tuple(f for f in pk.INT8_WEIGHTS_SERVE if f != DEFAULT_INT8_WEIGHTS)
        return (DEFAULT_INT8_WEIGHTS,)

    @property
    def wants_engine(self) -> bool:
        return self.target == AUTO_TARGET or self.target.startswith("tensorrt")

    @property
    def engine_batch(self) -> Tuple[int, int, int]:
        """The engine's batch profile: ``--batch`` with its MAX raised to ``--max-streams`` (one window per camera)."""
        b0, b1, b2 = self.batch
        return (b0, b1, max(b2, self.max_streams or b2))

    def build_record(self, target: Optional[str] = None) -> pk.BuildRecord:
        """What the manifest records of the engine-shaping settings; ``target``: the package's (``--from`` keeps it)."""
        batch = self.engine_batch
        return pk.BuildRecord(batch, self.workspace_mb, self.dla, target or self.target, batch[2])


@dataclass
class BuildResult:
    out: Path
    variants: List[pk.Accuracy] = field(default_factory=list)
    engine: Optional[pk.Variant] = None
    next_step: str = ""
    seconds: float = 0.0


def _command() -> str:
    return " ".join(["python -m aknet_edge.build", *sys.argv[1:]])


def _created_by() -> str:
    from . import __version__

    return f"aknet_edge {__version__}"


def _load_model(opts: BuildOptions):
    from .checkpoint import DEMO_WEIGHTS, load_checkpoint
    from .model import build_model

    if opts.config is not None:
        log.warning("building from a config alone: the model is untrained (use --checkpoint for real weights)")
        return build_model(opts.config).eval(), "config"
    path = opts.checkpoint or DEMO_WEIGHTS
    return load_checkpoint(path), str(path)


def _check_graphs(paths: Dict[str, Path], target: str, dla: bool = False) -> None:
    import onnx

    from .export.check import check, errors
    from .export.targets import TENSORRT_TARGETS

    targets = TENSORRT_TARGETS if target in (AUTO_TARGET, "onnxruntime") else (target,)
    for path in paths.values():
        g = onnx.load(str(path))
        for t in tuple(targets) + ("onnxruntime",):
            bad = errors(check(g, t, dla=dla and t == target))
            if bad:
                raise AknetError(f"{path.name} fails the {t} check: " + "; ".join(map(str, bad)))


def build(opts: BuildOptions) -> BuildResult:
    """Run every step into a temporary folder, then rename it to ``opts.out``."""
    from .evaluate import eval_set, evaluate_variants
    from .export.lower import lower
    from .export.onnx_export import save, to_onnx, to_split_onnx

    start = time.time()
    out = opts.out
    staging = Staging(out, opts.force)
    try:
        staging.tmp.mkdir()
    except BaseException as exc:
        staging.discard()
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write the package to {out}: {os_error_reason(exc)}") from None
        raise
    tmp = staging.tmp
    steps = None
    try:
        # a bar on a terminal; one line per step in a log file or CI (cli_common.StepProgress)
        total = 4 + ("fp16" in opts.graph_precisions) + ("int8" in opts.graph_precisions)
        steps = StepProgress(total, "build", enabled=opts.progress)
        steps.step("load model")
        model, source = _load_model(opts)
        cfg: ModelConfig = model.cfg
        steps.step("export + lower")
        graph = lower(to_onnx(model), BASE_LOWERING)
        files = {"fp32": save(graph, tmp / "model.fp32.onnx")}
        split: Dict[str, Path] = {}
        if cfg.arch == "aknet" and cfg.shift != "offline":
            enc, head = to_split_onnx(model, parent_rows=True)  # parent rows: exact mode batched across cameras
            split = {graph_io.FRAME_ENCODER: save(lower(enc, BASE_LOWERING), tmp / "frame_encoder.fp32.onnx"),
                     graph_io.CLIP_HEAD: save(lower(head, BASE_LOWERING), tmp / "clip_head.fp32.onnx")}
        if "fp16" in opts.graph_precisions:
            steps.step("fp16")
            from .calibration.precision import convert_fp16

            files["fp16"] = save(convert_fp16(graph, _float_nodes(model, graph, "fp16")), tmp / "model.fp16.onnx")
        methods: Dict[str, str] = {}
        forms: Dict[str, str] = {}  # files key -> INT8 weight form, for the shipped INT8 graphs
        calibration = None
        if "int8" in opts.graph_precisions:
            steps.step(f"calibrate ({opts.calib})")
            calibration = _quantize(opts, model, graph, tmp, out, files, methods, forms)
        steps.step("check")
        _check_graphs({**files, **split}, opts.target, dla=opts.dla is not None)
        steps.step("evaluate")
        x, y = eval_set(cfg, opts.eval_data, opts.eval_clips_per_class)
        reports = evaluate_variants(files, x, y, methods, cfg.grid, forms)
        steps.close()
        for name in [n for n in files if ":" in n and n not in forms]:  # comparison-only graphs are not shipped
            files.pop(name).unlink()
        float_modules = {p: tuple(model.float_modules(p)) for p in pk.FLOAT_MODULE_PRECISIONS}
        engine, next_step = _maybe_engine(opts, tmp, files, forms, cfg, float_modules)
        variants = [pk.Variant.of_file(tmp, p.name, name.split(":")[0], "onnx", graph_io.CLIP, weights=forms.get(name))
                    for name, p in files.items()]
        variants += [pk.Variant.of_file(tmp, p.name, "fp32", "onnx", role) for role, p in split.items()]
        manifest = pk.Manifest(
            config=cfg, labels=tuple(cfg.class_names), preprocessing=pk.Preprocessing.from_clip(cfg.clip),
            io={graph_io.CLIP: pk.GraphIO.from_onnx(files["fp32"]),
                **{role: pk.GraphIO.from_onnx(p) for role, p in split.items()}},
            variants=tuple(variants) + ((engine,) if engine else ()), created_by=_created_by(), command=_command(),
            source=source, source_sha256=pk.sha256_file(source) if Path(source).is_file() else None,
            calibration=calibration, accuracy=tuple(reports), lowering=BASE_LOWERING, build=opts.build_record(),
            float_modules=float_modules)
        pk.write(tmp, manifest)
        staging.commit()
    except BaseException as exc:
        if steps is not None:
            steps.close(done=False)
        staging.discard()
        reraise_write_error(exc, out)
        raise
    pk.load(out)  # verify what we wrote
    return BuildResult(out, reports, engine, next_step, time.time() - start)


def _quantize(opts: BuildOptions, model, graph, tmp: Path, out: Path, files: Dict[str, Path],
              methods: Dict[str, str], forms: Dict[str, str]) -> pk.Calibration:
    """The INT8 Q/DQ graphs, one per weight form the target needs (``files["int8"]`` the default form, the other
    as ``int8:<form>``), and, with ``compare_methods``, the other methods' graphs for the report."""
    from .calibration import load_calibration_set, quantize_int8
    from .export.onnx_export import save

    cfg: ModelConfig = model.cfg
    cal = load_calibration_set(opts.calib, cfg.clip, opts.calib_clips, opts.calib_seed,
                               cache_dir=out.parent / ".aknet_calib_cache", progress=opts.progress)
    keep_float = _float_nodes(model, graph, "int8")
    for i, form in enumerate(opts.int8_forms):
        name = "int8" if i == 0 else f"int8:{form}"
        files[name] = save(quantize_int8(graph, cal.clips, opts.calib_method, keep_float, opts.calib_percentile, form),
                           tmp / ("model.int8.onnx" if i == 0 else f"model.int8-{form}.onnx"))
        methods[name], forms[name] = opts.calib_method, form
    if opts.compare_methods:
        for m in CALIB_METHODS:
            if m != opts.calib_method:
                files[f"int8:{m}"] = save(quantize_int8(graph, cal.clips, m, keep_float, opts.calib_percentile),
                                          tmp / f"compare.int8-{m}.onnx")
                methods[f"int8:{m}"] = m
    return pk.Calibration(cal.source, int(len(cal.clips)), cal.skipped, opts.calib_method, opts.calib_seed,
                          opts.calib_percentile if opts.calib_method == "percentile" else None)


def _float_nodes(model, graph, precision: str):
    """Node names of the modules the model declares ``precision`` keeps in FP32 (``model.float_modules``)."""
    from .export.module_nodes import nodes_of_modules

    return nodes_of_modules(graph, model.float_modules(precision))


def _maybe_engine(opts: BuildOptions, tmp: Path, files: Dict[str, Path], forms: Dict[str, str], cfg: ModelConfig,
                  float_modules: Dict[str, Tuple[str, ...]]) -> Tuple[Optional[pk.Variant], str]:
    """Compile a TensorRT engine where TensorRT is importable; otherwise say how to finish on the device."""
    if not opts.wants_engine:
        return None, f"ONNX Runtime package: run it with python -m aknet_edge.run --package {opts.out}"
    try:
        from .runtime import trt as trt_mod

        trt_mod.load_tensorrt()
    except ImportError as exc:
        hint = (f"on the target device run: python -m aknet_edge.build --from {opts.out} --out {opts.out}-engine"
                f"{'' if opts.target == AUTO_TARGET else ' --target ' + opts.target}"
                + "".join(f" --plugin-lib {lib}" for lib in opts.plugin_libs))
        if opts.require_engine:
            raise EngineUnavailable(f"--require-engine: {exc}; {hint}") from None
        return None, f"TensorRT not found here: portable package ready; {hint}"
    version = trt_mod.trt_version()
    graphs = {k: p for k, p in files.items() if ":" not in k}
    for name, form in forms.items():  # the INT8 graph whose weight form this TensorRT takes
        if form == pk.int8_weights_for(version):
            graphs["int8"] = files[name]
    engine = _compile(opts, tmp, graphs, cfg, float_modules)
    assert engine.engine is not None
    return engine, f"engine {engine.file} for TensorRT {engine.engine.tensorrt_version} on {engine.engine.gpu}"


def _compile(opts: BuildOptions, pkg_dir: Path, files: Dict[str, Path], cfg: ModelConfig,
             float_modules: Dict[str, Tuple[str, ...]]) -> pk.Variant:
    precision = engine_precision(opts.precision, files, opts.calib_mode)
    clips = None
    if opts.calib_mode == "implicit" and precision == "int8":
        # TensorRT 8.5-10.x only (make_calibrator refuses 11): the FP32 graph plus a calibrator and its cache
        from .calibration import load_calibration_set

        clips = load_calibration_set(opts.calib, cfg.clip, opts.calib_clips, opts.calib_seed,
                                     cache_dir=pkg_dir.parent / ".aknet_calib_cache").clips
    return compile_engine(pkg_dir, files, precision, opts.engine_batch, opts.workspace_mb, opts.dla, opts.calib_mode,
                          clips, opts.calib_method, float_modules, opts.plugin_libs)


def finish_on_device(package_dir: Path, opts: BuildOptions) -> pk.Variant:
    """``--from PACKAGE``: add a TensorRT engine to a portable package, on the device that will run it.

    Torch-free: the package's own graphs and manifest are all it needs.
    """
    pkg = pk.load(package_dir)
    if not opts.wants_engine:
        raise ConfigError(f"--from with --target {opts.target}: nothing to build; the package already runs on ONNX "
                          "Runtime (python -m aknet_edge.run --package ...)")
    from .runtime import trt as trt_mod

    trt_mod.load_tensorrt()  # DependencyError with the install hint where TensorRT is absent
    version = trt_mod.trt_version()
    out = opts.out
    if out.resolve() == pkg.root.resolve():
        raise ConfigError(f"--out {out} must be a new folder, not the package itself")
    staging = Staging(out, opts.force)
    try:
        shutil.copytree(pkg.root, staging.tmp)
        m = pkg.manifest
        for old in (v for v in m.variants if v.kind == "tensorrt"):  # the engine this build replaces
            (staging.tmp / old.file).unlink(missing_ok=True)
            if old.engine is not None and old.engine.calibration_cache:
                (staging.tmp / old.engine.calibration_cache).unlink(missing_ok=True)
        files = {v.precision: staging.tmp / v.file for v in m.variants
                 if v.kind == "onnx" and v.role == graph_io.CLIP and v.precision != "int8"}
        int8 = m.int8_graph_for(version)
        if int8 is not None:
            files["int8"] = staging.tmp / int8.file
        elif "int8" in pkg.precisions("onnx") and pk.ENGINE_PRECISION_FOR[opts.precision] == "int8" \
                and opts.calib_mode == "explicit":
            have = ", ".join(f"{v.file} (TensorRT {pk.format_serves(v.serves)})" for v in m.variants
                             if (v.kind, v.precision) == ("onnx", "int8"))
            raise pk.PackageError(f"{pkg.root} has no INT8 graph for TensorRT {trt_mod.format_version(version)}: it has "
                                  f"{have}; rebuild the package with --target auto (both INT8 forms), or build this "
                                  "engine with --precision fp16")
        engine = _compile(opts, staging.tmp, files, pkg.config, m.float_modules)
        build = opts.build_record(m.build.target)  # the package's target stays
        pk.write(staging.tmp, m.replace(variants=tuple(v for v in m.variants if v.kind != "tensorrt") + (engine,),
                                        command=_command(), build=build))
        staging.commit()
    except BaseException as exc:
        staging.discard()
        reraise_write_error(exc, out)
        raise
    pk.load(out)
    return engine


# -- CLI ------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    d = defaults_of(BuildOptions)
    p = CliParser(prog="python -m aknet_edge.build", description=__doc__.splitlines()[0])
    add_model_args(p, default_preset=None)
    p.add_argument("--checkpoint", help="safetensors checkpoint (default: the bundled demo model)")
    p.add_argument("--precision", choices=BUILD_PRECISIONS, default=d["precision"],
                   help=f"graphs to build; best = {', '.join(pk.PRECISIONS)} with an INT8 engine (default %(default)s)")
    p.add_argument("--calib", default=d["calib"],
                   help=f"calibration data: folder of videos/frame folders, list file, or '{SYNTHETIC}'")
    p.add_argument("--calib-method", choices=CALIB_METHODS, default=d["calib_method"])
    p.add_argument("--calib-percentile", type=float, default=d["calib_percentile"],
                   help="range covered by the percentile method (default %(default)s, measured best on the demo)")
    p.add_argument("--calib-clips", type=int, default=d["calib_clips"])
    p.add_argument("--calib-mode", choices=CALIB_MODES, default=d["calib_mode"],
                   help="explicit: INT8 Q/DQ graph (every TensorRT); implicit: TensorRT 8.5-10.x calibrator + cache")
    p.add_argument("--batch", default=",".join(map(str, d["batch"])),
                   help="MIN,OPT,MAX batch for the engine's optimization profile (default %(default)s)")
    p.add_argument("--workspace", type=int, default=d["workspace_mb"], help="TensorRT workspace in MiB")
    p.add_argument("--max-streams", type=int, default=d["max_streams"], metavar="N",
                   help="cameras one engine call batches (aknet_edge.runtime.MultiRecognizer); raises the batch "
                        "profile's MAX to N and is recorded in the manifest (default: the batch MAX)")
    p.add_argument("--dla", type=int, default=d["dla"], help="Jetson DLA core (GPU fallback on)")
    p.add_argument("--target", default=d["target"], choices=(AUTO_TARGET, *_targets()))
    p.add_argument("--eval", dest="eval_data", default=d["eval_data"],
                   help=f"held-out data: '{SYNTHETIC}' or a labelled folder")
    p.add_argument("--eval-clips-per-class", type=int, default=d["eval_clips_per_class"],
                   help="held-out synthetic clips per class")
    add_bool_flag(p, "--compare", d["compare_methods"], "also quantize with the other calibration methods and report "
                  "them side by side", dest="compare_methods")
    p.add_argument("--out", default=str(d["out"]))
    p.add_argument("--check-only", action="store_true", help="export, lower and check for the target; write nothing")
    add_bool_flag(p, "--force", d["force"], "replace --out if it exists")
    p.add_argument("--from", dest="from_pkg", help="finish a portable package on the target device (compile its engine)")
    p.add_argument("--triton-repo", metavar="DIR", help="also write a Triton Inference Server model repository "
                   "(aknet_clip, aknet_stream) from the package into DIR (--force replaces only such a repository); "
                   "with --from: only the repository, from PACKAGE as it is (no engine is compiled)")
    add_bool_flag(p, "--require-engine", d["require_engine"], "fail unless a TensorRT engine was built")
    p.add_argument("--plugin-lib", dest="plugin_libs", action="append", default=[], metavar="PATH",
                   help="TensorRT plugin library (.so) to load before parsing; repeatable; recorded in the manifest")
    add_bool_flag(p, "--progress", d["progress"], "show the build's progress")
    return p


def options_from_args(args: argparse.Namespace, config: Optional[ModelConfig] = None) -> BuildOptions:
    """The flags as :class:`BuildOptions` (validated there, with the same messages as the API)."""
    names = {f.name for f in fields(BuildOptions)}
    values = dict(out=Path(args.out), checkpoint=Path(args.checkpoint) if args.checkpoint else None, config=config,
                  precision=args.precision, calib=args.calib, calib_method=args.calib_method,
                  calib_percentile=args.calib_percentile, calib_mode=args.calib_mode, calib_clips=args.calib_clips,
                  batch=parse_batch(args.batch), workspace_mb=args.workspace, dla=args.dla, target=args.target,
                  eval_data=args.eval_data, force=args.force, eval_clips_per_class=args.eval_clips_per_class,
                  compare_methods=args.compare_methods, require_engine=args.require_engine, progress=args.progress,
                  max_streams=args.max_streams,
                  plugin_libs=tuple(args.plugin_libs))
    assert set(values) <= names
    return BuildOptions(**values)


def main(argv: Optional[List[str]] = None) -> int:
    from .evaluate import format_accuracy

    args = parser().parse_args(argv)
    quiet_onnxruntime()
    config = config_from_args(args) if (args.config or args.preset or args.overrides or args.arch) else None
    opts = options_from_args(args, config)
    if args.triton_repo:
        from .triton_repo import check_target

        check_target(Path(os.path.abspath(args.triton_repo)), args.force)  # before a long build, not after it
        if args.from_pkg:
            return _write_triton_repo(Path(args.from_pkg), Path(args.triton_repo), args.force)
    if args.from_pkg:
        engine = finish_on_device(Path(args.from_pkg), opts)
        assert engine.engine is not None
        print(f"engine {engine.file} ({engine.precision}, TensorRT {engine.engine.tensorrt_version}, "
              f"{engine.engine.gpu}) added: {opts.out}")
        return 0
    if args.check_only:
        return _check_only(opts)
    res = build(opts)
    n = res.variants[0].clips if res.variants else 0
    print(f"\naccuracy on {n} held-out clips ({opts.eval_data}), ONNX Runtime CPU:")
    print(format_accuracy(res.variants))
    print(f"\npackage: {res.out} ({res.seconds:.0f} s)")
    print(res.next_step)
    if args.triton_repo:
        return _write_triton_repo(res.out, Path(args.triton_repo), args.force)
    return 0


def _write_triton_repo(package_dir: Path, out: Path, force: bool) -> int:
    from .triton_repo import write_triton_repo

    repo = write_triton_repo(package_dir, out, force=force)
    print(f"\nTriton repository {repo.root}:")
    for name, path in repo.models.items():
        print(f"  {name:<13} {path}")
    for note in repo.notes:
        print(f"  note: {note}")
    print(f"serve it: tritonserver --model-repository {repo.root} (README: Serving with Triton)")
    return 0


def _check_only(opts: BuildOptions) -> int:
    from .export.check import check, errors
    from .export.lower import lower
    from .export.onnx_export import to_onnx
    from .export.targets import TENSORRT_TARGETS

    model, _ = _load_model(opts)
    targets = tuple(TENSORRT_TARGETS) + ("onnxruntime",) if opts.target == AUTO_TARGET else (opts.target,)
    graph = lower(to_onnx(model), BASE_LOWERING if opts.target == AUTO_TARGET else opts.target)
    bad = 0
    for t in targets:
        found = check(graph, t, dla=opts.dla is not None and t == opts.target)
        bad += len(errors(found))
        print(f"{t}: " + ("clean" if not found else "; ".join(map(str, found))))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
