"""The one recognition pipeline: its lifecycle, the backend contract, outputs as sinks, one stats type."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from aknet_edge import package as packaging
from aknet_edge.errors import ConfigError
from aknet_edge.runtime import MultiRecognizer, Recognizer
from aknet_edge.runtime.backend_choice import BACKENDS, open_backend
from aknet_edge.runtime.pipeline import PipelineClosedError
from aknet_edge.runtime.sinks import Sink
from aknet_edge.runtime.sources import EndOfStream
from aknet_edge.runtime.sources.memory import ArraySource
from aknet_edge.runtime.telemetry import PipelineStats

PKG = Path(__file__).parent / "data" / "package-0.2.0"
_THREADS = ("aknet-inference", "aknet-head")


def _frames(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(n)]


def _ours() -> list:
    return [t for t in threading.enumerate() if t.name in _THREADS or t.name.startswith("aknet-capture")]


class Recording(Sink):
    """A sink that keeps what it was given (and whether it was opened and closed)."""

    name = "recording"
    wants_frames = True

    def __init__(self) -> None:
        self.calls: dict = {"open": 0, "result": [], "event": [], "frame": [], "stream_state": [], "close": 0}

    def open(self) -> None:
        self.calls["open"] += 1

    def result(self, result) -> None:
        self.calls["result"].append(result)

    def event(self, event) -> None:
        self.calls["event"].append(event)

    def frame(self, stream, image) -> None:
        self.calls["frame"].append((stream, image.shape))

    def stream_state(self, stream, state, info) -> None:
        self.calls["stream_state"].append((stream, state))

    def close(self) -> None:
        self.calls["close"] += 1


class Broken(Recording):
    name = "broken"

    def result(self, result) -> None:
        raise RuntimeError("sink broke")


# --------------------------------------------------------------------------- lifecycle


def test_a_recogniser_closed_before_it_ran_opens_nothing():
    src = ArraySource(_frames(30))
    rec = Recognizer(PKG, src)
    rec.close()
    with pytest.raises(EndOfStream):
        rec.next_result(timeout=0.1)
    assert list(rec) == []  # iteration ends at once
    with pytest.raises(PipelineClosedError, match="closed"):
        rec.start()
    assert rec.backend is None and not rec.lanes and src._thread is None and not _ours()


def test_a_recogniser_closed_after_it_ran_stays_closed():
    rec = Recognizer(PKG, ArraySource(_frames(60)))
    with rec:
        first = list(rec)
    assert first and rec.closed and rec.backend.closed
    threads = len(threading.enumerate())
    assert list(rec) == []  # ends at once, never reopens
    with pytest.raises(EndOfStream):
        rec.next_result(timeout=0.1)
    with pytest.raises(PipelineClosedError):
        rec.start()
    assert len(threading.enumerate()) == threads and not _ours()


def test_an_unpaced_synthetic_source_loses_no_window():
    """speed=0 draws frames far faster than recognition: it is read like a file, every frame used."""
    with Recognizer(PKG, "synthetic://?seed=1&segments=2&speed=0&size=64") as rec:
        results = list(rec)
        stats = rec.stats()
    assert results and stats.dropped == 0 and stats.skipped_windows == 0
    assert rec.source.block


def test_a_source_faster_than_recognition_warns_once_and_counts(caplog):
    caplog.set_level(logging.WARNING)
    src = ArraySource(_frames(300), speed=0.0, block=False, buffer_size=2)  # live-like: newest frames win
    with Recognizer(PKG, src) as rec:
        list(rec)
        stats = rec.stats()
    warned = [r for r in caplog.records if "slower than the source" in r.getMessage()]
    assert stats.dropped > 0 and len(warned) == 1


# --------------------------------------------------------------------------- the backend contract


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_option_a_backend_does_not_take_is_an_error_naming_it(backend):
    pkg = packaging.load(PKG)
    with pytest.raises(ConfigError, match=f"backend {backend} does not take bogus"):
        open_backend(pkg, backend, bogus=1)


def test_tensorrt_refuses_onnxruntime_options_before_anything_opens():
    rec = Recognizer(PKG, ArraySource(_frames(10)), backend="tensorrt", threads=2)
    with pytest.raises(ConfigError, match="threads=2 is an ONNX Runtime option"):
        rec.start()
    assert rec.backend is None and not _ours()


def test_capabilities_are_declared():
    with open_backend(packaging.load(PKG), "onnxruntime") as backend:
        assert backend.concurrent_roles and backend.batches and not backend.streams_frames
        assert backend.has_split and backend.max_streams is None
    assert backend.closed


def test_an_error_in_the_middle_of_a_run_leaves_nothing_open():
    sink = Recording()

    def boom(result):
        raise ValueError("callback failed")

    rec = Recognizer(PKG, ArraySource(_frames(60)), on_result=boom, sinks=[sink])
    with pytest.raises(ValueError, match="callback failed"):
        with rec:
            list(rec)
    assert rec.backend.closed and rec.backend._sessions == {}
    assert rec.source._thread is None and not _ours()
    assert sink.calls["open"] == 1 and sink.calls["close"] == 1


# --------------------------------------------------------------------------- sinks


def test_every_sink_gets_results_events_and_frames_and_a_failing_one_is_isolated(caplog):
    caplog.set_level(logging.WARNING)
    good, bad = Recording(), Broken()
    with Recognizer(PKG, ArraySource(_frames(90)), sinks=[bad, good], stream="cam") as rec:
        results = list(rec)
        events = list(rec.events)
    assert len(good.calls["result"]) == len(results) == len(good.calls["frame"]) > 0
    assert [e.state for e in good.calls["event"]] == [e.state for e in events]
    assert {s for s, _ in good.calls["frame"]} == {"cam"}
    assert bad.calls["close"] == 1 and good.calls["close"] == 1
    assert len([r for r in caplog.records if "sink broke" in r.getMessage()]) == 1


def test_frames_are_drawn_only_for_sinks_that_want_them():
    class NoFrames(Recording):
        wants_frames = False

    sink = NoFrames()
    with Recognizer(PKG, ArraySource(_frames(45)), sinks=[sink]) as rec:
        results = list(rec)
    assert results and not sink.calls["frame"] and all(r.image is None for r in results)


# --------------------------------------------------------------------------- one stats type


def test_one_stats_type_for_one_or_many_streams():
    with Recognizer(PKG, ArraySource(_frames(45)), stream="a") as one:
        list(one)
        s1 = one.stats()
    with MultiRecognizer(PKG, {"a": ArraySource(_frames(45)), "b": ArraySource(_frames(45, seed=1))}) as many:
        list(many)
        s2 = many.stats()
    assert isinstance(s1, PipelineStats) and isinstance(s2, PipelineStats)
    assert list(s1.streams) == ["a"] and s1.results == s1.streams["a"].results
    assert sorted(s2.streams) == ["a", "b"]
    assert s2.results == sum(s.results for s in s2.streams.values()) == 2 * s1.results
    assert s2.frames == 90 and s2.to_dict()["frames"] == 90


def test_a_triton_sequence_base_beyond_64_bits_is_one_cli_error():
    import subprocess
    import sys

    for bad in ("18446744073709551616", "0"):
        proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", "--backend", "triton", "--triton-url",
                               "127.0.0.1:1", "--triton-sequence-base", bad, "--package", str(PKG)],
                              capture_output=True, text=True, timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and lines[-1].startswith("error: --triton-sequence-base"), proc.stderr
