"""Every TensorRT name the runtime/trt/ package uses exists in each TensorRT version it runs on.

TensorRT cannot be imported here, so the check is static: ``ast`` collects the
attribute names every module of the package (runtime/trt/**/*.py) reads off
the ``trt`` module and off the objects TensorRT hands out (``builder``,
``config``, ``engine``, ...; the naming convention is stated in
runtime/trt/__init__.py's docstring), and compares them with
name lists taken from the real bindings wheels (tests/data/trt_names/extract.py)
or, for 8.5/8.6 which have no such wheel, from NVIDIA's API docs
(tests/data/trt_names/8.5-documented.txt).

Which list applies is explicit: a function whose name ends in ``_trt8``,
``_trt86``, ``_trt10``, ``_trt11`` (or several, ``_foo_trt8_trt10``) runs only
in those eras; code outside such helpers runs in every era and must use names
that exist in all lists. The era numbers are those of aknet_edge.trt_eras,
which a test below ties to the lists. runtime/device_memory.py is pycuda, not
TensorRT, and is not checked.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import pytest

from aknet_edge import trt_eras

REPO = Path(__file__).resolve().parents[1]
TRT_PKG = REPO / "runtime" / "trt"
NAMES_DIR = REPO / "tests" / "data" / "trt_names"
DOCUMENTED = NAMES_DIR / "8.5-documented.txt"

# Local names bound to TensorRT objects in runtime/trt/ (self._engine counts as engine).
TRT_ROOTS = frozenset({
    "trt", "builder", "network", "config", "parser", "parser_error", "profile", "tensor",
    "timing_cache", "runtime", "engine", "context", "layer", "registry", "creator",
})
ERAS = ("8", "86", "10", "11")
ERA_TOKEN = re.compile(r"_trt(\d+)(?=_|$)")
ERA_LABELS = {"8": "TensorRT 8.5 (documented)", "86": "TensorRT 8.6 (documented)", "10": "TensorRT 10.3",
              "11": "TensorRT 11.x"}

# Enum members removed in an era whose bare name survives in another enum, so a
# flat list cannot catch them (INT8 and BF16 stay DataType members in 11.x).
# Source: TensorRT 11.0 release notes (shared/design/tensorrt.md), and the 11.x
# wheel's BuilderFlag registration, which starts at DEBUG where 10.3's starts
# at FP16, BF16, INT8 (`python tests/data/trt_names/extract.py 11.4.0.106
# --enum-run GPU_FALLBACK`).
REMOVED_QUALIFIED: Dict[str, FrozenSet[str]] = {
    "11": frozenset({
        "BuilderFlag.FP16", "BuilderFlag.BF16", "BuilderFlag.INT8", "BuilderFlag.FP8", "BuilderFlag.INT4",
        "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "BuilderFlag.PREFER_PRECISION_CONSTRAINTS",
        "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    }),
}


# --------------------------------------------------------------------------- name lists


def _version_key(path: Path) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.stem))


def _read_list(path: Path) -> Set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line)
    return names


def wheel_list(pattern: str) -> Path:
    """The newest extracted list matching ``pattern`` (e.g. ``10.3*.txt``)."""
    found = sorted(NAMES_DIR.glob(pattern), key=_version_key)
    if not found:
        pytest.fail(f"no name list {pattern} in {NAMES_DIR}; run tests/data/trt_names/extract.py")
    return found[-1]


def read_documented() -> Tuple[Set[str], Set[str]]:
    """(8.5 names, 8.6 names): lines tagged ``# 8.6`` are new in 8.6."""
    v85, v86 = set(), set()
    for line in DOCUMENTED.read_text(encoding="utf-8").splitlines():
        name, _, tag = line.partition("#")
        name = name.strip()
        if not name:
            continue
        v86.add(name)
        if tag.strip() != "8.6":
            v85.add(name)
    return v85, v86


@lru_cache(maxsize=None)
def era_names() -> Dict[str, FrozenSet[str]]:
    v85, v86 = read_documented()
    return {
        "8": frozenset(v85),
        "86": frozenset(v86),
        "10": frozenset(_read_list(wheel_list("10.3*.txt"))),
        "11": frozenset(_read_list(wheel_list("11.*.txt"))),
    }


# --------------------------------------------------------------------------- collector


