"""Incremental (per-frame encoder + head on cached features) equals whole-clip on the same frames."""

from __future__ import annotations

import numpy as np
import pytest

from aknet_edge import package as packaging
from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.backend_choice import open_backend
from aknet_edge.runtime.window import GridSampler, IncrementalEncoder
from aknet_edge.runtime.sources import Frame

from test_runtime_support import demo_package


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.mark.parametrize("forking", [True, False])
def test_every_window_equals_whole_clip(pkg, forking):
    """Both exact paths: chains forked inside the graph (0.2.0 packages) and full rows (older packages)."""
    backend = open_backend(packaging.load(pkg), "onnxruntime")
    assert backend.has_split and len(backend.state_names) >= 1
    assert backend.state_fork  # what this version's build writes
    backend.state_fork = forking
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((13, 3, 112, 112)).astype(np.float32)
    enc = IncrementalEncoder(backend, 8, exact=True)
    windows = 0
    for i, x in enumerate(frames):
        enc.push(x)
        if enc.ready:
            inc = backend.head(enc.window())
            whole = backend.infer_clip(frames[i - 7:i + 1])
            assert np.abs(inc.logits - whole.logits).max() <= 1e-4
            assert np.abs(inc.keypoint_scores - whole.keypoint_scores).max() <= 1e-4
            windows += 1
    assert windows == 6
    # each new sample costs one batched encoder call of (shift layers + 1) frames, not T frames
    assert enc.encoded_frames <= len(frames) * (len(backend.state_names) + 1)


def test_carried_state_only_differs_after_the_first_window(pkg):
    """Why exact mode exists: TSM-style carried state is not the whole-clip result."""
    backend = open_backend(packaging.load(pkg), "onnxruntime")
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((9, 3, 112, 112)).astype(np.float32)
    enc = IncrementalEncoder(backend, 8, exact=False)
    for x in frames[:8]:
        enc.push(x)
    assert np.abs(backend.head(enc.window()).logits - backend.infer_clip(frames[:8]).logits).max() <= 1e-4
    enc.push(frames[8])
    assert np.abs(backend.head(enc.window()).logits - backend.infer_clip(frames[1:]).logits).max() > 1e-3


@pytest.mark.parametrize("stride_s", [None, 0.6])
def test_stream_results_equal_in_both_modes(pkg, stride_s):
    uri = "synthetic://?seed=5&segments=2&speed=0&size=112"
    probs = {}
    for inc in (True, False):
        with Recognizer(pkg, uri, incremental=inc, smoothing="none", stride_s=stride_s,
                        source_options={"block": True}) as rec:
            probs[inc] = [(r.timestamp, r.probs) for r in rec]
    assert len(probs[True]) == len(probs[False]) > 5
    for (ta, pa), (tb, pb) in zip(probs[True], probs[False]):
        assert ta == tb
        assert np.abs(pa - pb).max() <= 1e-4


def test_grid_sampler_picks_nearest_frame_and_survives_drops():
    sampler = GridSampler(frames=5, span_s=1.0)  # samples every 0.25 s
    times = [0.0, 0.1, 0.2, 0.31, 0.9, 1.02, 1.1]  # uneven, with a drop between 0.31 and 0.9
    picked = []
    for i, t in enumerate(times):
        samples, restarted = sampler.push(Frame(np.zeros((2, 2, 3), np.uint8), t, t, i))
        assert not restarted
        picked += [(s.k, s.frame.media_ts) for s in samples]
    assert picked == [(0, 0.0), (1, 0.2), (2, 0.31), (3, 0.9), (4, 1.02)]
    _, restarted = sampler.push(Frame(np.zeros((2, 2, 3), np.uint8), 0.5, 0.5, 9))  # clock went back
    assert restarted


def test_window_ring_is_the_last_t_tensors_in_order_across_wraps():
    from aknet_edge.config import ClipSpec
    from aknet_edge.runtime.window import Sample, WindowBuffer

    spec = ClipSpec(frames=4, size=32)
    buf = WindowBuffer(spec)
    pushed = []
    for i in range(11):
        x = np.full((3, 32, 32), float(i), np.float32)
        pushed.append(x)
        buf.push(Sample(i, float(i), Frame(np.zeros((2, 2, 3), np.uint8), 0.0, None, i), x))
        if i >= 3:
            clip = buf.clip()
            assert clip.flags["C_CONTIGUOUS"] and clip.shape == (4, 3, 32, 32)
            np.testing.assert_array_equal(clip, np.stack(pushed[-4:]))
    buf.clear()
    with pytest.raises(Exception, match="not full"):
        buf.clip()


def test_capture_thread_prepares_frames_and_a_failing_hook_falls_back(pkg):
    """Preprocessing moves to the capture thread; results are the same with it off or failing."""
    from aknet_edge.preprocess import preprocess_frame
    from aknet_edge.runtime.sources import ArraySource
    from aknet_edge.synthetic import iter_long_video

    _, frames = iter_long_video(7, 3, fps=3.5, size=112)
    images = [f for _, f in frames][:20]
    assert len(images) == 20
    spec = Recognizer(pkg, ArraySource(images, fps=3.5)).spec
    src = ArraySource(images, fps=3.5, block=True)
    src.prepare = lambda f: preprocess_frame(f.image, spec, f.color)
    src.start()
    first = src.read(timeout=5.0)
    src.close()
    np.testing.assert_array_equal(first.tensor, preprocess_frame(images[0], spec, "RGB"))

    def broken(frame):
        raise RuntimeError("hook failed")

    def run(hook=None, **opts):
        src = ArraySource(images, fps=3.5, block=True)
        src.prepare = hook
        with Recognizer(pkg, src, incremental=False, smoothing="none", **opts) as rec:
            return [r.probs for r in rec]

    on, off = run(preprocess_on_capture=True), run(preprocess_on_capture=False)
    failing = run(broken, preprocess_on_capture=False)
    assert len(on) == len(off) == len(failing) == 20 - 8 + 1
    np.testing.assert_array_equal(np.stack(on), np.stack(off))
    np.testing.assert_array_equal(np.stack(failing), np.stack(off))


