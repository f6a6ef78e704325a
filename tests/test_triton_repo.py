"""The Triton model repository writer (aknet_edge.triton_repo), without a server.

What a server would run is checked here with ONNX Runtime in process: ``aknet_stream``'s composed graph for
8 cameras batched row by row equals the local carried-state path (the package's frame encoder and clip head
through OnnxRuntimeBackend, driven as runtime/window.py's IncrementalEncoder drives them with exact=False).
The configs are parsed with Triton's own model-config schema (tritonclient's model_config_pb2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aknet_edge import graph_io
from aknet_edge import package as pk
from aknet_edge import triton_repo as tr
from aknet_edge.errors import ConfigError
from aknet_edge.preprocess import preprocess_frame
from aknet_edge.runtime.backends import OnnxRuntimeBackend
from aknet_edge.runtime.window import IncrementalEncoder

PACKAGE = Path(__file__).parent / "data" / "package-0.2.0"  # the demo model, fp32, whole-clip and split graphs


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    tr.write_triton_repo(PACKAGE, out)
    return out


def _config(path: Path):
    text_format = pytest.importorskip("google.protobuf.text_format")
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient ships Triton's config schema")
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig()), mc


def test_configs_parse_with_tritons_schema_and_follow_the_manifest(repo):
    package = pk.load(PACKAGE)
    m = package.manifest
    clip, mc = _config(repo / tr.CLIP_MODEL / "config.pbtxt")
    assert clip.name == tr.CLIP_MODEL and clip.backend == "onnxruntime"
    assert clip.max_batch_size == m.build.batch[2]
    assert clip.HasField("dynamic_batching") and not clip.HasField("sequence_batching")
    io = m.io[graph_io.CLIP]
    assert [(t.name, list(t.dims)) for t in clip.input] == [(t.name, list(t.static_shape)) for t in io.inputs]
    assert [(t.name, list(t.dims)) for t in clip.output] == [(t.name, list(t.static_shape)) for t in io.outputs]
    assert all(t.data_type == mc.TYPE_FP32 for t in list(clip.input) + list(clip.output))
    assert json.loads(clip.parameters[tr.PARAM_LABELS].string_value) == package.labels
    from aknet_edge.triton_contract import PARAM_MODEL, model_sha256

    assert clip.parameters[PARAM_MODEL].string_value == model_sha256(m)  # the client's identity check

    stream, _ = _config(repo / tr.STREAM_MODEL / "config.pbtxt")
    assert stream.backend == "onnxruntime" and stream.max_batch_size == tr.TritonRepoOptions().stream_max_batch
    assert [(t.name, t.data_type, list(t.dims)) for t in stream.input] == [("image", mc.TYPE_UINT8, [112, 112, 3])]
    assert [t.name for t in stream.output] == [*graph_io.CLIP_OUTPUTS, "steps", "corrid"]
    sb = stream.sequence_batching
    assert sb.HasField("oldest") and sb.max_sequence_idle_microseconds == 10_000_000
    kinds = {c.name: c.control[0].kind for c in sb.control_input}
    assert kinds == {"START": mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START,
                     "READY": mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_READY,
                     "CORRID": mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID}
    states = {s.input_name: (s.output_name, list(s.dims), s.initial_state[0].zero_data) for s in sb.state}
    assert stream.parameters[PARAM_MODEL].string_value == model_sha256(m)
    assert states == {"shift_state_0": ("shift_state_0_out", [1, 2, 28, 28], True),
                      "shift_state_1": ("shift_state_1_out", [1, 2, 28, 28], True),
                      "feature_ring": ("feature_ring_out", [8, 32, 14, 14], True),
                      "step_count": ("step_count_out", [1], True)}
    # the graph's inputs are exactly the config's input, controls and states (what Triton's backend checks)
    import onnx

    g = onnx.load(str(repo / tr.STREAM_MODEL / "1" / "model.onnx")).graph
    assert {i.name for i in g.input} == {"image", *kinds, *states}
    assert {o.name for o in g.output} == {t.name for t in stream.output} | {v[0] for v in states.values()}
    # labels and the manifest travel with each model
    for model in (tr.CLIP_MODEL, tr.STREAM_MODEL):
        assert (repo / model / "labels.txt").read_text().split() == package.labels
        assert pk.Manifest.from_dict(json.loads((repo / model / "manifest.json").read_text())) == m
    assert (repo / tr.CLIP_MODEL / "1" / "model.onnx").read_bytes() == (PACKAGE / "model.fp32.onnx").read_bytes()


def _stream_session(repo: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(repo / tr.STREAM_MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess, [o.name for o in sess.get_outputs()]


def test_stream_graph_for_8_cameras_equals_the_local_carried_state_path(repo):
    """8 cameras in one batch per step, frames of another size in BGR; camera 3 restarts its sequence at step
    9 and camera 7 is absent (READY 0) at step 6: each row still equals its own local carried chain."""
    assert _stream_parity(PACKAGE, repo, cameras=8, steps=14) == 8 * 7 - 5 - 1  # restart: -5, absent: -1


@pytest.mark.slow
def test_stream_graph_from_graphs_with_parent_rows_and_model_local_functions(tmp_path):
    """Graphs as this toolkit exports them now: the encoder's parent-row input (fed zeros: carried mode forks
    nothing) and the head's model-local functions (their domain and definitions come along)."""
    pytest.importorskip("torch")
    from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
    from aknet_edge.export.onnx_export import save, to_split_onnx

    dst = tmp_path / "pkg"
    shutil.copytree(PACKAGE, dst)
    enc, head = to_split_onnx(load_checkpoint(DEMO_WEIGHTS).eval(), parent_rows=True)
    save(enc, dst / "frame_encoder.fp32.onnx")
    save(head, dst / "clip_head.fp32.onnx")
    m = pk.read_manifest(dst)
    pk.write(dst, m.replace(variants=tuple(v if v.role == graph_io.CLIP else
                                           pk.Variant.of_file(dst, v.file, v.precision, v.kind, v.role)
                                           for v in m.variants)))
    assert "parent_rows" in pk.GraphIO.from_onnx(dst / "frame_encoder.fp32.onnx").input_names and head.functions
    tr.write_triton_repo(dst, tmp_path / "repo")
    assert _stream_parity(dst, tmp_path / "repo", cameras=3, steps=10) == 3 * 3 - 1


