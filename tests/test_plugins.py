"""TensorRT plugin libraries (``--plugin-lib``): checked and loaded for real, before parsing and deserialising;
recorded in the manifest; the plugins a graph or an engine needs named when missing.

TensorRT is not installed here, so the registry half (creators a library registered) is not exercised; loading
uses the real dynamic loader on real files (a text file, an executable, a system library).
"""

from __future__ import annotations

import ctypes.util
import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import one_error, run_build_cli

from aknet_edge import package as pk
from aknet_edge.errors import ConfigError
from aknet_edge.runtime.trt import onnx_info, plugins

PKG_020 = Path(__file__).parent / "data" / "package-0.2.0"


def _system_library() -> Path:
    """A shared library every Linux has (libm), loaded for real."""
    found = ctypes.util.find_library("m")
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib64", "/lib"):
        if found and (Path(folder) / found).is_file():
            return Path(folder) / found
    pytest.skip("no libm found on this system")


def test_a_missing_file_a_folder_and_a_file_that_is_not_a_library(tmp_path):
    with pytest.raises(ConfigError, match=r"--plugin-lib .*nope\.so: no such file; give the path of a TensorRT plugin"):
        plugins.check_library_file(tmp_path / "nope.so")
    with pytest.raises(ConfigError, match="is not a file"):
        plugins.check_library_file(tmp_path)
    text = tmp_path / "libfake.so"
    text.write_text("not an ELF file, e.g. a linker script or a download error page\n")
    with pytest.raises(ConfigError, match=r"libfake\.so: is not a shared library \(no ELF header\)"):
        plugins.load_plugin_libraries([text])
    assert plugins.loaded_plugins() == () or all(p.path != text for p in plugins.loaded_plugins())


def test_every_path_is_checked_before_any_loads(tmp_path):
    lib = _system_library()
    with pytest.raises(ConfigError, match="no such file"):
        plugins.load_plugin_libraries([lib, tmp_path / "typo.so"])
    assert all(p.path != lib for p in plugins.loaded_plugins())


def test_a_truncated_library_is_refused_before_the_loader_maps_it(tmp_path):
    """dlopen of a truncated library kills the process (SIGBUS on a segment past the end of the file)."""
    data = _system_library().read_bytes()
    for cut in (40, 4096, len(data) // 2):
        broken = tmp_path / f"libbroken{cut}.so"
        broken.write_bytes(data[:cut])
        with pytest.raises(ConfigError, match=r"libbroken\d+\.so: is truncated"):
            plugins.load_plugin_libraries([broken])
    assert plugins._elf_problem(_system_library()) == ""


def test_an_elf_the_loader_refuses_is_one_clear_error(tmp_path):
    """A whole ELF file that dlopen refuses: an executable, not a library."""
    exe = Path(shutil.which("true") or "/bin/true")
    copy = tmp_path / "libnotreally.so"
    shutil.copy(exe, copy)
    with pytest.raises(ConfigError, match=r"libnotreally\.so: the dynamic loader refused it \(.*\); build the plugin"):
        plugins.load_plugin_libraries([copy])


def test_a_real_library_loads_once_and_is_recorded(tmp_path):
    lib = _system_library()
    first = plugins.load_plugin_libraries([lib])
    again = plugins.load_plugin_libraries([str(lib)])
    assert first == again and first[0].path == lib and first[0].sha256 == pk.sha256_file(lib)
    assert first[0] in plugins.loaded_plugins()
    record = plugins.plugin_records(first)[0]
    assert record == pk.PluginLibrary(lib.name, pk.sha256_file(lib), ())
    # an engine recorded with that library now passes the check; one with another library does not
    plugins.check_engine_plugins([record], "model.int8.engine")
    other = pk.PluginLibrary("libaknet_plugins.so", "a" * 64, ("KeypointSelect/1@aknet",))
    with pytest.raises(plugins.EngineRuntimeError, match=r"model.int8.engine was built with TensorRT plugin library "
                       r"libaknet_plugins\.so \(creators KeypointSelect/1@aknet\), not loaded here: pass "
                       r"--plugin-lib PATH"):
        plugins.check_engine_plugins([record, other], "model.int8.engine")


# --------------------------------------------------------------------------- the manifest record


def _engine_manifest(plugin_libs):
    m = pk.read_manifest(PKG_020)
    info = pk.EngineInfo("8.5.2", "Orin", "8.7", "k" * 20, "explicit", None, {"batch": [1, 1, 4]}, plugin_libs)
    engine = pk.Variant("model.int8.engine", "int8", "tensorrt", "e" * 64, engine=info)
    return m.replace(variants=m.variants + (engine,))


def test_plugin_records_round_trip_through_the_manifest():
    libs = (pk.PluginLibrary("libaknet_plugins.so", "a" * 64, ("KeypointSelect/1@aknet", "KeypointRank/1@aknet")),
            pk.PluginLibrary("libother.so", "b" * 64))
    m = _engine_manifest(libs)
    data = json.loads(json.dumps(m.to_dict()))
    assert data["variants"][-1]["plugins"][0] == {"file": "libaknet_plugins.so", "sha256": "a" * 64,
                                                  "creators": ["KeypointSelect/1@aknet", "KeypointRank/1@aknet"]}
    back = pk.Manifest.from_dict(data)
    assert back == m and back.engine.engine.plugins == libs
    assert "plugins" not in json.loads(json.dumps(_engine_manifest(()).to_dict()))["variants"][-1]  # 0.2.0 shape


@pytest.mark.parametrize("record, words", [
    ({"file": "/opt/libx.so", "sha256": "a" * 64}, "a library file name without folders"),
    ({"file": "libx.so", "sha256": "xyz"}, "64 lowercase hex digits"),
    ({"file": "libx.so", "sha256": "a" * 64, "creators": [""]}, "a list of plugin creator names"),
    ({"file": "libx.so", "sha256": "a" * 64, "path": "/opt"}, "unknown fields ['path']"),
])
def test_bad_plugin_records_name_the_field(record, words):
    data = json.loads(json.dumps(_engine_manifest(()).to_dict()))
    data["variants"][-1]["plugins"] = [record]
    with pytest.raises(pk.PackageError, match=r"manifest\.variants\[3\]\.plugins\[0\]") as info:
        pk.Manifest.from_dict(data)
    assert words in str(info.value)


# --------------------------------------------------------------------------- what a graph needs


def _custom_graph(with_function: bool, **attrs) -> onnx.ModelProto:
    node = helper.make_node("KeypointSelect", ["x"], ["y"], name="/KeypointSelect", domain="aknet", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    functions = []
    if with_function:
        functions = [helper.make_function("aknet", "KeypointSelect", ["x"], ["y"],
                                          [helper.make_node("Identity", ["x"], ["y"])],
                                          [helper.make_opsetid("", 17)])]
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("aknet", 1)],
                             functions=functions)