def test_results_reach_the_iterator_without_waiting_for_the_next_frame(pkg):
    """The hand-off to the iterator is deferred only while frames are backlogged, never to the next camera frame."""
    import time

    made = {}
    uri = "synthetic://?seed=6&segments=2&fps=10&speed=1"  # paced like a camera: a frame every 100 ms
    with Recognizer(pkg, uri, max_seconds=6.0, on_result=lambda r: made.__setitem__(r.frame_index, time.monotonic())) as rec:
        delays = [time.monotonic() - made[r.frame_index] for r in rec]
    assert len(delays) >= 5
    # a few ms idle; waiting for the next frame would be a frame interval (0.1 s) each time; room for a busy runner
    assert float(np.median(delays)) < 0.07, delays


def _long_images(seed: int = 8, segments: int = 4, n: int = 60):
    from aknet_edge.synthetic import iter_long_video

    _, frames = iter_long_video(seed, segments, fps=3.5, size=112)
    return [f for _, f in frames][:n]


@pytest.mark.parametrize("incremental", [True, False])
def test_overlapped_head_gives_the_sequential_results_and_events(pkg, incremental):
    """The head thread changes when a window's last model call runs, not what it computes or the result order."""
    import threading

    from aknet_edge.runtime.sources import ArraySource

    images = _long_images()

    def run(overlap):
        events, names = [], []
        src = ArraySource(images, fps=3.5, block=True)
        with Recognizer(pkg, src, incremental=incremental, overlap=overlap, on_event=events.append,
                        on_result=lambda r: names.append(threading.current_thread().name)) as rec:
            results = list(rec)
        return results, [(e.label, e.state, e.start, e.end) for e in events], set(names)

    seq, seq_events, seq_threads = run(False)
    ovl, ovl_events, ovl_threads = run(True)
    assert len(seq) == len(ovl) == len(images) - 8 + 1
    assert [r.frame_index for r in ovl] == [r.frame_index for r in seq]
    np.testing.assert_array_equal(np.stack([r.probs for r in ovl]), np.stack([r.probs for r in seq]))
    assert [r.keypoints for r in ovl] == [r.keypoints for r in seq]
    assert ovl_events == seq_events and seq_events  # the synthetic actions make events, the closing one included
    assert seq_threads == {"aknet-inference"} and ovl_threads == {"aknet-head"}
    assert not [t for t in threading.enumerate() if t.name in ("aknet-head", "aknet-inference")]


def test_a_failing_callback_on_the_head_thread_stops_recognition_with_its_error(pkg):
    import threading

    from aknet_edge.runtime.sources import ArraySource

    def boom(result):
        raise ValueError("callback failed")

    src = ArraySource(_long_images(n=30), fps=3.5, block=True)
    with pytest.raises(ValueError, match="callback failed"):
        with Recognizer(pkg, src, incremental=True, on_result=boom) as rec:
            for _ in rec:
                pass
    assert not [t for t in threading.enumerate() if t.name in ("aknet-head", "aknet-inference")]


@pytest.mark.parametrize("overlap", [True, False])
def test_close_from_a_callback_stops_promptly_without_error(pkg, overlap):
    """A callback may call close(): recognition stops, the with block releases, no thread is left."""
    import threading
    import time

    from aknet_edge.runtime.sources import ArraySource

    src = ArraySource(_long_images(n=40), fps=3.5, block=True)
    seen = []
    t0 = time.monotonic()
    with Recognizer(pkg, src, incremental=True, overlap=overlap) as rec:
        rec.options.on_result = lambda r: (seen.append(r), rec.close() if len(seen) == 3 else None)
        results = list(rec)
    assert time.monotonic() - t0 < 10.0
    assert 3 <= len(results) < 40 - 8 + 1 and len(seen) >= 3
    assert not [t for t in threading.enumerate() if t.name in ("aknet-head", "aknet-inference")]


def test_a_non_positive_stride_is_refused_at_start(pkg):
    from aknet_edge.errors import ConfigError
    from aknet_edge.runtime.sources import ArraySource

    with pytest.raises(ConfigError, match="stride_s=0"):
        Recognizer(pkg, ArraySource(_long_images(n=10), fps=3.5), stride_s=0).start()


def test_with_a_stride_only_window_starts_get_fresh_chains(pkg):
    """Stride 2: every second window is computed, still equal to whole clip, with fewer encoded rows."""
    backend = open_backend(packaging.load(pkg), "onnxruntime")
    frames = np.random.default_rng(2).standard_normal((14, 3, 112, 112)).astype(np.float32)
    every, strided = IncrementalEncoder(backend, 8, exact=True), IncrementalEncoder(backend, 8, exact=True, stride=2)
    checked = 0
    for i, x in enumerate(frames):
        every.push(x)
        strided.push(x)
        if i >= 7 and (i - 7) % 2 == 0:
            whole = backend.infer_clip(frames[i - 7:i + 1])
            assert np.abs(backend.head(strided.window()).logits - whole.logits).max() <= 1e-4
            checked += 1
        elif i >= 7:
            with pytest.raises(Exception, match="no window starts"):
                strided.window()
    assert checked == 4
    assert strided.encoded_frames < every.encoded_frames
