"""MultiRecognizer: N streams on one backend equal N single-stream recognisers, and streams are independent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from aknet_edge.errors import ConfigError
from aknet_edge.runtime import MultiRecognizer, Recognizer
from aknet_edge.runtime.multistream import split_source_arg, stream_video_path
from aknet_edge.runtime.sources.base import Source
from aknet_edge.runtime.sources.memory import ArraySource
from aknet_edge.synthetic import iter_long_video

from test_runtime_support import demo_package

# three cameras at different rates, each its own scenes and actions
STREAMS = {"front": (3, 15.0), "rear": (4, 10.0), "left": (5, 25.0)}


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.fixture(scope="module")
def footage() -> Dict[str, tuple]:
    out = {}
    for name, (seed, fps) in STREAMS.items():
        _, frames = iter_long_video(seed, 2, fps, 112, (2.5, 3.0))
        out[name] = ([f for _, f in frames], fps)
    return out


def _single(pkg, frames, fps, **opts):
    results = []
    with Recognizer(pkg, ArraySource(frames, fps=fps), **{"overlap": False, **opts}) as rec:
        results = list(rec)
        events = list(rec.events)
    return results, events


def _multi(pkg, footage, **opts):
    sources = {name: ArraySource(frames, fps=fps) for name, (frames, fps) in footage.items()}
    with MultiRecognizer(pkg, sources, **opts) as rec:
        results = list(rec)
        events = {name: rec.events(name) for name in footage}
        steps = rec.steps
    by: Dict[str, List] = {name: [] for name in footage}
    for r in results:
        by[r.stream].append(r)
    return by, events, steps


def _same(single, multi, single_events, multi_events):
    assert len(single) == len(multi) > 0
    for a, b in zip(single, multi):
        assert a.timestamp == b.timestamp and a.frame_index == b.frame_index
        assert np.abs(a.logits - b.logits).max() <= 1e-5
        assert a.label == b.label
        assert [k[:3] for k in a.keypoints] == [k[:3] for k in b.keypoints]  # identical keypoints
        assert np.allclose([k[3] for k in a.keypoints], [k[3] for k in b.keypoints], atol=1e-5)
    strip = [(e.label, e.state, e.start, e.end, e.reason) for e in single_events]
    assert strip == [(e.label, e.state, e.start, e.end, e.reason) for e in multi_events]


MODES = {
    "whole-clip": dict(incremental=False),
    "exact": dict(incremental=True, exact_incremental=True),
    "carried": dict(incremental=True, exact_incremental=False),
    "exact-stride": dict(incremental=True, exact_incremental=True, stride_s=0.6),
    "whole-clip-stride": dict(incremental=False, stride_s=0.6),
    "exact-inline-head": dict(incremental=True, exact_incremental=True, overlap=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_equals_separate_recognisers(pkg, footage, mode):
    opts = MODES[mode]
    by, events, steps = _multi(pkg, footage, **opts)
    total_events = 0
    for name, (frames, fps) in footage.items():
        results, single_events = _single(pkg, frames, fps, **opts)
        _same(results, by[name], single_events, events[name])
        assert all(r.stream == name for r in by[name])
        total_events += len(single_events)
    assert total_events > 0  # the footage has actions: events are compared, not two empty lists
    # batched: fewer steps than frames in all (files are backlogged, so the streams share steps)
    assert steps < sum(len(f) for f, _ in footage.values())


@pytest.mark.slow
def test_exact_mode_with_parent_rows_equals_separate_recognisers(pkg, footage, monkeypatch, tmp_path):
    """Exact incremental mode forking each camera's chains from its own row (the parent-row encoder graph)."""
    pytest.importorskip("torch")
    import onnxruntime as ort

    from aknet_edge import graph_io
    from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
    from aknet_edge.export.onnx_export import save, to_split_onnx
    from aknet_edge.runtime import pipeline
    from aknet_edge.runtime.backend_choice import open_backend

    enc, _ = to_split_onnx(load_checkpoint(DEMO_WEIGHTS).eval(), parent_rows=True)
    path = save(enc, tmp_path / "frame_encoder.parents.onnx")
    calls = []

    def with_parents(*args, **kwargs):
        backend = open_backend(*args, **kwargs)
        backend._sessions[graph_io.FRAME_ENCODER] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        backend._inspect_sessions()
        real = backend.encode_frame

        def encode_frame(frame, state, parents=None):
            calls.append(parents is not None)
            return real(frame, state, parents)

        backend.encode_frame = encode_frame
        return backend

    monkeypatch.setattr(pipeline, "open_backend", with_parents)
    opts = MODES["exact"]
    by, events, _ = _multi(pkg, footage, **opts)
    assert any(calls)  # batched calls did fork by parent row
    for name, (frames, fps) in footage.items():
        results, single_events = _single(pkg, frames, fps, **opts)
        _same(results, by[name], single_events, events[name])