@dataclass(frozen=True)
class NameUse:
    name: str
    qualified: Optional[str]  # "BuilderFlag.FP16" when the name follows another TensorRT name
    line: int
    function: str
    eras: Tuple[str, ...]


def _chain(node: ast.AST) -> Optional[List[str]]:
    """``self._engine.get_tensor_name`` -> ['self', '_engine', 'get_tensor_name']; None if not a plain chain."""
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _trt_part(parts: List[str]) -> Optional[List[str]]:
    """The attribute names after the first TensorRT root of a chain, or None."""
    for i, part in enumerate(parts):
        if part.lstrip("_") in TRT_ROOTS:
            return parts[i + 1:]
    return None


class _Collector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.uses: List[NameUse] = []
        self._functions: List[str] = []
        self._trt_locals: List[Set[str]] = [set()]  # per function: names assigned from trt.<...>

    def _eras(self) -> Tuple[str, ...]:
        for name in reversed(self._functions):
            tokens = ERA_TOKEN.findall(name)
            if tokens:
                unknown = set(tokens) - set(ERAS)
                if unknown:
                    raise AssertionError(f"function {name}: unknown era suffix {sorted(unknown)}; use {ERAS}")
                return tuple(tokens)
        return ERAS

    def _record(self, names: List[str], line: int) -> None:
        function = self._functions[-1] if self._functions else "<module>"
        previous: Optional[str] = None
        for name in names:
            if not (name.startswith("__") and name.endswith("__")):
                qualified = f"{previous}.{name}" if previous else None
                self.uses.append(NameUse(name, qualified, line, function, self._eras()))
            previous = name

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._functions.append(node.name)
        self._trt_locals.append(set())
        self.generic_visit(node)
        self._trt_locals.pop()
        self._functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assign(self, node: ast.Assign) -> None:
        # `base = trt.IInt8EntropyCalibrator2 if ... else ...` makes `base` a TensorRT class.
        from_trt = any(isinstance(n, ast.Attribute) and (_chain(n) or [""])[0] == "trt" for n in ast.walk(node.value))
        if from_trt:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self._trt_locals[-1].add(target.id)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        derived = False
        for base in node.bases:
            parts = _chain(base) if isinstance(base, ast.Attribute) else None
            if (parts and parts[0] == "trt") or (isinstance(base, ast.Name) and base.id in self._trt_locals[-1]):
                derived = True
        if derived:  # methods overriding TensorRT virtuals (get_batch, log) must exist there too
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    self._record([item.name], item.lineno)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts = _chain(node)
        if parts is None:  # e.g. trt.nptype(x).itemsize: look inside the call, not at .itemsize
            self.generic_visit(node)
            return
        names = _trt_part(parts)
        if names:
            self._record(names, node.lineno)


def collect(source: str) -> List[NameUse]:
    collector = _Collector()
    collector.visit(ast.parse(source))
    return collector.uses


def check(source: str, lists: Optional[Dict[str, FrozenSet[str]]] = None) -> List[str]:
    """Problems, one line each: a name missing from the list of an era it runs in."""
    lists = era_names() if lists is None else lists
    problems = []
    for use in collect(source):
        for era in use.eras:
            if use.name not in lists[era]:
                problems.append(f"line {use.line} ({use.function}): {use.name} is not in {ERA_LABELS[era]}")
            elif use.qualified in REMOVED_QUALIFIED.get(era, ()):
                problems.append(f"line {use.line} ({use.function}): {use.qualified} was removed by {ERA_LABELS[era]}")
    return problems


def trt_modules(root: Path = TRT_PKG) -> Dict[str, str]:
    """Source of every module under ``root`` (nested packages too), keyed by path relative to ``root``."""
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(root.rglob("*.py"))}


def check_package(root: Path = TRT_PKG, lists: Optional[Dict[str, FrozenSet[str]]] = None) -> List[str]:
    """:func:`check` over every module under ``root``; each problem starts with its module's path."""
    return [f"{name}: {problem}" for name, source in trt_modules(root).items() for problem in check(source, lists)]


@lru_cache(maxsize=None)
def package_uses() -> Tuple[NameUse, ...]:
    return tuple(use for source in trt_modules().values() for use in collect(source))