def _stream_parity(package_dir: Path, repo: Path, cameras: int, steps: int) -> int:
    """Run aknet_stream's graph in process for ``cameras`` rows against the local carried path; windows compared."""
    from aknet_edge.runtime.triton_client import resize_like_preprocess

    package = pk.load(package_dir)
    spec = package.clip_spec
    sess, names = _stream_session(repo)
    local = OnnxRuntimeBackend(package, threads=1)
    B, T = cameras, spec.frames
    rng = np.random.default_rng(7)
    encoders = [IncrementalEncoder(local, T, exact=False) for _ in range(B)]
    state = {"shift_state_0": np.full((B, 1, 2, 28, 28), np.nan, np.float32),  # garbage: START must ignore it
             "shift_state_1": np.full((B, 1, 2, 28, 28), np.nan, np.float32),
             "feature_ring": np.full((B, T, 32, 14, 14), np.nan, np.float32), "step_count": np.full((B, 1), 99)}
    compared = 0
    for k in range(steps):
        frames = rng.integers(0, 256, (B, 96, 128, 3), dtype=np.uint8)
        start = np.array([[k == 0 or (b == 3 and k == 9)] for b in range(B)], np.int32)
        ready = np.array([[not (b == B - 1 and k == 6)] for b in range(B)], np.int32)
        feed = {"image": np.stack([resize_like_preprocess(f, spec.size) for f in frames]), "START": start,
                "READY": ready, "CORRID": np.arange(1, B + 1, dtype=np.uint64)[:, None], **state}
        out = dict(zip(names, sess.run(names, feed)))
        state = {n: out[graph_io.state_output(n)] for n in state}
        assert out["corrid"][:, 0].tolist() == list(range(1, B + 1))
        for b in range(B):
            if not ready[b, 0]:
                continue
            if start[b, 0]:
                encoders[b] = IncrementalEncoder(local, T, exact=False)
            encoders[b].push(preprocess_frame(frames[b], spec, "BGR"))
            assert out["steps"][b, 0] == encoders[b].count
            if encoders[b].ready:
                ref = local.head(encoders[b].window())
                np.testing.assert_allclose(out["logits"][b], ref.logits[0], atol=1e-5, rtol=0)
                assert np.array_equal(out["keypoints"][b], ref.keypoints[0])
                np.testing.assert_allclose(out["keypoint_scores"][b], ref.keypoint_scores[0], atol=1e-5, rtol=0)
                compared += 1
    return compared


