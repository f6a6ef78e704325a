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
import glob
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import graph_io, trt_eras
from . import package as pk
from .calibration.options import (CALIB_METHODS, CALIB_MODES, DEFAULT_CLIPS, DEFAULT_METHOD, DEFAULT_PERCENTILE,
                                  check_method, check_percentile)
from .cli_common import (CliParser, add_bool_flag, add_model_args, config_from_args, defaults_of, quiet_onnxruntime,
                         run_cli)
from .config import ModelConfig
from .engine import compile_engine, engine_precision
from .errors import AknetError, ConfigError, DataError
from .evaluate import EVAL_CLIPS_PER_CLASS
from .io_utils import WriteError, os_error_reason
from .media import SYNTHETIC

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


def _whole(flag: str, value: object, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{flag} {value}: expected a whole number >= {minimum}")


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
        _whole("--calib-seed", self.calib_seed, 0)
        if self.calib_mode not in CALIB_MODES:
            raise ConfigError(f"--calib-mode {self.calib_mode!r}: expected one of {', '.join(CALIB_MODES)}")
        b = tuple(self.batch)
        if len(b) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in b) \
                or not 1 <= b[0] <= b[1] <= b[2]:
            raise ConfigError(f"--batch {','.join(map(str, b))}: {BATCH_RULE}")
        object.__setattr__(self, "batch", b)
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

    @property
    def graph_precisions(self) -> List[str]:
        """The graphs to export: FP32 always (the reference), plus what was asked for."""
        return list(pk.PRECISIONS) if self.precision == "best" else (
            ["fp32"] if self.precision == "fp32" else ["fp32", self.precision])

    @property
    def wants_engine(self) -> bool:
        return self.target == AUTO_TARGET or self.target.startswith("tensorrt")

    def build_record(self) -> pk.BuildRecord:
        return pk.BuildRecord(self.batch, self.workspace_mb, self.dla, self.target)


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


def _check_graphs(paths: Dict[str, Path], target: str) -> None:
    import onnx

    from .export.check import check, errors
    from .export.targets import TENSORRT_TARGETS

    targets = TENSORRT_TARGETS if target in (AUTO_TARGET, "onnxruntime") else (target,)
    for path in paths.values():
        g = onnx.load(str(path))
        for t in tuple(targets) + ("onnxruntime",):
            bad = errors(check(g, t))
            if bad:
                raise AknetError(f"{path.name} fails the {t} check: " + "; ".join(map(str, bad)))


class BuildLockedError(AknetError, RuntimeError):
    """Another build is writing the same ``--out`` right now."""


LOCK_SUFFIX = ".lock"


