"""The package contract: typed records, validation that names the field, one writer, and 0.2.0 packages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aknet_edge import graph_io
from aknet_edge import package as pk

PKG_020 = Path(__file__).parent / "data" / "package-0.2.0"


def _edited(tmp_path: Path, edit) -> Path:
    """A copy of the 0.2.0 package with its manifest edited by ``edit(dict)``."""
    out = tmp_path / "pkg"
    shutil.copytree(PKG_020, out)
    m = json.loads((out / pk.MANIFEST).read_text())
    edit(m)
    (out / pk.MANIFEST).write_text(json.dumps(m))
    return out


def test_020_package_loads_with_its_contract():
    p = pk.load(PKG_020)
    assert p.manifest.created_by == "aknet_edge 0.2.0"
    assert p.clip_spec.frames == 8 and p.clip_spec.span_s == 2.0 and p.clip_spec.size == 112
    assert p.labels[0] == "no_action" and len(p.labels) == p.config.num_classes
    assert set(p.roles("onnx", "fp32")) == set(graph_io.ROLES)
    enc = p.io(graph_io.FRAME_ENCODER)
    assert [t.name for t in enc.state_inputs] == [graph_io.state_input(0), graph_io.state_input(1)]
    assert all(graph_io.is_rows_axis(t.shape[0]) for t in enc.state_inputs)
    assert p.io(graph_io.CLIP).input_names == [graph_io.CLIP_INPUT]
    assert p.io(graph_io.CLIP).output_names == list(graph_io.CLIP_OUTPUTS)
    assert p.choose_precision("onnx") == "fp32" and p.manifest.engine is None


def test_020_package_runs_in_the_runtime():
    from aknet_edge.runtime import Recognizer

    with Recognizer(PKG_020, "synthetic://?seed=2&fps=15&segments=2&size=112&speed=0&block=1", backend="onnxruntime") as rec:
        results = [r for _, r in zip(range(5), rec)]
    assert len(results) == 5 and all(r.label in pk.load(PKG_020).labels for r in results)
    assert all(len(r.keypoints) > 0 for r in results)


def test_manifest_round_trips_and_the_writer_is_atomic(tmp_path):
    data = json.loads((PKG_020 / pk.MANIFEST).read_text())
    m = pk.Manifest.from_dict(data)
    assert json.loads(json.dumps(m.to_dict())) == data
    out = tmp_path / "copy"
    shutil.copytree(PKG_020, out)
    pk.write(out, m.replace(command="python -m aknet_edge.build --again"))
    assert pk.load(out).manifest.command.endswith("--again")
    assert (out / pk.LABELS_FILE).read_text().split() == list(m.labels)
    assert not [f for f in out.iterdir() if f.name.startswith(".")]


def test_a_variant_without_role_is_a_whole_clip_graph(tmp_path):
    def drop_role(m):
        for v in m["variants"]:
            if v["file"] == "model.fp32.onnx":
                del v["role"]

    p = pk.load(_edited(tmp_path, drop_role))
    assert p.variant("fp32").role == graph_io.CLIP == graph_io.DEFAULT_ROLE


@pytest.mark.parametrize("edit,words", [
    (lambda m: m["preprocessing"].pop("span_s"), "manifest.preprocessing.span_s is missing"),
    (lambda m: m["preprocessing"].update(span_s="2"), "manifest.preprocessing.span_s = '2': expected a positive"),
    (lambda m: m["preprocessing"].update(sampling="uniform"), "manifest.preprocessing.sampling = 'uniform'"),
    (lambda m: m["preprocessing"].update(layout="NHWC"), "manifest.preprocessing.layout"),
    (lambda m: m["preprocessing"].update(scale=1.0), "manifest.preprocessing.scale"),
    (lambda m: m["preprocessing"].update(frames=16), "disagrees with manifest.config.clip"),
    (lambda m: m["labels"].pop(), "manifest.labels has 10 names but manifest.config.num_classes is 11"),
    (lambda m: m["variants"][0].update(file="../model.fp32.onnx"), "manifest.variants[0].file"),
    (lambda m: m["variants"][0].update(file="/etc/passwd"), "inside the package folder"),
    (lambda m: m["variants"][0].update(precision="fp8"), "manifest.variants[0].precision = 'fp8'"),
    (lambda m: m["variants"][1].update(role="encoder"), "manifest.variants[1].role = 'encoder'"),
    (lambda m: m["variants"][0].update(sha256="abc"), "manifest.variants[0].sha256"),
    (lambda m: m["variants"][0].update(extra=1), "manifest.variants[0] has unknown fields ['extra']"),
    (lambda m: m["io"]["clip"]["inputs"][0].update(shape=[1.5]), "manifest.io.clip.inputs[0].shape"),
    (lambda m: m["io"].pop("clip"), "manifest.io.clip is missing"),
    (lambda m: m.update(surprise=True), "manifest has unknown fields ['surprise']"),
    (lambda m: m["config"].update(cut=7), "manifest.config: cut=7"),
    (lambda m: m["build"].update(batch=[4, 1, 2]), "manifest.build.batch"),
    (lambda m: m.update(schema_version=2), "schema_version = 2"),
    (lambda m: m["io"]["clip"]["inputs"][0].update(dtype="float33"), "manifest.io.clip.inputs[0].dtype"),
    (lambda m: m["io"]["clip"]["inputs"][0].update(name="video"), "expected inputs ['clip']"),
    (lambda m: m["io"]["clip"]["inputs"][0].update(shape=["batch", 16, 3, 112, 112]), "does not fit the preprocessing"),
    (lambda m: m["io"]["clip_head"]["outputs"][0].update(shape=["batch", 10]), "expected (batch, 11)"),
    (lambda m: m["io"]["frame_encoder"]["outputs"][0].update(name="feats"), "manifest.io.frame_encoder"),
    (lambda m: m["variants"].append(dict(m["variants"][0], file="copy.onnx")), "the choice would be ambiguous"),
    (lambda m: m["variants"][0].update(tensorrt_version="10.3.0", gpu="Orin"), "unknown fields"),
    (lambda m: m["config"].update(labels=["a"] * 11), "differ from manifest.config.labels"),
    (lambda m: m["accuracy"][0].update(file="../../etc/passwd"), "manifest.accuracy[0].file"),
    (lambda m: m["preprocessing"].update(size=[40, 40]), "manifest.preprocessing: clip.size=40"),
    (lambda m: m.update(source_sha256="xyz"), "manifest.source_sha256"),
    (lambda m: m.update(calibration={"source": "synthetic", "clips": 8, "skipped": 0, "method": "guess", "seed": 0}),
     "manifest.calibration.method = 'guess'"),
])
def test_bad_manifests_name_the_field(tmp_path, edit, words):
    out = _edited(tmp_path, edit)
    with pytest.raises(pk.PackageError) as info:
        pk.load(out)
    assert words in str(info.value)
    assert "Traceback" not in str(info.value)


def test_runtime_cli_reports_a_bad_manifest_in_one_line(tmp_path):
    import subprocess
    import sys

    out = _edited(tmp_path, lambda m: m["preprocessing"].pop("span_s"))
    r = subprocess.run([sys.executable, "-m", "aknet_edge.run", "--package", str(out), "--max-seconds", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "span_s is missing" in errors[0] and "Traceback" not in r.stderr


def test_the_writer_refuses_what_the_reader_would(tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(PKG_020, out)
    m = pk.load(out).manifest
    bad = m.variants[0].__class__(m.variants[0].file, "fp32", "tensorrt", m.variants[0].sha256, "clip")  # no EngineInfo
    with pytest.raises(pk.PackageError, match="tensorrt variant carries"):
        pk.write(out, m.replace(variants=(bad,) + m.variants[1:]))
    assert pk.load(out).manifest == m  # the old manifest is untouched


def test_one_precision_rule_for_every_kind(tmp_path):
    p = pk.load(PKG_020)
    with pytest.raises(pk.PackageError, match="no onnx variant in int8"):
        p.choose_precision("onnx", "int8")
    with pytest.raises(pk.PackageError, match="no tensorrt model"):
        p.choose_precision("tensorrt")
    assert pk.PREFERENCE["tensorrt"][0] == pk.ENGINE_PRECISION_FOR["best"]  # the build's best engine runs first
