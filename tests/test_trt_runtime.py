"""aknet_edge.runtime.trt: what runs without TensorRT here, and the GPU round trip where it exists.

Most of the module is testable without TensorRT because the per-version
decisions are pure functions (version parsing, settings validation, ONNX
inspection, the build plan). The tests at the end need real TensorRT, pycuda
and an NVIDIA GPU and skip elsewhere; nothing here stands in for TensorRT.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import run_py

from aknet_edge import trt_eras
from aknet_edge.errors import AknetError, ConfigError, DataError, DependencyError
from aknet_edge.export.targets import TARGETS, TENSORRT_TARGETS
from aknet_edge.runtime import trt as rt

TRT_REASON = "TensorRT is not installed (needs NVIDIA's libraries and a GPU)"
PYCUDA_REASON = "pycuda is not installed (pip install pycuda; needs nvcc and a GPU)"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- import and dependency errors


def test_imports_without_tensorrt_pycuda_onnx_or_torch():
    proc = run_py(
        "import sys\n"
        "for m in ('tensorrt', 'pycuda', 'torch', 'onnx'):\n"
        "    sys.modules[m] = None\n"
        "import aknet_edge.runtime.trt, aknet_edge.runtime.device_memory\n"
        "loaded = [m for m in ('tensorrt', 'pycuda', 'torch', 'onnx') if sys.modules.get(m) is not None]\n"
        "print('ok' if not loaded else loaded)\n")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


@pytest.mark.skipif(_installed("tensorrt"), reason="TensorRT is installed here; this checks the missing case")
def test_load_tensorrt_names_the_install_command():
    with pytest.raises(DependencyError) as info:
        rt.load_tensorrt()
    assert "pip install tensorrt (desktop) or JetPack's python3-libnvinfer (Jetson)" in str(info.value)
    assert isinstance(info.value, ImportError)  # callers may catch the built-in


@pytest.mark.skipif(_installed("tensorrt"), reason="TensorRT is installed here; this checks the missing case")
def test_entry_points_fail_with_the_dependency_error(tmp_path):
    settings = rt.BuildSettings("fp32", "clip", (2, 3))
    with pytest.raises(DependencyError, match="pip install tensorrt"):
        rt.build_serialized_engine(tmp_path / "m.onnx", settings)
    with pytest.raises(DependencyError, match="pip install tensorrt"):
        rt.EngineRunner(b"plan")
    with pytest.raises(DependencyError, match="pip install tensorrt"):
        rt.trt_version()


@pytest.mark.skipif(_installed("pycuda"), reason="pycuda is installed here; this checks the missing case")
def test_device_memory_names_the_pycuda_install_command():
    from aknet_edge.runtime.device_memory import load_pycuda

    with pytest.raises(DependencyError, match=r"pip install pycuda \(needs nvcc on PATH; on Jetson it is\)"):
        load_pycuda()


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize("text, expected", [
    ("8.5.2.2", (8, 5, 2)),   # JetPack 5.1
    ("8.6.2.3", (8, 6, 2)),   # JetPack 6.0
    ("10.3.0.30", (10, 3, 0)),  # JetPack 6.1/6.2
    ("10.3.0", (10, 3, 0)),
    ("10.14.1.48.post1", (10, 14, 1)),
    ("10.0.0b6", (10, 0, 0)),
    ("11.4.0.106", (11, 4, 0)),
    ("9.3", (9, 3, 0)),
])
def test_parse_trt_version(text, expected):
    assert rt.parse_trt_version(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10", "##TENSORRT_VERSION##"])
def test_parse_trt_version_rejects_garbage(text):
    with pytest.raises(rt.UnsupportedTensorRTError, match="cannot read a TensorRT version"):
        rt.parse_trt_version(text)


@pytest.mark.parametrize("version", [(8, 4, 3), (7, 2, 3), (12, 0, 0), (13, 1, 0)])
def test_unsupported_versions_are_refused_clearly(version):
    with pytest.raises(rt.UnsupportedTensorRTError, match=r"needs 8\.5 <= version < 12") as info:
        rt.check_supported(version)
    assert isinstance(info.value, DependencyError)


@pytest.mark.parametrize("version, era", [((8, 5, 2), 8), ((8, 6, 2), 8), ((9, 3, 0), 8), ((10, 0, 1), 10),
                                          ((10, 3, 0), 10), ((10, 16, 1), 10), ((11, 0, 0), 11), ((11, 4, 0), 11)])
def test_api_era(version, era):
    assert rt.check_supported(version) == version
    assert rt.api_era(version) == era


def test_feature_error_says_what_and_which_version():
    err = rt.TensorRTFeatureError("implicit INT8 calibration", (11, 0, 0), "use Q/DQ")
    assert str(err) == "implicit INT8 calibration is not available in TensorRT 11.0.0: use Q/DQ"
    assert isinstance(err, AknetError) and isinstance(err, RuntimeError)


# --------------------------------------------------------------------------- the era table, read by both sides


def test_era_table_is_contiguous_and_claims_only_supported_releases():
    eras = trt_eras.API_ERAS
    assert [e.number for e in eras] == [8, 10, 11]
    assert all(a.until == b.since for a, b in zip(eras, eras[1:]))
    assert all(e.since < e.until for e in eras)
    versions = [r.version for r in trt_eras.RELEASES]
    assert versions == sorted(versions) and len({r.target for r in trt_eras.RELEASES}) == len(versions)
    assert all(trt_eras.is_supported(v) for v in versions)
    for name, feature in trt_eras.FEATURES.items():
        bounds = [b for b in (feature.since, feature.until, *(x for gap in feature.gaps for x in gap)) if b is not None]
        assert bounds and all(trt_eras.SUPPORTED_SINCE < b < trt_eras.SUPPORTED_UNTIL for b in bounds), name
        assert feature.until is None or feature.since is None or feature.since < feature.until, name


def test_runtime_takes_its_range_and_eras_from_the_table():
    assert rt.MIN_VERSION == (8, 5, 0) and rt.MIN_VERSION[:2] == trt_eras.SUPPORTED_SINCE
    assert rt.MAX_VERSION_EXCLUSIVE == (12, 0, 0) and rt.MAX_VERSION_EXCLUSIVE[:2] == trt_eras.SUPPORTED_UNTIL
    for release in trt_eras.RELEASES:
        version = release.version + (0,)
        assert rt.check_supported(version) == version
        assert rt.api_era(version) == trt_eras.api_era(release.version)


def test_targets_are_the_table_releases_with_unchanged_rules():
    assert TENSORRT_TARGETS == tuple(r.target for r in trt_eras.RELEASES)
    for release in trt_eras.RELEASES:
        t = TARGETS[release.target]
        assert (t.tensorrt, t.max_opset) == (release.version, release.max_opset)
        assert t.topk_max_k == trt_eras.TOPK_MAX_K and t.label == trt_eras.label(release.version)
    # (functions, needs_constant_k, casts_int64, has_cumulative_layer, ignores_scatternd_reduction, max_opset)
    expected = {
        "onnxruntime": ("run", False, False, False, False, 21),
        "tensorrt-8.5": ("ignored", True, True, False, True, 17),
        "tensorrt-8.6": ("ignored", False, True, False, True, 17),
        "tensorrt-10.3": ("body", False, False, False, False, 20),
        "tensorrt-10": ("plugin-first", False, False, True, False, 20),
        "tensorrt-11": ("plugin-first", False, False, True, False, 20),
    }
    got = {n: (t.functions, t.needs_constant_k, t.casts_int64, t.has_cumulative_layer, t.ignores_scatternd_reduction,
               t.max_opset) for n, t in TARGETS.items()}
    assert got == expected
    assert TARGETS["onnxruntime"].topk_max_k is None and TARGETS["tensorrt-10"].label == "TensorRT 10.16"


@pytest.mark.parametrize("feature, version, present", [
    ("strongly_typed", (8, 6, 2), False), ("strongly_typed", (9, 0, 0), True), ("strongly_typed", (11, 4, 0), True),
    ("weakly_typed", (10, 16, 1), True), ("weakly_typed", (11, 0, 0), False),
    ("implicit_calibration", (10, 3, 0), True), ("implicit_calibration", (11, 0, 0), False),
    ("explicit_batch_required", (9, 3, 0), True), ("explicit_batch_required", (10, 0, 0), False),
    ("version_compatible", (8, 5, 2), False), ("version_compatible", (8, 6, 0), True),
    ("plugin_before_function", (10, 6, 9), False), ("plugin_before_function", (10, 7, 0), True),
])
def test_feature_rows(feature, version, present):
    assert trt_eras.available(feature, version) is present


def test_require_names_the_version_and_the_way_out():
    rt.require("strongly_typed", (10, 3, 0))
    with pytest.raises(rt.TensorRTFeatureError, match=r"^strongly typed networks is not available in TensorRT 8\.6\.2: "
                                                       r"they exist from TensorRT 9\.0$"):
        rt.require("strongly_typed", (8, 6, 2))
    with pytest.raises(rt.TensorRTFeatureError, match=r"^version-compatible engines is not available in TensorRT "
                                                       r"8\.5\.2: they exist from TensorRT 8\.6$"):
        rt.require("version_compatible", (8, 5, 2))
    with pytest.raises(rt.TensorRTFeatureError, match=r"^implicit INT8 calibration \(IInt8MinMaxCalibrator\) is not "
                                                       r"available in TensorRT 11\.0\.0: quantize the ONNX to Q/DQ"):
        rt.require("implicit_calibration", (11, 0, 0), "implicit INT8 calibration (IInt8MinMaxCalibrator)")


def test_era_table_imports_with_nothing_but_the_standard_library():
    proc = run_py(
        "import sys\n"
        "for m in ('numpy', 'onnx', 'torch', 'tensorrt'):\n"
        "    sys.modules[m] = None\n"
        "import aknet_edge.trt_eras, aknet_edge.export.targets\n"
        "print('ok')\n")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


# --------------------------------------------------------------------------- settings


def test_build_settings_normalizes():
    s = rt.BuildSettings("fp16", "clip", [8, 3, 112, 112], batch=[1, 2, 4], timing_cache="cache/t.bin")
    assert s.input_shape == (8, 3, 112, 112) and s.batch == (1, 2, 4)
    assert s.timing_cache == Path("cache/t.bin")
    assert s.strongly_typed is None and s.dla_core is None and s.workspace_bytes == 1 << 30


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "bf16"}, "precision must be one of fp32, fp16, int8"),
    ({"precision": "FP16"}, "precision must be one of"),
    ({"batch": (4, 2, 8)}, r"batch must be \(min, opt, max\) with 1 <= min <= opt <= max"),
    ({"batch": (1, 8, 4)}, "batch must be"),
    ({"batch": (0, 1, 1)}, "batch must be"),
    ({"batch": (1, 2)}, "batch must be"),
    ({"batch": (1.0, 2, 4)}, "batch must be a tuple of ints"),
    ({"input_shape": (8, 0, 112, 112)}, "input_shape must be positive sizes"),
    ({"input_shape": ()}, "input_shape must be positive sizes"),
    ({"input_shape": 8}, "input_shape must be a tuple of ints"),
    ({"input_name": ""}, "input_name must be a non-empty string"),
    ({"workspace_bytes": 0}, "workspace_bytes must be a positive int"),
    ({"workspace_bytes": True}, "workspace_bytes must be a positive int"),
    ({"dla_core": -1}, "dla_core must be None or a DLA core index"),
    ({"strongly_typed": "auto"}, "strongly_typed must be None"),
    ({"version_compatible": 1}, "version_compatible must be a bool"),
])
def test_build_settings_rejects_bad_values(kwargs, match):
    base = {"precision": "fp16", "input_name": "clip", "input_shape": (8, 3, 112, 112), "batch": (1, 2, 4)}
    with pytest.raises(ConfigError, match=match):
        rt.BuildSettings(**{**base, **kwargs})


# --------------------------------------------------------------------------- ONNX inspection


def _tiny_onnx(path: Path, kind: str = "fp32") -> Path:
    """clip [N, 2, 3] -> Relu -> * 2 -> logits; 'fp16' adds Casts, 'qdq' a Q/DQ pair."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["clip"], ["r"])]
    inits = [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])]
    last = "r"
    if kind == "fp16":
        nodes += [helper.make_node("Cast", ["r"], ["r16"], to=TensorProto.FLOAT16),
                  helper.make_node("Cast", ["r16"], ["r32"], to=TensorProto.FLOAT)]
        last = "r32"
    elif kind == "qdq":
        inits += [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]),
                  helper.make_tensor("z", TensorProto.INT8, [], [0])]
        nodes += [helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        last = "dq"
    nodes.append(helper.make_node("Mul", [last, "two"], ["logits"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["N", 2, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, 3])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # TensorRT 8.5's parser reads up to IR 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind, qdq, fp16", [("fp32", False, False), ("fp16", False, True), ("qdq", True, False)])
def test_inspect_onnx(tmp_path, kind, qdq, fp16):
    info = rt.inspect_onnx(_tiny_onnx(tmp_path / f"{kind}.onnx", kind))
    assert (info.has_qdq, info.has_fp16) == (qdq, fp16)


def test_inspect_onnx_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        rt.inspect_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00 not a protobuf \x12\x99")
    with pytest.raises(ConfigError, match="not a readable ONNX model"):
        rt.inspect_onnx(bad)


# --------------------------------------------------------------------------- build plan per era

FP32 = rt.OnnxGraphInfo(has_qdq=False, has_fp16=False)
FP16 = rt.OnnxGraphInfo(has_qdq=False, has_fp16=True)
QDQ = rt.OnnxGraphInfo(has_qdq=True, has_fp16=False)


def _settings(precision: str, strongly_typed=None) -> rt.BuildSettings:
    return rt.BuildSettings(precision, "clip", (8, 3, 112, 112), batch=(1, 1, 4), strongly_typed=strongly_typed)


def _flags(plan: rt.BuildPlan) -> tuple:
    return plan.explicit_batch, plan.strongly_typed, plan.fp16_flag, plan.int8_flag, plan.use_calibrator


@pytest.mark.parametrize("version, precision, graph, calib, st, expected", [
    # 8.x: EXPLICIT_BATCH, builder precision flags, INT8 flag also for Q/DQ graphs
    ((8, 5, 2), "fp32", FP32, False, None, (True, False, False, False, False)),
    ((8, 5, 2), "fp16", FP32, False, None, (True, False, True, False, False)),
    ((8, 5, 2), "int8", FP32, True, None, (True, False, True, True, True)),
    ((8, 6, 2), "int8", QDQ, False, None, (True, False, True, True, False)),
    ((8, 6, 2), "fp32", QDQ, False, None, (True, False, False, True, False)),
    # 9.x keeps EXPLICIT_BATCH but has strong typing
    ((9, 3, 0), "fp16", FP16, False, None, (True, True, False, False, False)),
    # 10.x: no EXPLICIT_BATCH; strongly typed when the graph carries precision (auto)
    ((10, 3, 0), "fp16", FP32, False, None, (False, False, True, False, False)),
    ((10, 3, 0), "fp16", FP16, False, None, (False, True, False, False, False)),
    ((10, 3, 0), "int8", QDQ, False, None, (False, True, False, False, False)),
    ((10, 3, 0), "int8", QDQ, False, False, (False, False, True, True, False)),
    ((10, 3, 0), "int8", FP32, True, None, (False, False, True, True, True)),
    ((10, 16, 1), "fp32", FP32, False, True, (False, True, False, False, False)),
    # 11.x: always strongly typed, never a precision flag
    ((11, 0, 0), "fp16", FP16, False, None, (False, True, False, False, False)),
    ((11, 4, 0), "int8", QDQ, False, True, (False, True, False, False, False)),
    ((11, 4, 0), "fp32", FP32, False, None, (False, True, False, False, False)),
])
def test_plan_build(version, precision, graph, calib, st, expected):
    plan = rt.plan_build(version, _settings(precision, st), graph, calib)
    assert _flags(plan) == expected
    assert plan.era == rt.api_era(version)
    # FP32 islands are pinned exactly when TensorRT may pick FP16/INT8 kernels on its own (weak typing + a flag)
    assert plan.pin_fp32 == (not plan.strongly_typed and (plan.fp16_flag or plan.int8_flag))


@pytest.mark.parametrize("version, precision, graph, calib, st, error, match", [
    ((8, 5, 2), "fp16", FP32, False, True, rt.TensorRTFeatureError,
     "strongly typed networks is not available in TensorRT 8.5.2"),
    ((8, 5, 2), "int8", FP32, False, None, ConfigError, "needs a Q/DQ ONNX graph .* or a calibrator"),
    ((8, 5, 2), "fp16", FP32, True, None, ConfigError, "calibrator only makes sense with precision 'int8'"),
    ((10, 3, 0), "int8", QDQ, True, False, ConfigError, "already quantized"),
    ((10, 3, 0), "int8", FP32, True, True, ConfigError, "cannot be used with a strongly typed network"),
    ((10, 3, 0), "fp16", FP32, False, True, ConfigError, "needs an FP16 ONNX graph"),
    ((11, 0, 0), "int8", FP32, True, None, rt.TensorRTFeatureError,
     "implicit INT8 calibration is not available in TensorRT 11.0.0"),
    ((11, 0, 0), "fp16", FP16, False, False, rt.TensorRTFeatureError, "weakly typed networks"),
    ((11, 4, 0), "fp16", FP32, False, None, rt.TensorRTFeatureError, "export an FP16 graph"),
    ((11, 4, 0), "int8", FP32, False, None, rt.TensorRTFeatureError, "Q/DQ"),
    ((12, 0, 0), "fp16", FP16, False, None, rt.UnsupportedTensorRTError, "not supported"),
])
def test_plan_build_refuses(version, precision, graph, calib, st, error, match):
    with pytest.raises(error, match=match):
        rt.plan_build(version, _settings(precision, st), graph, calib)


# --------------------------------------------------------------------------- calibration helpers


def test_calibration_cache_is_tied_to_its_tensorrt_version(tmp_path):
    cache, stamp = tmp_path / "calib.cache", tmp_path / "calib.cache.trt-version"
    assert rt._read_calibration_cache(cache, stamp, "10.3.0") is None
    cache.write_bytes(b"TRT-100300-MinMaxCalibration\nclip: 3c010a14\n")
    assert rt._read_calibration_cache(cache, stamp, "10.3.0") == cache.read_bytes()  # no stamp: trusted
    stamp.write_text("8.6.2\n")
    assert rt._read_calibration_cache(cache, stamp, "10.3.0") is None
    stamp.write_text("10.3.0\n")
    assert rt._read_calibration_cache(cache, stamp, "10.3.0") == cache.read_bytes()


def test_calibration_batches_are_checked():
    good = np.zeros((2, 3), np.float32)
    assert rt._calibration_array(good, None, 0).flags["C_CONTIGUOUS"]
    with pytest.raises(DataError, match="dtype float64; expected float32"):
        rt._calibration_array(np.zeros((2, 3)), None, 1)
    with pytest.raises(DataError, match=r"has shape \(4, 3\), the first had \(2, 3\)"):
        rt._calibration_array(np.zeros((4, 3), np.float32), (2, 3), 2)
    with pytest.raises(DataError, match="leading batch axis"):
        rt._calibration_array(np.float32(1.0), None, 3)


def test_make_calibrator_checks_the_method_first():
    with pytest.raises(ConfigError, match="entropy, minmax"):
        rt.make_calibrator("percentile", [], "calib.cache")


# --------------------------------------------------------------------------- real TensorRT + GPU


@pytest.fixture(scope="module")
def real_trt():
    trt = pytest.importorskip("tensorrt", reason=TRT_REASON, exc_type=ImportError)
    pytest.importorskip("pycuda.driver", reason=PYCUDA_REASON, exc_type=ImportError)
    return trt


@pytest.fixture(scope="module")
def device(real_trt):
    from aknet_edge.runtime.device_memory import PycudaDeviceMemory

    memory = PycudaDeviceMemory()
    yield memory
    memory.close()


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_run_a_tiny_engine(real_trt, device, tmp_path, precision):
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    settings = rt.BuildSettings(precision, "clip", (2, 3), batch=(1, 2, 4), workspace_bytes=1 << 26,
                                timing_cache=tmp_path / "timing.cache")
    plan = rt.build_serialized_engine(onnx_path, settings)
    assert isinstance(plan, bytes) and plan
    assert (tmp_path / "timing.cache").stat().st_size > 0
    x = np.linspace(-1, 1, 3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3)
    with rt.EngineRunner(plan, device) as runner:
        assert [s.name for s in runner.inputs] == ["clip"] and runner.inputs[0].dtype == np.float32
        out = runner.infer({"clip": x})["logits"]
        np.testing.assert_allclose(out, np.maximum(x, 0) * 2, rtol=1e-2, atol=1e-2)
        assert runner.infer({"clip": x[:1]})["logits"].shape == (1, 2, 3)
        with pytest.raises(AknetError, match="must be float32"):
            runner.infer({"clip": x.astype(np.float64)})
        with pytest.raises(AknetError, match="has shape"):
            runner.infer({"clip": np.zeros((5, 2, 3), np.float32)})
        with pytest.raises(AknetError, match="missing"):
            runner.infer({"frames": x})


@pytest.mark.tensorrt
def test_int8_calibration_or_its_removal(real_trt, device, tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    batches = [np.random.default_rng(i).standard_normal((2, 2, 3)).astype(np.float32) for i in range(4)]
    version = rt.trt_version(real_trt)
    if rt.api_era(version) == 11:
        with pytest.raises(rt.TensorRTFeatureError, match="implicit INT8 calibration"):
            rt.make_calibrator("minmax", batches, tmp_path / "calib.cache", device)
        return
    calibrator = rt.make_calibrator("minmax", batches, tmp_path / "calib.cache", device)
    settings = rt.BuildSettings("int8", "clip", (2, 3), batch=(1, 2, 2), workspace_bytes=1 << 26,
                                strongly_typed=False if version >= (9, 0, 0) else None)
    plan = rt.build_serialized_engine(onnx_path, settings, calibrator=calibrator)
    assert plan and (tmp_path / "calib.cache").is_file()
    with rt.EngineRunner(plan, device) as runner:
        out = runner.infer({"clip": batches[0]})["logits"]
    assert out.shape == (2, 2, 3)


# --------------------------------------------------------------------------- FP32 islands of weakly typed builds

PKG_020_GRAPH = Path(__file__).parent / "data" / "package-0.2.0" / "model.fp32.onnx"


def _parser_layers(model):
    """Layer views named as onnx-tensorrt names them (ImporterContext::registerLayer, generateUniqueName; 8.5-GA to
    10.x): constants after their initializer, a node's layer after the node, a second layer of the same node
    ``<node>_<counter>``, and unregistered helpers ``(Unnamed Layer* i) [Shuffle]`` right before a node's layer.
    Tensor kinds come from ONNX shape inference on the real graph. This is the naming rule, not a TensorRT stand-in:
    what TensorRT does with the pinned layers is only observable on a GPU (tests/test_runtime_tensorrt.py)."""
    import onnx

    from aknet_edge.runtime.trt.islands import FLOAT, OTHER

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)
             + list(inferred.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})

    def kinds(names):
        return tuple(FLOAT if types.get(n) == onnx.TensorProto.FLOAT else OTHER for n in names if n)

    views, counter, used = [], 0, set()
    inits = {i.name for i in model.graph.initializer}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            if name in inits and name not in used:
                used.add(name)
                views.append(rt.LayerView(name, (), kinds([name])))
        if node.op_type == "Constant":
            continue  # no layer: the parser keeps constants as weights
        if i % 3 == 0:
            views.append(rt.LayerView(f"(Unnamed Layer* {len(views)}) [Shuffle]", kinds(node.input[:1]),
                                      kinds(node.input[:1])))
        views.append(rt.LayerView(node.name, kinds(node.input), kinds(node.output)))
        if i % 4 == 0:
            counter += 1
            views.append(rt.LayerView(f"{node.name}_{counter}", kinds(node.output), kinds(node.output)))
    return views


def test_the_demo_graphs_islands_become_pinned_layers():
    """From the 0.2.0 package's real graph: scoring, coordinates, selection and ranking pinned; the backbone not."""
    import onnx

    from aknet_edge.calibration.islands import fp32_island_nodes
    from aknet_edge.runtime.trt.islands import layer_node

    model = onnx.load(str(PKG_020_GRAPH))
    nodes = [n.name for n in model.graph.node]
    islands = set(fp32_island_nodes(model, ("scorer", "coord_proj")))  # the model's FP16 declaration (KEYPOINT_PATH)
    views = _parser_layers(model)
    pin = rt.plan_pinning(views, nodes, islands)
    pinned = {views[i].name for i, _ in pin.layers}
    owners = {v.name: layer_node(v.name, nodes) for v in views}
    by_op = {n.name: n.op_type for n in model.graph.node}

    # every compute node of the keypoint path, selection and ranking, and its parser-suffixed second layer
    from aknet_edge.runtime.trt.islands import FLOAT

    for view in views:
        if owners[view.name] in islands and FLOAT in view.inputs + view.outputs and not view.shape_output:
            assert view.name in pinned, view.name
    assert any(v.name != owners[v.name] and v.name in pinned for v in views if owners[v.name] in islands)
    for scope in ("/scorer/", "/coord_proj/", "/KeypointSelect", "/KeypointRank"):
        assert any(p.startswith(scope) for p in pinned), scope
    # nothing of the backbone or the head's classifier: only island nodes and unnamed helpers beside them
    assert not any(p.startswith(("/encoder/layer", "/encoder/conv1")) and by_op.get(owners[p]) == "Conv"
                   for p in pinned)
    assert all(owners[p] in islands or p.startswith("(Unnamed Layer") for p in pinned), pinned - islands
    # outputs set to FP32 are FP32 ones: TopK's indices (INT64) are left alone
    topk = next(i for i, v in enumerate(views) if by_op.get(v.name) == "TopK")
    assert dict(pin.layers)[topk] == (0,)
    assert pin.island_nodes == len(islands & set(nodes)) and 0 < pin.matched_nodes <= pin.island_nodes


def test_pinning_skips_qdq_shape_and_fp16_writers_and_follows_unnamed_helpers():
    from aknet_edge.runtime.trt.islands import FLOAT, HALF, OTHER

    nodes = ["/scorer/Conv", "/scorer/Conv_1", "/encoder/Conv", "/scorer/DQ", "/scorer/Shape", "/scorer/Cast"]
    views = [
        rt.LayerView("/encoder/Conv", (FLOAT,), (FLOAT,)),
        rt.LayerView("(Unnamed Layer* 1) [Shuffle]", (FLOAT,), (FLOAT,)),  # next named layer is an island: pinned
        rt.LayerView("/scorer/Conv", (FLOAT,), (FLOAT,)),
        rt.LayerView("/scorer/Conv_7", (FLOAT,), (FLOAT,)),  # the parser's second layer of /scorer/Conv
        rt.LayerView("/scorer/Conv_1", (FLOAT,), (FLOAT,)),  # a node of its own (an island too)
        rt.LayerView("/scorer/DQ", (OTHER,), (FLOAT,), is_qdq=True),
        rt.LayerView("/scorer/Shape", (FLOAT,), (OTHER,), shape_output=True),
        rt.LayerView("/scorer/Cast", (FLOAT,), (HALF,)),  # into an FP16 part of the graph: stays a cast to FP16
        rt.LayerView("w_scorer", (), (FLOAT,)),  # a constant named after its initializer: not a node's layer
        rt.LayerView("/encoder/Conv_3", (FLOAT,), (FLOAT,)),  # the parser's second layer of /encoder/Conv
        rt.LayerView("(Unnamed Layer* 9) [Shuffle]", (FLOAT,), (FLOAT,)),  # after a backbone layer, at the end: no
    ]
    islands = {"/scorer/Conv", "/scorer/Conv_1", "/scorer/DQ", "/scorer/Shape", "/scorer/Cast"}
    pin = rt.plan_pinning(views, nodes, islands)
    assert [views[i].name for i, _ in pin.layers] == [
        "(Unnamed Layer* 1) [Shuffle]", "/scorer/Conv", "/scorer/Conv_7", "/scorer/Conv_1"]
    assert rt.plan_pinning(views, nodes, ()).layers == ()
    int_only = rt.LayerView("/scorer/Conv", (OTHER,), (OTHER,))  # index arithmetic in INT32: nothing to pin
    assert rt.plan_pinning([int_only], nodes, islands).layers == ()


def test_fp32_islands_for_an_engine_follow_the_package_record(tmp_path, caplog):
    """``build --from`` (torch-free) derives the nodes from the package's float_modules record."""
    from aknet_edge.engine import fp32_islands
    from aknet_edge.errors import ConfigError

    assert fp32_islands(PKG_020_GRAPH, "fp32", {"fp16": ("scorer",)}) == []
    declared = fp32_islands(PKG_020_GRAPH, "fp16", {"fp16": ("scorer", "coord_proj")})
    assert any(n.startswith("/scorer/") for n in declared) and any(n.startswith("/coord_proj/") for n in declared)
    with caplog.at_level("WARNING"):
        undeclared = fp32_islands(PKG_020_GRAPH, "int8", {})  # a 0.2.0 package: selection and ranking only
    assert "records no FP32 modules for int8" in caplog.text
    assert not any(n.startswith("/scorer/") and not n.endswith("Softmax") for n in undeclared)  # op-type rule only
    assert any("KeypointRank" in n for n in undeclared) and len(undeclared) < len(declared)
    with pytest.raises(ConfigError, match="module 'scorer_renamed' matches no node"):
        fp32_islands(PKG_020_GRAPH, "fp16", {"fp16": ("scorer_renamed",)})


def test_fp32_islands_are_computed_without_torch():
    proc = run_py(
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from aknet_edge.engine import fp32_islands\n"
        f"print(len(fp32_islands({str(PKG_020_GRAPH)!r}, 'fp16', {{'fp16': ('scorer', 'coord_proj')}})))\n")
    assert proc.returncode == 0 and int(proc.stdout.strip()) > 20, proc.stdout + proc.stderr
