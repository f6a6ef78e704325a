"""``python -m aknet_edge.build``: from a model to a deployable package, in one command.

    checkpoint -> ONNX (custom nodes) -> lowered ONNX -> FP16 / INT8 Q/DQ ONNX
               -> [TensorRT engine, where TensorRT and a GPU are present] -> package folder

Every step is a function of its own; the CLI only parses flags and composes
them. The package is built in a temporary folder beside ``--out`` and renamed
into place at the end, so no half-written package ever looks complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cli_common import add_model_args, config_from_args, run_cli
from .config import ModelConfig
from .errors import AknetError, ConfigError, DataError
from .io_utils import atomic_write_text
from .package import MANIFEST, SCHEMA_VERSION, load, sha256_file, variant_entry

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "int8", "best")
BASE_LOWERING = "tensorrt-8.5"  # the strictest target; its graph runs on every other one and in ONNX Runtime
DEFAULT_OUT = "aknet_demo_package"


class EngineUnavailable(AknetError, RuntimeError):
    """An engine was required but TensorRT or a GPU is not present here."""


@dataclass(frozen=True)
class BuildOptions:
    """Everything the build needs; the CLI fills it from flags."""

    out: Path = Path(DEFAULT_OUT)
    checkpoint: Path | None = None
    config: ModelConfig | None = None  # an untrained model from a config (cost/graph work only)
    precision: str = "best"
    calib: str = "synthetic"
    calib_method: str = "percentile"  # measured best on the demo (README, INT8 section)
    calib_percentile: float = 99.99
    calib_clips: int = 64
    calib_seed: int = 0
    calib_mode: str = "explicit"  # "implicit": TensorRT < 11 calibrates the FP32 graph itself (cache kept in the package)
    compare_methods: bool = True  # also quantize with the other methods and report them side by side
    batch: tuple[int, int, int] = (1, 1, 4)
    workspace_mb: int = 1024
    dla: int | None = None
    target: str = "auto"
    eval_data: str = "synthetic"
    eval_clips_per_class: int = 30
    force: bool = False
    require_engine: bool = False
    progress: bool = True


@dataclass
class VariantReport:
    precision: str
    file: str
    top1: float
    agreement: float
    keypoint_iou: float
    clips: int
    calib_method: str | None = None


@dataclass
class BuildResult:
    out: Path
    variants: list[VariantReport] = field(default_factory=list)
    engine: dict | None = None
    next_step: str = ""
    seconds: float = 0.0


def _precisions(p: str) -> list[str]:
    if p not in PRECISIONS:
        raise ConfigError(f"--precision {p!r}: expected one of {', '.join(PRECISIONS)}")
    return ["fp32", "fp16", "int8"] if p == "best" else (["fp32"] if p == "fp32" else ["fp32", p])


def _load_model(opts: BuildOptions):
    from .checkpoint import DEMO_WEIGHTS, load_checkpoint
    from .model import build_model

    if opts.config is not None:
        log.warning("building from a config alone: the model is untrained (use --checkpoint for real weights)")
        return build_model(opts.config).eval(), "config"
    path = opts.checkpoint or DEMO_WEIGHTS
    return load_checkpoint(path), str(path)


def _eval_set(cfg: ModelConfig, opts: BuildOptions) -> tuple[np.ndarray, np.ndarray]:
    if opts.eval_data == "synthetic":
        from .evaluate import heldout_synthetic

        return heldout_synthetic(cfg, opts.eval_clips_per_class)
    from .data import LabelledFolder

    x, y, _ = LabelledFolder.scan(opts.eval_data, cfg.labels or None).load(cfg.clip)
    return x, y


def run_onnx(path: Path, x: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Logits and keypoints of a graph over clips, with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    logits, kps = [], []
    for i in range(0, len(x), batch):
        out = sess.run(None, {"clip": x[i : i + batch]})
        logits.append(out[0])
        kps.append(out[1] if len(out) > 1 else np.zeros((len(out[0]), 0, 3), np.float32))
    return np.concatenate(logits), np.concatenate(kps)


def grid_positions(coords: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Normalised (t, y, x) keypoint coordinates back to integer grid cells (robust to FP16 rounding)."""
    t, h, w = grid
    scale = np.array([max(t - 1, 1), h, w], np.float32)
    offset = np.array([0.0, 0.5, 0.5], np.float32)
    return np.rint(coords.astype(np.float32) * scale - offset).astype(np.int64)