class _BuildLock:
    """An exclusive lock on ``--out``: the file ``.NAME.lock`` beside it, held with ``flock`` for the build.

    The kernel drops the lock when its process ends however it ends, so a lock file left by a killed build
    is stale by construction and simply taken over; the holder's pid in the file is only for the message.
    The file is removed on release (re-checked by inode, so a build never holds a lock on a removed file).
    Where ``fcntl`` is missing (not Linux or macOS), ``O_EXCL`` creation with a pid liveness check stands in.
    """

    def __init__(self, out: Path) -> None:
        self.path = out.parent / f".{out.name}{LOCK_SUFFIX}"
        self.out = out
        self._fd: Optional[int] = None

    def acquire(self) -> "_BuildLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux
            return self._acquire_excl()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(self.path)
                os.close(fd)
                raise BuildLockedError(
                    f"another build{f' (pid {holder})' if holder else ''} is writing {self.out} right now "
                    f"(lock {self.path}); wait for it to finish or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed the file between our open and our lock: retry
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _acquire_excl(self) -> "_BuildLock":  # pragma: no cover - not on Linux
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_pid(self.path)
                if holder and _alive(holder):
                    raise BuildLockedError(f"another build (pid {holder}) is writing {self.out} right now (lock "
                                           f"{self.path}); wait for it to finish or choose another --out") from None
                log.warning("removing the stale build lock %s (pid %s is gone)", self.path, holder)
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise BuildLockedError(f"cannot take the build lock {self.path}; remove it if no build is running")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: a waiter then sees a new inode and retries
        except OSError:
            pass
        os.close(self._fd)  # drops the flock
        self._fd = None


def _read_pid(path: Path) -> Optional[int]:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _alive(pid: int) -> bool:  # pragma: no cover - only without fcntl
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_package_dir(path: Path) -> bool:
    """Whether ``path`` is a model package folder: a real folder whose ``manifest.json`` parses as a package."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        pk.read_manifest(path)
    except (AknetError, OSError, ValueError):
        return False
    return True


def _check_replaceable(out: Path) -> None:
    """``--force`` replaces a model package and nothing else: not any other folder or file, never the current
    folder or one of its parents, never through a symbolic link."""
    where = out.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        raise ConfigError(f"--out {out} is the current folder or a parent of it; --force never replaces that: "
                          "choose a new folder for the package")
    if out.is_symlink():
        raise ConfigError(f"--out {out} is a symbolic link; --force replaces only a package folder: remove the link "
                          "or choose another --out")
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a model package; --force replaces only a package folder: "
                          "remove it yourself or choose another --out")
    if not is_package_dir(out):
        raise ConfigError(f"--out {out} is a folder but not a model package (no valid {pk.MANIFEST}); --force "
                          "replaces only a package folder: remove it yourself or choose another --out")


class _DeferSignals:
    """Hold SIGINT/SIGTERM while a few renames run, then deliver them: a package is never half moved."""

    def __enter__(self) -> "_DeferSignals":
        self.pending: List[int] = []
        self.old: Dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, lambda signum, _f: self.pending.append(signum))
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        for s in self.pending:
            handler = self.old.get(s)
            if callable(handler):
                handler(s, None)
            elif handler != signal.SIG_IGN:  # the default action (None: a handler not set from Python)
                os.kill(os.getpid(), s)


class _Staging:
    """A temporary folder beside ``out`` that becomes ``out`` only when everything in it is written.

    Holds ``out``'s build lock from start to commit or discard. ``force`` replaces only an existing model
    package (:func:`_check_replaceable`); the old package is renamed aside, the new one renamed in, and only
    then the old one removed, so an interruption leaves either package, never neither.
    """

    def __init__(self, out: Path, force: bool) -> None:
        self.out = out
        self.force = force
        if not out.name or out.name in (".", ".."):
            out = self.out = Path(os.path.abspath(out))
        if not out.name:
            raise ConfigError(f"--out {out}: expected a folder for the package, not the root")
        self._check_target()  # before the lock: an --out we must refuse gets no lock file beside it
        self._lock = _BuildLock(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except OSError as exc:
            raise ConfigError(f"cannot write the package to {out}: {os_error_reason(exc)}") from None
        try:
            self._check_target()
            self._remove_stale()
            self.tmp = Path(os.path.join(out.parent, f".{out.name}.building-{os.getpid()}"))
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
        except OSError as exc:
            self._lock.release()
            raise ConfigError(f"cannot write the package to {out}: {os_error_reason(exc)}") from None
        except BaseException:
            self._lock.release()
            raise

    def _check_target(self) -> None:
        if os.path.lexists(self.out):
            if not self.force:
                raise ConfigError(f"{self.out} already exists; pass --force to replace it or choose another --out")
            _check_replaceable(self.out)

    def _remove_stale(self) -> None:
        """Temporary folders of builds into ``out`` that were killed: we hold the lock, so none is running."""
        for p in self.out.parent.glob(f".{glob.escape(self.out.name)}.building-*"):
            if p.is_dir() and not p.is_symlink():
                log.info("removing %s, left by an interrupted build", p)
                shutil.rmtree(p, ignore_errors=True)
        for p in self.out.parent.glob(f".{glob.escape(self.out.name)}.replaced-*"):
            if not os.path.lexists(self.out):  # killed between its two renames: this is the only copy
                log.warning("%s holds the package %s had before an interrupted build; move it back to keep it",
                            p, self.out)
            elif p.is_dir() and not p.is_symlink() and is_package_dir(p):
                shutil.rmtree(p, ignore_errors=True)

    def commit(self) -> None:
        with _DeferSignals():
            try:
                self._check_target()  # still ours to write: nothing appeared at --out while we built
                old = None
                if os.path.lexists(self.out):
                    old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
                    os.replace(self.out, old)
                try:
                    os.replace(self.tmp, self.out)
                except BaseException:
                    if old is not None:
                        os.replace(old, self.out)
                    raise
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError as exc:
                raise ConfigError(f"cannot write the package to {self.out}: {os_error_reason(exc)}") from None
            finally:
                self._lock.release()

    def discard(self) -> None:
        with _DeferSignals():
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._lock.release()


def build(opts: BuildOptions) -> BuildResult:
    """Run every step into a temporary folder, then rename it to ``opts.out``."""
    from tqdm import tqdm

    from .evaluate import eval_set, evaluate_variants
    from .export.lower import lower
    from .export.onnx_export import save, to_onnx, to_split_onnx

    start = time.time()
    out = opts.out
    staging = _Staging(out, opts.force)
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
        steps = tqdm(total=6, desc="build", disable=not opts.progress, bar_format="{desc}: {n}/{total} {postfix}")
        steps.set_postfix_str("load model")
        model, source = _load_model(opts)
        cfg: ModelConfig = model.cfg
        steps.update()
        steps.set_postfix_str("export + lower")
        graph = lower(to_onnx(model), BASE_LOWERING)
        files = {"fp32": save(graph, tmp / "model.fp32.onnx")}
        split: Dict[str, Path] = {}
        if cfg.arch == "aknet" and cfg.shift != "offline":
            enc, head = to_split_onnx(model)
            split = {graph_io.FRAME_ENCODER: save(lower(enc, BASE_LOWERING), tmp / "frame_encoder.fp32.onnx"),
                     graph_io.CLIP_HEAD: save(lower(head, BASE_LOWERING), tmp / "clip_head.fp32.onnx")}
        steps.update()
        if "fp16" in opts.graph_precisions:
            steps.set_postfix_str("fp16")
            from .calibration.precision import convert_fp16

            files["fp16"] = save(convert_fp16(graph, _float_nodes(model, graph, "fp16")), tmp / "model.fp16.onnx")
        steps.update()
        methods: Dict[str, str] = {}
        calibration = None
        if "int8" in opts.graph_precisions:
            steps.set_postfix_str(f"calibrate ({opts.calib})")
            calibration = _quantize(opts, model, graph, tmp, out, files, methods)
        steps.update()
        steps.set_postfix_str("check")
        _check_graphs({**files, **split}, opts.target)
        steps.update()
        steps.set_postfix_str("evaluate")
        x, y = eval_set(cfg, opts.eval_data, opts.eval_clips_per_class)
        reports = evaluate_variants(files, x, y, methods, cfg.grid)
        steps.update()
        steps.close()
        for name in [n for n in files if ":" in n]:  # comparison-only graphs are not shipped
            files.pop(name).unlink()
        engine, next_step = _maybe_engine(opts, tmp, files, cfg)
        variants = [pk.Variant.of_file(tmp, p.name, name, "onnx", graph_io.CLIP) for name, p in files.items()]
        variants += [pk.Variant.of_file(tmp, p.name, "fp32", "onnx", role) for role, p in split.items()]
        manifest = pk.Manifest(
            config=cfg, labels=tuple(cfg.class_names), preprocessing=pk.Preprocessing.from_clip(cfg.clip),
            io={graph_io.CLIP: pk.GraphIO.from_onnx(files["fp32"]),
                **{role: pk.GraphIO.from_onnx(p) for role, p in split.items()}},
            variants=tuple(variants) + ((engine,) if engine else ()), created_by=_created_by(), command=_command(),
            source=source, source_sha256=pk.sha256_file(source) if Path(source).is_file() else None,
            calibration=calibration, accuracy=tuple(reports), lowering=BASE_LOWERING, build=opts.build_record())
        pk.write(tmp, manifest)
        staging.commit()
    except BaseException as exc:
        if steps is not None:
            steps.close()
        staging.discard()
        _reraise_write_error(exc, out)
        raise
    pk.load(out)  # verify what we wrote
    return BuildResult(out, reports, engine, next_step, time.time() - start)


def _quantize(opts: BuildOptions, model, graph, tmp: Path, out: Path, files: Dict[str, Path],
              methods: Dict[str, str]) -> pk.Calibration:
    """The INT8 Q/DQ graph (and, with ``compare_methods``, the other methods' graphs for the report)."""
    from .calibration import load_calibration_set, quantize_int8
    from .export.onnx_export import save

    cfg: ModelConfig = model.cfg
    cal = load_calibration_set(opts.calib, cfg.clip, opts.calib_clips, opts.calib_seed,
                               cache_dir=out.parent / ".aknet_calib_cache", progress=opts.progress)
    keep_float = _float_nodes(model, graph, "int8")
    files["int8"] = save(quantize_int8(graph, cal.clips, opts.calib_method, keep_float, opts.calib_percentile),
                         tmp / "model.int8.onnx")
    methods["int8"] = opts.calib_method
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


def _maybe_engine(opts: BuildOptions, tmp: Path, files: Dict[str, Path],
                  cfg: ModelConfig) -> Tuple[Optional[pk.Variant], str]:
    """Compile a TensorRT engine where TensorRT is importable; otherwise say how to finish on the device."""
    if not opts.wants_engine:
        return None, f"ONNX Runtime package: run it with python -m aknet_edge.run --package {opts.out}"
    try:
        from .runtime import trt as trt_mod

        trt_mod.load_tensorrt()
    except ImportError as exc:
        hint = (f"on the target device run: python -m aknet_edge.build --from {opts.out} --out {opts.out}-engine"
                f"{'' if opts.target == AUTO_TARGET else ' --target ' + opts.target}")
        if opts.require_engine:
            raise EngineUnavailable(f"--require-engine: {exc}; {hint}") from None
        return None, f"TensorRT not found here: portable package ready; {hint}"
    engine = _compile(opts, tmp, files, cfg)
    assert engine.engine is not None
    return engine, f"engine {engine.file} for TensorRT {engine.engine.tensorrt_version} on {engine.engine.gpu}"


def _compile(opts: BuildOptions, pkg_dir: Path, files: Dict[str, Path], cfg: ModelConfig) -> pk.Variant:
    precision = engine_precision(opts.precision, files, opts.calib_mode)
    clips = None
    if opts.calib_mode == "implicit" and precision == "int8":
        # TensorRT 8.5-10.x only (make_calibrator refuses 11): the FP32 graph plus a calibrator and its cache
        from .calibration import load_calibration_set

        clips = load_calibration_set(opts.calib, cfg.clip, opts.calib_clips, opts.calib_seed,
                                     cache_dir=pkg_dir.parent / ".aknet_calib_cache").clips
    return compile_engine(pkg_dir, files, precision, opts.batch, opts.workspace_mb, opts.dla, opts.calib_mode,
                          clips, opts.calib_method)


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
    out = opts.out
    if out.resolve() == pkg.root.resolve():
        raise ConfigError(f"--out {out} must be a new folder, not the package itself")
    staging = _Staging(out, opts.force)
    try:
        shutil.copytree(pkg.root, staging.tmp)
        m = pkg.manifest
        for old in (v for v in m.variants if v.kind == "tensorrt"):  # the engine this build replaces
            (staging.tmp / old.file).unlink(missing_ok=True)
            if old.engine is not None and old.engine.calibration_cache:
                (staging.tmp / old.engine.calibration_cache).unlink(missing_ok=True)
        files = {v.precision: staging.tmp / v.file for v in m.variants if v.kind == "onnx" and v.role == graph_io.CLIP}
        engine = _compile(opts, staging.tmp, files, pkg.config)
        build = pk.BuildRecord(opts.batch, opts.workspace_mb, opts.dla, m.build.target)  # the package's target stays
        pk.write(staging.tmp, m.replace(variants=tuple(v for v in m.variants if v.kind != "tensorrt") + (engine,),
                                        command=_command(), build=build))
        staging.commit()
    except BaseException as exc:
        staging.discard()
        _reraise_write_error(exc, out)
        raise
    pk.load(out)
    return engine


def _reraise_write_error(exc: BaseException, out: Path) -> None:
    """A file of the package the filesystem refused (disk full, read-only, ...): say so about ``out``, whose
    temporary folder is already gone, rather than about a file inside that folder."""
    if isinstance(exc, OSError) and (not isinstance(exc, AknetError) or isinstance(exc, WriteError)):
        reason = getattr(exc, "reason", None) or os_error_reason(exc)
        raise WriteError(f"cannot write the package to {out}: {reason}; nothing was written") from None


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
    add_bool_flag(p, "--require-engine", d["require_engine"], "fail unless a TensorRT engine was built")
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
                  compare_methods=args.compare_methods, require_engine=args.require_engine, progress=args.progress)
    assert set(values) <= names
    return BuildOptions(**values)


def main(argv: Optional[List[str]] = None) -> int:
    from .evaluate import format_accuracy

    args = parser().parse_args(argv)
    quiet_onnxruntime()
    config = config_from_args(args) if (args.config or args.preset or args.overrides or args.arch) else None
    opts = options_from_args(args, config)
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
        found = check(graph, t)
        bad += len(errors(found))
        print(f"{t}: " + ("clean" if not found else "; ".join(map(str, found))))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