# --------------------------------------------------------------------------- runtime/trt/


def test_every_trt_name_exists_in_each_era_it_runs_in():
    problems = check_package()
    assert not problems, "runtime/trt/ uses names its TensorRT versions lack:\n" + "\n".join(problems)


def test_the_check_scans_every_module_of_the_package():
    import importlib
    import sys

    importlib.import_module("aknet_edge.runtime.trt")
    loaded = {Path(module.__file__).resolve().relative_to(TRT_PKG).as_posix()
              for name, module in list(sys.modules.items())
              if name == "aknet_edge.runtime.trt" or name.startswith("aknet_edge.runtime.trt.")}
    modules = set(trt_modules())
    assert loaded <= modules, loaded - modules
    assert {"__init__.py", "version.py", "plan.py", "build.py", "calibrators.py", "runner.py"} <= modules
    assert not (REPO / "runtime" / "trt.py").exists(), "runtime/trt.py would be an unscanned second copy"
    # every module that touches TensorRT objects contributes names
    touching = {name for name, source in trt_modules().items() if collect(source)}
    assert {"version.py", "build.py", "build_config.py", "calibrators.py", "runner.py"} <= touching, touching


def test_collector_sees_the_names_the_package_relies_on():
    uses = package_uses()
    by_name: Dict[str, Set[Tuple[str, ...]]] = {}
    for use in uses:
        by_name.setdefault(use.name, set()).add(use.eras)
    assert len(by_name) > 40, sorted(by_name)
    for common in ("execute_async_v3", "set_memory_pool_limit", "build_serialized_network", "deserialize_cuda_engine",
                   "set_input_shape", "set_tensor_address", "get_tensor_mode", "num_io_tensors", "nptype",
                   "create_optimization_profile", "set_shape", "add_optimization_profile", "WORKSPACE",
                   "GPU_FALLBACK", "DLA_core", "create_timing_cache", "serialize", "log"):
        assert by_name.get(common) == {ERAS}, (common, by_name.get(common))
    assert by_name["EXPLICIT_BATCH"] == {("8",)}
    assert by_name["STRONGLY_TYPED"] == {("10",)}
    assert by_name["FP16"] == {("8", "10")}
    assert by_name["int8_calibrator"] == {("8", "10")}
    assert by_name["IInt8EntropyCalibrator2"] == by_name["IInt8MinMaxCalibrator"] == {("8", "10")}
    for override in ("get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"):
        assert by_name[override] == {("8", "10")}, override
    assert by_name["VERSION_COMPATIBLE"] == by_name["engine_host_code_allowed"] == {("86", "10", "11")}
    # FP32 islands of weakly typed builds (issue 13, section 2): the constraint flag and the per-layer precision
    # exist in 8.x and 10.x only; reading the layers off the network works in every era
    for weak_only in ("OBEY_PRECISION_CONSTRAINTS", "precision", "set_output_type"):
        assert by_name[weak_only] == {("8", "10")}, weak_only
    for common in ("num_layers", "get_layer", "num_inputs", "get_input", "num_outputs", "get_output", "dtype",
                   "is_shape_tensor", "type", "LayerType", "QUANTIZE", "DEQUANTIZE", "DataType", "FLOAT", "HALF",
                   "init_libnvinfer_plugins", "get_plugin_registry", "plugin_version", "plugin_namespace"):
        assert ERAS in by_name.get(common, set()), (common, by_name.get(common))  # used unsuffixed, so in every era
    # the plugin registry's creator list: IPluginV2 creators in 8.x, every creator from 10.0 (the V2 list is gone in 11)
    assert by_name["plugin_creator_list"] == {("8",)}
    assert by_name["all_creators"] == {("10", "11")}


def test_names_removed_in_10_are_not_used_anywhere():
    used = {use.name for use in package_uses()}
    removed = {"execute_async_v2", "execute_v2", "build_engine", "max_workspace_size", "max_batch_size",
               "num_bindings", "get_binding_shape", "get_binding_index", "binding_is_input", "set_binding_shape"}
    assert not used & removed


