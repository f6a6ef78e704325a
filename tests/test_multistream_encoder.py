"""Several cameras' incremental encoders in one call equal each camera's own calls (window level), and the
frame encoder graph with a parent-row input equals PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from aknet_edge import package as packaging
from aknet_edge.runtime.backend_choice import open_backend
from aknet_edge.runtime.backends import PARENT_ROWS
from aknet_edge.runtime.window import IncrementalEncoder, encode_batch

from test_runtime_support import COMMITTED_PACKAGE, demo_package

T = 8


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.fixture(scope="module")
def parent_graph(pkg, tmp_path_factory):
    """The demo model's frame encoder exported with the parent-row input (needs torch)."""
    torch = pytest.importorskip("torch")
    from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
    from aknet_edge.export.onnx_export import save, to_split_onnx

    model = load_checkpoint(DEMO_WEIGHTS).eval()
    enc, _ = to_split_onnx(model, parent_rows=True)
    path = save(enc, tmp_path_factory.mktemp("parent") / "frame_encoder.parents.onnx")
    return model, path, torch


def _with_parent_encoder(backend, path):
    """The backend with its frame encoder swapped for the parent-row graph (what a package built with it runs)."""
    import onnxruntime as ort

    from aknet_edge import graph_io

    backend._sessions[graph_io.FRAME_ENCODER] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    backend._inspect_sessions()
    assert backend.parent_rows
    return backend


def _stagger(frames: np.ndarray, starts: list[int]):
    """Per step, which streams have a sample and which sample: stream i joins at step starts[i]."""
    steps = frames.shape[1] + max(starts)
    for k in range(steps):
        yield [(i, k - s) for i, s in enumerate(starts) if 0 <= k - s < frames.shape[1]]


def _compare(backend, frames, starts, stride, exact=True):
    n = frames.shape[0]
    single = [IncrementalEncoder(backend, T, exact, stride) for _ in range(n)]
    multi = [IncrementalEncoder(backend, T, exact, stride) for _ in range(n)]
    windows, worst = 0, 0.0
    for step in _stagger(frames, starts):
        for i, j in step:
            single[i].push(frames[i, j])
        encode_batch([multi[i] for i, _ in step], [frames[i, j] for i, j in step])
        for i, j in step:
            if single[i].ready and (single[i].count - T) % stride == 0:
                a, b = single[i].window(), multi[i].window()
                worst = max(worst, float(np.abs(a - b).max()))
                windows += 1
    return windows, worst


@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("path", ["fork", "full"])
def test_batched_encoder_equals_separate_encoders(stride, path):
    """Full rows (packages without the parent input: 0.2.0's, committed) and old non-forking packages: one call,
    same features."""
    backend = open_backend(packaging.load(COMMITTED_PACKAGE), "onnxruntime")
    assert backend.state_fork and not backend.parent_rows
    backend.state_fork = path == "fork"  # "full": a pre-0.2.0 package (no forking at all)
    frames = np.random.default_rng(0).standard_normal((3, 13, 3, 112, 112)).astype(np.float32)
    windows, worst = _compare(backend, frames, [0, 2, 5], stride)
    assert windows == 3 * (1 + (13 - T) // stride)
    assert worst <= 1e-5


def test_batched_encoder_carried_only(pkg):
    backend = open_backend(packaging.load(pkg), "onnxruntime")
    frames = np.random.default_rng(1).standard_normal((2, 11, 3, 112, 112)).astype(np.float32)
    windows, worst = _compare(backend, frames, [0, 1], 1, exact=False)
    assert windows == 2 * 4 and worst <= 1e-5


def test_parent_row_graph_equals_pytorch(pkg, parent_graph):
    """The exported encoder with a parent-row input against the model, three cameras forking their own chains."""
    import onnxruntime as ort

    model, path, torch = parent_graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names[-1] == PARENT_ROWS and names[0] == "frame"
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(3, 3, 112, 112, generator=g)
    base = model.encoder.init_state(1)
    # layer i: 3 carried rows + chains joining at or before i (a prefix that grows by layer)
    extra = [1 + i for i in range(len(base))]
    states = [torch.randn(3 + e, *s.shape[1:], generator=g) for e, s in zip(extra, base)]
    rows = 3 + extra[-1]
    parents = torch.tensor([0, 1, 2] + [2, 0, 1, 2, 0][: rows - 3], dtype=torch.int32)
    with torch.no_grad():
        want_f, want_s = model.encode_frame(frames, list(states), parents)
    feed = {"frame": frames.numpy(), PARENT_ROWS: parents.numpy(),
            **{n: s.numpy() for n, s in zip(names[1:-1], states)}}
    got = sess.run(None, feed)
    assert got[0].shape[0] == rows
    assert np.abs(got[0] - want_f.numpy()).max() <= 1e-4
    for a, b in zip(got[1:], want_s):
        assert np.abs(a - b.numpy()).max() <= 1e-4
    # with parents all zero it is the graph the package carries (row 0 forks)
    with torch.no_grad():
        plain_f, _ = model.encode_frame(frames[:1], [s[: 1 + e] for s, e in zip(states, extra)])
    feed = {"frame": frames[:1].numpy(), PARENT_ROWS: np.zeros(1 + extra[-1], np.int32),
            **{n: s[: 1 + e].numpy() for n, s, e in zip(names[1:-1], states, extra)}}
    assert np.abs(sess.run(None, feed)[0] - plain_f.numpy()).max() <= 1e-4
    # the math without parents is unchanged: parents pointing at row 0 give the forking result
    with torch.no_grad():
        zero_f, _ = model.encode_frame(frames[:1], [s[: 1 + e] for s, e in zip(states, extra)],
                                       torch.zeros(1 + extra[-1], dtype=torch.int32))
    assert torch.equal(zero_f, plain_f)


@pytest.mark.parametrize("stride", [1, 2])
def test_parent_row_batching_equals_separate_encoders(pkg, parent_graph, stride):
    """Exact mode across cameras with forking inside the graph: same windows as one camera at a time."""
    _, path, _ = parent_graph
    backend = _with_parent_encoder(open_backend(packaging.load(pkg), "onnxruntime"), path)
    reference = open_backend(packaging.load(pkg), "onnxruntime")
    frames = np.random.default_rng(2).standard_normal((3, 12, 3, 112, 112)).astype(np.float32)
    n = frames.shape[0]
    single = [IncrementalEncoder(reference, T, True, stride) for _ in range(n)]
    multi = [IncrementalEncoder(backend, T, True, stride) for _ in range(n)]
    windows = 0
    for step in _stagger(frames, [0, 1, 3]):
        for i, j in step:
            single[i].push(frames[i, j])
        encode_batch([multi[i] for i, _ in step], [frames[i, j] for i, j in step])
        for i, _ in step:
            if single[i].ready and (single[i].count - T) % stride == 0:
                assert np.abs(single[i].window() - multi[i].window()).max() <= 1e-5
                windows += 1
    assert windows == 3 * (1 + (12 - T) // stride)
    # fewer rows than full rows: chains forked inside the graph
    assert sum(e.encoded_frames for e in multi) == sum(e.encoded_frames for e in single)