def keypoint_iou(a: np.ndarray, b: np.ndarray, grid: tuple[int, int, int]) -> float:
    """Mean over clips of |A & B| / |A | B| for the kept keypoint cells."""
    if a.shape[1] == 0:
        return 1.0
    ious = []
    for ka, kb in zip(grid_positions(a, grid), grid_positions(b, grid)):
        sa, sb = set(map(tuple, ka.tolist())), set(map(tuple, kb.tolist()))
        ious.append(len(sa & sb) / max(1, len(sa | sb)))
    return float(np.mean(ious))


def evaluate_variants(files: dict[str, Path], x: np.ndarray, y: np.ndarray, methods: dict[str, str],
                      grid: tuple[int, int, int]) -> list[VariantReport]:
    """Top-1, agreement with FP32 and keypoint-set overlap with FP32 for every variant."""
    ref_logits, ref_kp = run_onnx(files["fp32"], x)
    ref_pred = ref_logits.argmax(1)
    reports = []
    for name, path in files.items():
        logits, kp = (ref_logits, ref_kp) if name == "fp32" else run_onnx(path, x)
        pred = logits.argmax(1)
        reports.append(VariantReport(name.split(":")[0], path.name, float((pred == y).mean()),
                                     float((pred == ref_pred).mean()), keypoint_iou(kp, ref_kp, grid), len(y), methods.get(name)))
    return reports