def test_stream_input_colour_is_declared_and_reordered_in_the_graph(tmp_path):
    """A repository for RGB frames gives the same scores on the RGB frame as the BGR repository on the BGR one."""
    rgb = tmp_path / "rgb"
    tr.write_triton_repo(PACKAGE, rgb, stream_color="RGB")
    bgr = tmp_path / "bgr"
    tr.write_triton_repo(PACKAGE, bgr, stream_color="BGR")
    config = (rgb / tr.STREAM_MODEL / "config.pbtxt").read_text()
    assert "\"aknet_input_color\" value { string_value: \"RGB\" }" in config
    frame = np.random.default_rng(1).integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    outs = []
    for repo, x in ((rgb, frame), (bgr, frame[..., ::-1])):
        sess, names = _stream_session(repo)
        feed = {"image": np.ascontiguousarray(x), "START": np.ones((1, 1), np.int32),
                "READY": np.ones((1, 1), np.int32), "CORRID": np.ones((1, 1), np.uint64),
                "shift_state_0": np.zeros((1, 1, 2, 28, 28), np.float32),
                "shift_state_1": np.zeros((1, 1, 2, 28, 28), np.float32),
                "feature_ring": np.zeros((1, 8, 32, 14, 14), np.float32), "step_count": np.zeros((1, 1), np.int64)}
        outs.append(sess.run(["logits"], feed)[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_resize_is_the_preprocessing_resize():
    """The client resizes; the server scales and normalises: together they are aknet_edge.preprocess."""
    from aknet_edge.runtime.triton_client import resize_like_preprocess

    spec = pk.load(PACKAGE).clip_spec
    rng = np.random.default_rng(3)
    for shape in ((480, 640, 3), (60, 80, 3), (112, 112, 3)):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        small = resize_like_preprocess(frame, spec.size)
        assert small.shape == (112, 112, 3) and small.dtype == np.uint8
        np.testing.assert_array_equal(preprocess_frame(small, spec, "RGB"), preprocess_frame(frame, spec, "RGB"))


def test_existing_folder_needs_force_and_force_replaces_only_a_repository(tmp_path, repo):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        tr.write_triton_repo(PACKAGE, out)
    with pytest.raises(ConfigError, match="not a Triton repository written by aknet_edge"):
        tr.write_triton_repo(PACKAGE, out, force=True)
    assert (out / "mine.txt").read_text() == "user data" and sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    (copy / "stale.txt").write_text("old")
    tr.write_triton_repo(PACKAGE, copy, force=True, stream=False)
    assert sorted(p.name for p in copy.iterdir()) == [tr.CLIP_MODEL, tr.MARKER]
    assert not list(tmp_path.glob(".copy.*"))  # no temporary folder or lock left behind


def test_bad_options_and_a_package_without_split_graphs(tmp_path):
    for bad in (dict(stream_color="YUV"), dict(stream_max_batch=0), dict(idle_s=0), dict(clip_kind="plan"),
                dict(threads=0), dict(precision="fp8")):
        with pytest.raises(ConfigError):
            tr.TritonRepoOptions(**bad)
    with pytest.raises(tr.TritonRepoError, match="no TensorRT engine"):
        tr.write_triton_repo(PACKAGE, tmp_path / "x", clip_kind="tensorrt")
    assert not (tmp_path / "x").exists()
    # a whole-clip-only package: aknet_clip only, and the note says why
    clip_only = tmp_path / "clip_only"
    clip_only.mkdir()
    package = pk.load(PACKAGE)
    shutil.copy(PACKAGE / "model.fp32.onnx", clip_only)
    m = package.manifest
    pk.write(clip_only, m.replace(io={graph_io.CLIP: m.io[graph_io.CLIP]},
                                  variants=tuple(v for v in m.variants if v.role == graph_io.CLIP)))
    res = tr.write_triton_repo(clip_only, tmp_path / "r")
    assert set(res.models) == {tr.CLIP_MODEL} and "frame_encoder/clip_head graphs" in res.notes[0]
    with pytest.raises(tr.TritonRepoError, match="frame_encoder/clip_head"):
        tr.stream_graph(pk.load(clip_only))