def test_which_nodes_need_a_plugin_per_version(tmp_path):
    body = onnx_info.plugin_nodes(_custom_graph(True, plugin_namespace="aknet"))
    bare = onnx_info.plugin_nodes(_custom_graph(False, plugin_version="2"))
    assert [(n.op_type, n.domain, n.plugin_version, n.plugin_namespace, n.has_function) for n in body + bare] == [
        ("KeypointSelect", "aknet", "1", "aknet", True), ("KeypointSelect", "aknet", "2", "", False)]
    info = onnx_info.OnnxGraphInfo(False, False, ("/KeypointSelect",), body)
    assert plugins.needed_plugins(info, (8, 5, 2)) == list(body)  # 8.x ignores model-local functions
    assert plugins.needed_plugins(info, (10, 3, 0)) == []  # 9.0+ imports the function body
    no_body = onnx_info.OnnxGraphInfo(False, False, ("/KeypointSelect",), bare)
    assert plugins.needed_plugins(no_body, (10, 3, 0)) == list(bare)
    assert plugins.missing_plugins(bare, ["KeypointSelect/1"]) == list(bare)  # wrong version
    assert plugins.missing_plugins(bare, ["KeypointSelect/2"]) == []
    assert plugins.missing_plugins(body, ["KeypointSelect/1"]) == list(body)  # wrong namespace
    assert plugins.missing_plugins(body, ["KeypointSelect/1@aknet"]) == []
    path = tmp_path / "g.onnx"
    onnx.save(_custom_graph(False), path)
    assert [n.name for n in onnx_info.inspect_onnx(path).plugin_nodes] == ["/KeypointSelect"]
    # the lowered graphs the build writes need no plugin anywhere
    assert onnx_info.inspect_onnx(PKG_020 / "model.fp32.onnx").plugin_nodes == ()


# --------------------------------------------------------------------------- the CLI: one error line, exit 2




@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.so", "missing.so: no such file"),
    (lambda d: (d / "notes.so").write_text("hello") and d / "notes.so", "notes.so: is not a shared library"),
])
def test_build_from_with_a_bad_plugin_lib_fails_before_tensorrt(tmp_path, make, words):
    lib = make(tmp_path)
    out = tmp_path / "out"
    error = one_error(run_build_cli("--from", str(PKG_020), "--out", str(out), "--plugin-lib", str(lib)))
    assert error.startswith("error: --plugin-lib ") and words in error
    assert not out.exists()


def test_build_from_checks_every_plugin_lib(tmp_path):
    error = one_error(run_build_cli("--from", str(PKG_020), "--out", str(tmp_path / "o"), "--plugin-lib",
                            str(_system_library()), "--plugin-lib", str(PKG_020 / "labels.txt")))
    assert "labels.txt: is not a shared library (no ELF header)" in error
    assert not (tmp_path / "o").exists()


def test_the_full_build_refuses_a_missing_plugin_lib_before_it_starts(tmp_path):
    error = one_error(run_build_cli("--out", str(tmp_path / "pkg"), "--plugin-lib", str(tmp_path / "x.so"),
                                    block_torch=False))
    assert "--plugin-lib" in error and "x.so: no such file" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.so", "missing.so: no such file"),
    (lambda d: (d / "notes.so").write_text("hello") and d / "notes.so", "notes.so: is not a shared library"),
])
def test_the_run_cli_refuses_a_bad_plugin_lib_before_anything_opens(tmp_path, make, words):
    """python -m aknet_edge.run --plugin-lib: checked with the build's words, one error line, no output written."""
    import subprocess
    import sys

    lib, jsonl = make(tmp_path), tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", "--package", str(PKG_020), "--plugin-lib", str(lib),
                           "--jsonl", str(jsonl), "--max-seconds", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --plugin-lib ") and words in lines[0], proc.stderr
    assert not jsonl.exists()