def build(opts: BuildOptions) -> BuildResult:
    """Run every step into a temporary folder, then rename it to ``opts.out``."""
    from tqdm import tqdm

    from .export.check import check, errors
    from .export.lower import lower
    from .export.onnx_export import save, to_onnx, to_split_onnx
    from .export.targets import TARGETS, TENSORRT_TARGETS

    start = time.time()
    precisions = _precisions(opts.precision)
    if opts.target != "auto" and opts.target not in TARGETS:
        raise ConfigError(f"--target {opts.target!r}: expected auto or one of {', '.join(TARGETS)}")
    out = Path(opts.out)
    if out.exists() and not opts.force:
        raise ConfigError(f"{out} already exists; pass --force to replace it or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(os.path.join(out.parent, f".{out.name}.building-{os.getpid()}"))
        tmp.mkdir()
    except OSError as exc:
        raise ConfigError(f"cannot write the package to {out}: {exc.strerror or exc}") from None
    steps = tqdm(total=6, desc="build", disable=not opts.progress, bar_format="{desc}: {n}/{total} {postfix}")
    try:
        steps.set_postfix_str("load model")
        model, source = _load_model(opts)
        cfg: ModelConfig = model.cfg
        steps.update()
        steps.set_postfix_str("export + lower")
        graph = lower(to_onnx(model), BASE_LOWERING)
        files = {"fp32": save(graph, tmp / "model.fp32.onnx")}
        split = {}
        if cfg.arch == "aknet" and cfg.shift != "offline":
            enc, head = to_split_onnx(model)
            split = {"frame_encoder": save(lower(enc, BASE_LOWERING), tmp / "frame_encoder.fp32.onnx"),
                     "clip_head": save(lower(head, BASE_LOWERING), tmp / "clip_head.fp32.onnx")}
        steps.update()
        methods: dict[str, str] = {}
        calib_info = None
        if "fp16" in precisions:
            steps.set_postfix_str("fp16")
            from .calibration.precision import convert_fp16

            files["fp16"] = save(convert_fp16(graph), tmp / "model.fp16.onnx")
        steps.update()
        if "int8" in precisions:
            steps.set_postfix_str(f"calibrate ({opts.calib})")
            from .calibration import CALIB_METHODS, load_calibration_set, quantize_int8

            cal = load_calibration_set(opts.calib, cfg.clip, opts.calib_clips, opts.calib_seed,
                                       cache_dir=out.parent / ".aknet_calib_cache", progress=opts.progress)
            calib_info = {"source": cal.source, "clips": int(len(cal.clips)), "skipped": cal.skipped,
                          "method": opts.calib_method, "seed": opts.calib_seed,
                          **({"percentile": opts.calib_percentile} if opts.calib_method == "percentile" else {})}
            from .calibration.precision import scorer_feed_prefixes

            tail = scorer_feed_prefixes(cfg.cut) if cfg.arch == "aknet" else ()
            files["int8"] = save(quantize_int8(graph, cal.clips, opts.calib_method, tail, opts.calib_percentile),
                                 tmp / "model.int8.onnx")
            methods["int8"] = opts.calib_method
            if opts.compare_methods:
                for m in CALIB_METHODS:
                    if m != opts.calib_method:
                        files[f"int8:{m}"] = save(quantize_int8(graph, cal.clips, m, tail, opts.calib_percentile),
                                                  tmp / f"compare.int8-{m}.onnx")
                        methods[f"int8:{m}"] = m
        steps.update()
        steps.set_postfix_str("check")
        targets = TENSORRT_TARGETS if opts.target in ("auto", "onnxruntime") else (opts.target,)
        import onnx

        for name, path in {**files, **split}.items():
            g = onnx.load(str(path))
            for t in targets + ("onnxruntime",):
                bad = errors(check(g, t))
                if bad:
                    raise AknetError(f"{path.name} fails the {t} check: " + "; ".join(map(str, bad)))
        steps.update()
        steps.set_postfix_str("evaluate")
        x, y = _eval_set(cfg, opts)
        reports = evaluate_variants(files, x, y, methods, cfg.grid)
        steps.update()
        steps.close()
        for name in [n for n in files if ":" in n]:  # comparison-only graphs are not shipped
            files.pop(name).unlink()
        engine, next_step = _maybe_engine(opts, tmp, files, cfg)
        _write_manifest(tmp, cfg, source, files, split, reports, calib_info, engine, opts)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        steps.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load(out)  # verify what we wrote
    return BuildResult(out, reports, engine, next_step, time.time() - start)


def _maybe_engine(opts: BuildOptions, tmp: Path, files: dict[str, Path], cfg: ModelConfig) -> tuple[dict | None, str]:
    """Compile a TensorRT engine where TensorRT is importable; otherwise say how to finish on the device."""
    want_trt = opts.target == "auto" or opts.target.startswith("tensorrt")
    if not want_trt:
        return None, f"ONNX Runtime package: run it with python -m aknet_edge.run --package {opts.out}"
    try:
        from .runtime import trt as trt_mod

        trt_mod.load_tensorrt()
    except ImportError as exc:
        hint = (f"on the target device run: python -m aknet_edge.build --from {opts.out} --out {opts.out}-engine"
                f"{'' if opts.target == 'auto' else ' --target ' + opts.target}")
        if opts.require_engine:
            raise EngineUnavailable(f"--require-engine: {exc}; {hint}") from None
        return None, f"TensorRT not found here: portable package ready; {hint}"
    engine = compile_engine(tmp, files, opts, cfg)
    return engine, f"engine {engine['file']} for TensorRT {engine['tensorrt_version']} on {engine['gpu']}"


def _engine_precision(opts: BuildOptions, files: dict[str, Path]) -> str:
    want = "int8" if opts.precision in ("best", "int8") else opts.precision
    return want if want in files else "fp32"


def compile_engine(pkg_dir: Path, files: dict[str, Path], opts: BuildOptions, cfg: ModelConfig) -> dict:
    """Build (or reuse from the engine cache) a TensorRT engine for the package's best variant."""
    from .package import sha256_file
    from .runtime import trt as trt_mod
    from .runtime.device_memory import gpu_identity

    precision = _engine_precision(opts, files)
    calibrator, cache_file = None, None
    if opts.calib_mode == "implicit" and precision == "int8":
        # TensorRT 8.5-10.x only (make_calibrator refuses 11): the FP32 graph plus a calibrator and its cache
        from .calibration import load_calibration_set

        cal = load_calibration_set(opts.calib, cfg.clip, opts.calib_clips,
                                   opts.calib_seed, cache_dir=pkg_dir.parent / ".aknet_calib_cache")
        cache_file = "calibration.cache"
        method = opts.calib_method if opts.calib_method in ("entropy", "minmax") else "entropy"
        calibrator = trt_mod.make_calibrator(method, (c[None] for c in cal.clips), pkg_dir / cache_file)
        files = {**files, "int8": files["fp32"]}
    onnx_path = files[precision]
    version = trt_mod.format_version(trt_mod.trt_version())
    gpu, cc = gpu_identity()
    io = _io(onnx_path)["inputs"][0]
    settings = trt_mod.BuildSettings(precision=precision, input_name=io["name"], input_shape=tuple(io["shape"][1:]),
                                     batch=opts.batch, workspace_bytes=opts.workspace_mb << 20, dla_core=opts.dla,
                                     timing_cache=_cache_dir() / f"timing-{version}-{cc}.cache")
    key = engine_cache_key(sha256_file(onnx_path), precision, {"input": io["shape"], "batch": list(opts.batch),
                           "dla": opts.dla, "calib": opts.calib_mode}, version, gpu, cc)
    cached = _cache_dir() / f"{key}.engine"
    if cached.exists() and calibrator is None:
        log.info("reusing cached engine %s (same ONNX, precision, shapes, TensorRT %s, %s)", cached.name, version, gpu)
        data = cached.read_bytes()
    else:
        log.info("building a %s TensorRT %s engine on %s (sm %s); this takes minutes", precision, version, gpu, cc)
        data = trt_mod.build_serialized_engine(onnx_path, settings, calibrator=calibrator)
        from .io_utils import atomic_write_bytes

        atomic_write_bytes(cached, data)
    name = f"model.{precision}.engine"
    (pkg_dir / name).write_bytes(data)
    return {"file": name, "precision": precision, "tensorrt_version": version, "gpu": gpu,
            "compute_capability": cc, "cache_key": key, "calibration": opts.calib_mode, "calibration_cache": cache_file,
            "flags": {"batch": list(opts.batch), "workspace_mb": opts.workspace_mb, "dla": opts.dla}}


def _cache_dir() -> Path:
    root = Path(os.environ.get("AKNET_EDGE_CACHE", Path.home() / ".cache" / "aknet_edge")) / "engines"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _io(path: Path) -> dict:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph

    def desc(v):
        t = v.type.tensor_type
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]}

    inits = {i.name for i in g.initializer}
    return {"inputs": [desc(v) for v in g.input if v.name not in inits], "outputs": [desc(v) for v in g.output]}