class _Cut(Source):
    """A live camera that delivers ``cut_after`` frames at ``fps`` and then stops delivering (a stalled camera)
    or goes away (``lose=True``: grab fails, so the source reconnects, forever failing to reopen)."""

    live = True

    def __init__(self, frames, fps: float, cut_after: int, lose: bool = False, **options) -> None:
        super().__init__("cut://", reconnect_initial_s=0.05, reconnect_max_s=0.05, **options)
        self._frames, self._fps, self._cut, self._lose = frames, fps, cut_after, lose
        self._i = 0
        self.color = "RGB"

    def _open(self) -> None:
        if self._i >= self._cut and self._lose:
            raise OSError("camera gone")

    def _grab(self):
        if self._i >= self._cut:
            if self._lose:
                return None
            self._stop.wait(30)  # stalls until closed
            return None
        t = self._i / self._fps
        image = self._frames[self._i % len(self._frames)]
        self._i += 1
        self._pace(t, 1.0)
        return image, t


@pytest.mark.slow
@pytest.mark.parametrize("lose", [False, True], ids=["stall", "lost"])
def test_a_cut_stream_never_holds_up_the_others(pkg, footage, lose):
    """One camera cut mid-run (stalled, or lost and reconnecting): the others' results keep coming, in real
    time, equal to theirs alone; the cut one's open event ends."""
    frames, fps = footage["front"]
    live_frames = frames[:75]  # 5 s at 15 fps, paced
    seen: Dict[str, List] = {"ok": [], "cut": []}
    lines: List[dict] = []

    class Sink:
        def write(self, text):
            for line in text.splitlines():
                if line.strip():
                    lines.append(json.loads(line))

        def flush(self):
            pass

    # delivers everything, then stalls; a buffer for all its frames, so a busy machine's pause drops none of them
    ok = _Cut(live_frames, fps, cut_after=len(live_frames), buffer_size=len(live_frames))
    cut = _Cut(footage["rear"][0], 10.0, cut_after=15, lose=lose)  # 1.5 s, then cut
    t0 = time.monotonic()
    with MultiRecognizer(pkg, {"ok": ok, "cut": cut}, max_seconds=8.0, jsonl=Sink()) as rec:
        for r in rec:
            seen[r.stream].append((time.monotonic() - t0, r))
    # the healthy stream: every window, each within a step of its frame (no wait for the cut camera)
    ok_results = [r for _, r in seen["ok"]]
    alone, _ = _single(pkg, live_frames, fps, incremental=True)
    assert len(ok_results) == len(alone)
    for a, b in zip(alone, ok_results):
        assert np.abs(a.logits - b.logits).max() <= 1e-5
    late = [r.latency_ms for r in ok_results]
    # paced at 15 fps, a result waits for a step (67 ms), never for the cut stream (30 s, or for ever); the bound
    # leaves room for a busy runner's pauses
    assert max(late) < 2000, late
    arrival = [t for t, _ in seen["ok"]]
    assert arrival[-1] >= 4.0  # results kept coming after the cut at 1.5 s
    if lose:
        assert any(l.get("type") == "stream" and l["state"] == "lost" and l["stream"] == "cut" for l in lines)
        assert rec.source_state("cut") == "ended" and rec.stats().streams["cut"].outages == 1
    assert all("stream" in l for l in lines)


def test_names_uris_and_video_paths():
    assert split_source_arg("front=rtsp://cam/a?x=1", 0) == ("front", "rtsp://cam/a?x=1")
    assert split_source_arg("synthetic://?seed=1&fps=15", 3) == ("3", "synthetic://?seed=1&fps=15")
    assert split_source_arg("rosbag2:///b?topic=/x", 1) == ("1", "rosbag2:///b?topic=/x")
    assert stream_video_path("out/run.mp4", "front") == Path("out/run-front.mp4")


def test_duplicate_names_are_refused(pkg):
    with pytest.raises(ConfigError, match="given twice"):
        MultiRecognizer(pkg, [("a", "synthetic://"), ("a", "synthetic://?seed=2")])


def test_more_streams_than_the_engines_allow_are_refused(pkg, monkeypatch):
    from aknet_edge.runtime import pipeline
    from aknet_edge.runtime.backend_choice import open_backend

    def limited(*args, **kwargs):
        b = open_backend(*args, **kwargs)
        b.max_streams = 2
        return b

    monkeypatch.setattr(pipeline, "open_backend", limited)
    rec = MultiRecognizer(pkg, ["synthetic://?speed=0", "synthetic://?speed=0&seed=2", "synthetic://?seed=3"])
    with pytest.raises(ConfigError, match=r"at most 2.*--max-streams 3"):
        rec.start()
    rec.close()


def test_engine_stream_limit_comes_from_the_manifest():
    """TensorRT engines batch as many cameras as the build's --max-streams; packages from before it: their batch
    profile's MAX."""
    from types import SimpleNamespace

    from aknet_edge.runtime.backends import engine_max_streams

    def pkg_with(**build):
        return SimpleNamespace(manifest=SimpleNamespace(build=SimpleNamespace(**build)))

    assert engine_max_streams(pkg_with(max_streams=8, batch=(1, 1, 16))) == 8
    assert engine_max_streams(pkg_with(batch=(1, 1, 4))) == 4  # a 0.3.0 package: what its profile takes


def test_the_multi_stream_modules_import_without_torch():
    from conftest import blocking_imports, run_py

    proc = run_py(blocking_imports("torch") + (
        "import aknet_edge.runtime.multistream, aknet_edge.runtime.mosaic, aknet_edge.runtime.sources.rosbag\n"
        "from aknet_edge.runtime import MultiRecognizer\n"
        "from aknet_edge.runtime.window import encode_batch\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