def test_era_suffixes_and_name_lists_cover_the_era_table():
    """A new era in aknet_edge.trt_eras must come with a suffix and a name list here, or this fails."""
    assert {str(era.number) for era in trt_eras.API_ERAS} == set(ERAS) - {"86"}
    assert trt_eras.SUPPORTED_SINCE == (8, 5)  # the documented 8.5 list is the oldest claimed version
    assert trt_eras.FEATURES["version_compatible"].since == (8, 6)  # what the _trt86 suffix stands for
    for pattern, era in (("10.3*.txt", 10), ("11.*.txt", 11)):
        assert trt_eras.api_era(_version_key(wheel_list(pattern))) == era, pattern
    for release in trt_eras.RELEASES:
        assert str(trt_eras.api_era(release.version)) in ERAS, release


def test_eras_come_from_function_suffixes():
    uses = collect(
        "def _flags_trt8_trt10(trt, config):\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"
        "def common(engine):\n"
        "    def inner_trt11():\n"
        "        return engine.num_io_tensors\n"
        "    return engine.get_tensor_name(0)\n")
    eras = {u.name: u.eras for u in uses}
    assert eras == {"set_flag": ("8", "10"), "BuilderFlag": ("8", "10"), "FP16": ("8", "10"),
                    "num_io_tensors": ("11",), "get_tensor_name": ERAS}
    assert {u.qualified for u in uses if u.name == "FP16"} == {"BuilderFlag.FP16"}


# --------------------------------------------------------------------------- the checker can fail


def test_checker_reports_an_invented_flag_and_a_removed_attribute():
    problems = check(
        "def _flags_trt10(trt, config):\n"
        "    config.set_flag(trt.BuilderFlag.NOT_A_REAL_FLAG)\n"
        "    config.max_workspace_size = 1 << 30\n")
    assert any("NOT_A_REAL_FLAG is not in TensorRT 10.3" in p for p in problems), problems
    assert any("max_workspace_size is not in TensorRT 10.3" in p for p in problems), problems
    assert len(problems) == 2, problems


def test_checker_reports_precision_flags_and_calibrators_in_a_trt11_helper():
    problems = check(
        "def _precision_trt11(trt, config, calibrator):\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"
        "    config.set_flag(trt.BuilderFlag.INT8)\n"
        "    config.int8_calibrator = calibrator\n"
        "    class Calibrator(trt.IInt8MinMaxCalibrator):\n"
        "        def get_batch(self, names):\n"
        "            return None\n")
    text = "\n".join(problems)
    assert "FP16 is not in TensorRT 11.x" in text
    assert "BuilderFlag.INT8 was removed by TensorRT 11.x" in text  # INT8 alone survives as DataType.INT8
    assert "int8_calibrator is not in TensorRT 11.x" in text
    assert "IInt8MinMaxCalibrator is not in TensorRT 11.x" in text
    assert "get_batch is not in TensorRT 11.x" in text


def test_package_check_reports_a_missing_name_in_any_module(tmp_path):
    pkg = tmp_path / "trt"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .ok import build\n")
    (pkg / "ok.py").write_text("def build(trt, builder, config):\n"
                               "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1)\n")
    (pkg / "bad.py").write_text("def _flags(trt, config):\n    config.set_flag(trt.BuilderFlag.FP16)\n")
    (pkg / "sub" / "deep.py").write_text("def _old_trt10(config):\n    config.max_workspace_size = 1 << 30\n")
    problems = check_package(pkg)
    assert "bad.py: line 2 (_flags): FP16 is not in TensorRT 11.x" in problems, problems
    assert "sub/deep.py: line 2 (_old_trt10): max_workspace_size is not in TensorRT 10.3" in problems, problems
    assert not any(p.startswith(("ok.py", "__init__.py")) for p in problems), problems


def test_dropping_an_era_suffix_in_the_real_package_is_caught():
    source = trt_modules()["build.py"]
    assert "def _set_precision_flags_trt8_trt10(" in source
    problems = check(source.replace("_set_precision_flags_trt8_trt10", "_set_precision_flags"))
    assert any("(_set_precision_flags): FP16 is not in TensorRT 11.x" in p for p in problems), problems
    assert any("BuilderFlag.INT8 was removed by TensorRT 11.x" in p for p in problems), problems