def _write_manifest(tmp: Path, cfg: ModelConfig, source: str, files: dict[str, Path], split: dict[str, Path],
                    reports: list[VariantReport], calib: dict | None, engine: dict | None, opts: BuildOptions) -> None:
    variants = [variant_entry(tmp, p.name, name, "onnx", role="clip") for name, p in files.items()]
    variants += [variant_entry(tmp, p.name, "fp32", "onnx", role=role) for role, p in split.items()]
    if engine:
        variants.append(variant_entry(tmp, engine["file"], engine["precision"], "tensorrt", role="clip",
                                      **{k: v for k, v in engine.items() if k not in ("file", "precision")}))
    labels = list(cfg.class_names)
    (tmp / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_by": "aknet_edge " + __import__("aknet_edge").__version__,
        "command": " ".join(["python -m aknet_edge.build", *sys.argv[1:]]),
        "source": source,
        "source_sha256": sha256_file(source) if Path(source).is_file() else None,
        "config": cfg.to_dict(),
        "labels": labels,
        "preprocessing": {"frames": cfg.clip.frames, "sampling": "time", "span_s": cfg.clip.span_s,
                          "size": [cfg.clip.size, cfg.clip.size], "mean": list(cfg.clip.mean), "std": list(cfg.clip.std),
                          "color": cfg.clip.color, "layout": "NTCHW", "scale": 1 / 255},
        "io": {"clip": _io(files["fp32"]), **{role: _io(p) for role, p in split.items()}},
        "variants": variants,
        "calibration": calib,
        "accuracy": [asdict(r) for r in reports],
        "lowering": BASE_LOWERING,
        "build": {"batch": list(opts.batch), "workspace_mb": opts.workspace_mb, "dla": opts.dla, "target": opts.target},
        "engine": engine,
    }
    atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))


def engine_cache_key(onnx_sha256: str, precision: str, shapes: dict, tensorrt_version: str, gpu: str,
                     compute_capability: str) -> str:
    """Engines are tied to TensorRT version and GPU: cache them by everything that changes the engine."""
    blob = json.dumps([onnx_sha256, precision, shapes, tensorrt_version, gpu, compute_capability], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def format_table(res: BuildResult) -> str:
    rows = [("variant", "file", "top-1 %", "agree w/ FP32 %", "keypoint IoU", "calib")]
    for r in res.variants:
        rows.append((r.precision, r.file, f"{100 * r.top1:.2f}", f"{100 * r.agreement:.2f}", f"{r.keypoint_iou:.3f}",
                     r.calib_method or "-"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .export.targets import TARGETS

    p = argparse.ArgumentParser(prog="python -m aknet_edge.build", description=__doc__.splitlines()[0])
    add_model_args(p, default_preset=None)
    p.add_argument("--checkpoint", help="safetensors checkpoint (default: the bundled demo model)")
    p.add_argument("--precision", choices=PRECISIONS, default="best")
    p.add_argument("--calib", default="synthetic", help="calibration data: folder of videos/frame folders, list file, or 'synthetic'")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="percentile")
    p.add_argument("--calib-percentile", type=float, default=99.99,
                   help="range covered by the percentile method (default 99.99, measured best on the demo)")
    p.add_argument("--calib-clips", type=int, default=64)
    p.add_argument("--calib-mode", choices=("explicit", "implicit"), default="explicit",
                   help="explicit: INT8 Q/DQ graph (every TensorRT); implicit: TensorRT 8.5-10.x calibrator + cache")
    p.add_argument("--batch", default="1,1,4", help="MIN,OPT,MAX batch for the engine's optimization profile")
    p.add_argument("--workspace", type=int, default=1024, help="TensorRT workspace in MiB")
    p.add_argument("--dla", type=int, help="Jetson DLA core (GPU fallback on)")
    p.add_argument("--target", default="auto", choices=("auto", *TARGETS))
    p.add_argument("--eval", dest="eval_data", default="synthetic", help="held-out data: 'synthetic' or a labelled folder")
    p.add_argument("--eval-clips-per-class", type=int, default=30, help="held-out synthetic clips per class")
    p.add_argument("--no-compare", action="store_true", help="skip the MinMax-vs-Entropy side-by-side INT8 report")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--check-only", action="store_true", help="export, lower and check for the target; write nothing")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--from", dest="from_pkg", help="finish a portable package on the target device (compile its engine)")
    p.add_argument("--require-engine", action="store_true", help="fail unless a TensorRT engine was built")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        batch = tuple(int(v) for v in args.batch.split(","))
        if len(batch) != 3 or not 1 <= batch[0] <= batch[1] <= batch[2]:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--batch {args.batch!r}: expected MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, e.g. 1,1,4") from None
    if args.calib_clips < 1:
        raise DataError(f"--calib-clips {args.calib_clips}: expected at least 1")
    if not 90.0 <= args.calib_percentile < 100.0:
        raise ConfigError(f"--calib-percentile {args.calib_percentile}: expected a value in [90, 100), e.g. 99.99")
    if args.from_pkg:
        return _finish_on_device(args)
    config = config_from_args(args) if (args.config or args.preset or args.overrides or args.arch) else None
    if args.check_only:
        return _check_only(args, config)
    opts = BuildOptions(out=Path(args.out), checkpoint=Path(args.checkpoint) if args.checkpoint else None, config=config,
                        precision=args.precision, calib=args.calib, calib_method=args.calib_method,
                        calib_percentile=args.calib_percentile, calib_mode=args.calib_mode,
                        calib_clips=args.calib_clips, batch=batch, workspace_mb=args.workspace, dla=args.dla,
                        target=args.target, eval_data=args.eval_data, force=args.force,
                        eval_clips_per_class=args.eval_clips_per_class, compare_methods=not args.no_compare,
                        require_engine=args.require_engine, progress=not args.no_progress)
    res = build(opts)
    n = len(res.variants[0:1]) and res.variants[0].clips
    print(f"\naccuracy on {n} held-out clips ({opts.eval_data}), ONNX Runtime CPU:")
    print(format_table(res))
    print(f"\npackage: {res.out} ({res.seconds:.0f} s)")
    print(res.next_step)
    return 0


def _check_only(args: argparse.Namespace, config: ModelConfig | None) -> int:
    from .export.check import check, errors
    from .export.lower import lower
    from .export.onnx_export import to_onnx
    from .export.targets import TENSORRT_TARGETS

    model, _ = _load_model(BuildOptions(checkpoint=Path(args.checkpoint) if args.checkpoint else None, config=config))
    targets = TENSORRT_TARGETS + ("onnxruntime",) if args.target == "auto" else (args.target,)
    graph = lower(to_onnx(model), BASE_LOWERING if args.target == "auto" else args.target)
    bad = 0
    for t in targets:
        found = check(graph, t)
        bad += len(errors(found))
        print(f"{t}: " + ("clean" if not found else "; ".join(map(str, found))))
    return 1 if bad else 0


def _finish_on_device(args: argparse.Namespace) -> int:
    """``--from PACKAGE``: add a TensorRT engine to a portable package, on the device that will run it."""
    from .package import load

    pkg = load(args.from_pkg)
    from .runtime import trt as trt_mod

    trt_mod.load_tensorrt()  # DependencyError with the install hint where TensorRT is absent
    out = Path(args.out)
    if out.resolve() == pkg.root.resolve() or (out.exists() and not args.force):
        raise ConfigError(f"--out {out} must be a new folder (or pass --force to replace it)")
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.copytree(pkg.root, tmp)
    try:
        files = {v["precision"]: tmp / v["file"] for v in pkg.variants if v["kind"] == "onnx" and v.get("role") == "clip"}
        batch = tuple(int(v) for v in args.batch.split(","))
        opts = BuildOptions(out=out, precision=args.precision, batch=batch, workspace_mb=args.workspace, dla=args.dla,
                            calib=args.calib, calib_method=args.calib_method, calib_clips=args.calib_clips,
                            calib_mode=args.calib_mode)
        engine = compile_engine(tmp, files, opts, ModelConfig.from_dict(pkg.manifest["config"]))
        manifest = dict(pkg.manifest)
        manifest["variants"] = [v for v in manifest["variants"] if v["kind"] != "tensorrt"] + [
            variant_entry(tmp, engine["file"], engine["precision"], "tensorrt", role="clip",
                          **{k: v for k, v in engine.items() if k not in ("file", "precision")})]
        manifest["engine"] = engine
        manifest["command"] = " ".join(["python -m aknet_edge.build", *sys.argv[1:]])
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load(out)
    print(f"engine {engine['file']} ({engine['precision']}, TensorRT {engine['tensorrt_version']}, {engine['gpu']}) "
          f"added: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