@pytest.mark.parametrize("module, helper, words", [
    ("build.py", "_obey_fp32_layers_trt8_trt10", ["OBEY_PRECISION_CONSTRAINTS is not in TensorRT 11.x",
                                                  "precision is not in TensorRT 11.x",
                                                  "set_output_type is not in TensorRT 11.x"]),
    ("plugins.py", "_creator_list_trt8", ["plugin_creator_list is not in TensorRT 11.x"]),
    ("plugins.py", "_creator_list_trt10_trt11", ["all_creators is not in TensorRT 8.5 (documented)",
                                                 "all_creators is not in TensorRT 8.6 (documented)"]),
])
def test_dropping_the_suffix_of_a_precision_or_plugin_helper_is_caught(module, helper, words):
    """Each era-only call of the FP32-island pinning and the plugin registry sits behind its suffix for a reason."""
    source = trt_modules()[module]
    assert f"def {helper}(" in source
    bare = re.sub(r"(_trt\d+)+$", "", helper) + "_everywhere"
    problems = check(source.replace(helper, bare))
    for word in words:
        assert any(f"({bare}): {word}" in p for p in problems), (word, problems)
    assert not check(source), check(source)


def test_unsuffixed_code_is_checked_against_every_era():
    problems = check("def helper(trt, config):\n    config.set_flag(trt.BuilderFlag.STRONGLY_TYPED_TYPO)\n"
                     "    flags = trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH\n")
    text = "\n".join(problems)
    for era in ERAS:
        assert f"STRONGLY_TYPED_TYPO is not in {ERA_LABELS[era]}" in text
    assert "EXPLICIT_BATCH is not in TensorRT 11.x" in text
    assert "EXPLICIT_BATCH is not in TensorRT 10.3" not in text  # still present (ignored) in 10.x


def test_non_tensorrt_objects_are_not_checked():
    assert check("import numpy as np\n"
                 "def f(settings, array, log):\n"
                 "    log.info(settings.precision, array.nbytes, np.float32, trt_like.nonsense)\n"
                 "    return trt.nptype(x).itemsize\n") == []


# --------------------------------------------------------------------------- the lists themselves


def test_10_3_list_lacks_what_10_0_removed_and_has_its_replacements():
    names = era_names()["10"]
    for removed in ("execute_async_v2", "build_engine", "max_workspace_size", "get_binding_shape",
                    "num_bindings", "binding_is_input", "set_binding_shape"):
        assert removed not in names, removed
    for present in ("execute_async_v3", "set_memory_pool_limit", "build_serialized_network", "BuilderFlag",
                    "FP16", "INT8", "EXPLICIT_BATCH", "STRONGLY_TYPED", "int8_calibrator",
                    "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "num_io_tensors", "nptype"):
        assert present in names, present


def test_11_list_lost_precision_flags_and_implicit_calibration():
    names = era_names()["11"]
    for removed in ("FP16", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IInt8Calibrator",
                    "int8_calibrator", "get_batch", "read_calibration_cache", "EXPLICIT_BATCH",
                    "platform_has_fast_fp16", "OBEY_PRECISION_CONSTRAINTS", "set_dynamic_range"):
        assert removed not in names, removed
    # INT8 and BF16 stay DataType members; STRONGLY_TYPED stays (deprecated, ignored: always strongly typed).
    for present in ("INT8", "BF16", "STRONGLY_TYPED", "GPU_FALLBACK", "BuilderFlag", "execute_async_v3",
                    "set_memory_pool_limit", "build_serialized_network", "engine_host_code_allowed"):
        assert present in names, present


def test_documented_8x_list_is_cited_and_era_correct():
    header = [line for line in DOCUMENTED.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any("docs.nvidia.com" in line for line in header)
    v85, v86 = read_documented()
    assert {"EXPLICIT_BATCH", "FP16", "INT8", "int8_calibrator", "execute_async_v3"} <= v85
    assert {"VERSION_COMPATIBLE", "engine_host_code_allowed"} <= v86 - v85
    assert not {"STRONGLY_TYPED", "node_name", "node_operator"} & v86


@pytest.mark.parametrize("pattern", ["10.3*.txt", "11.*.txt"])
def test_extracted_lists_are_sorted_identifiers_and_small(pattern):
    path = wheel_list(pattern)
    assert path.stat().st_size < 1_500_000
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert lines == sorted(set(lines))
    assert all(line.isidentifier() and len(line) >= 3 for line in lines)
