"""A live source that goes away and comes back: telemetry says so, JSON Lines mark it, the open event ends there.

The camera here is a small :class:`Source` whose reads fail for a few seconds (and whose reopen fails
meanwhile), so the base class's reconnect loop runs exactly as for a real camera.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aknet_edge.runtime import Recognizer
from aknet_edge.runtime import sources as S
from aknet_edge.runtime.events import EventConfig, EventDetector
from aknet_edge.runtime.jsonl import JsonlWriter
from aknet_edge.runtime.telemetry import RateMeter, Telemetry

PKG = Path(__file__).parent / "data" / "package-0.2.0"
FPS = 15.0


class FlakyCamera(S.Source):
    """Synthetic action frames at ``FPS`` on the capture clock (no media time, like a camera): ``before_s`` of
    frames, then the stream is lost for ``outage_s`` (reads and reopens fail), then ``after_s`` more, then it ends."""

    color = "RGB"

    def __init__(self, before_s: float, outage_s: float, after_s: float, n_segments: int = 4,
                 uri: str = "flaky://camera", **kw) -> None:
        super().__init__(uri, **kw)
        from aknet_edge.synthetic import iter_long_video

        n = int(round((before_s + after_s) * FPS))
        _, it = iter_long_video(5, n_segments, FPS, 112, (3.0, 3.0))
        self._frames = [rgb for _, (_, rgb) in zip(range(n), it)]
        self._lose_at = int(round(before_s * FPS))
        self._outage_s = outage_s
        self._i = 0
        self._down_until = 0.0
        self._due = 0.0
        self.opens = 0

    def _open(self) -> None:
        self.opens += 1
        if time.monotonic() < self._down_until:
            raise S.SourceOpenError("camera unreachable")
        self._due = time.monotonic()

    def _grab(self):
        if self._i == self._lose_at and self._down_until == 0.0:
            self._down_until = time.monotonic() + self._outage_s  # the cable is pulled
            return None
        if self._i >= len(self._frames):
            self._finished = True
            return None
        if not self._wait_turn():
            return None
        self._i += 1
        return self._frames[self._i - 1], self._media_ts(self._i - 1)

    def _wait_turn(self) -> bool:
        """Wait until the next frame is due on the capture clock (False: the source stops)."""
        wait = self._due - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return False
        self._due += 1.0 / FPS
        return True

    def _media_ts(self, index: int):
        return None  # a camera: capture time only


def _watch(rec: Recognizer) -> list:
    """Run ``rec`` to the end of its stream: ``(time.monotonic(), stats)`` after every wait for a result."""
    snaps = []
    while True:
        try:
            rec.next_result(timeout=0.1)
        except S.EndOfStream:
            return snaps
        snaps.append((time.monotonic(), rec.stats()))


def _camera(before_s=3.5, outage_s=3.0, after_s=3.0) -> FlakyCamera:
    return FlakyCamera(before_s, outage_s, after_s, reconnect_initial_s=0.05, reconnect_max_s=0.2)


@pytest.mark.parametrize("overlap", [True, False], ids=["head-thread", "inline"])
def test_outage_is_reported_and_ends_the_open_event(overlap):
    out = io.StringIO()
    cam = _camera()
    # enter=exit=0: an event opens at the first window whose top class is an action and stays open until another
    # action takes over, so one is open when the camera goes away
    with Recognizer(PKG, cam, jsonl=out, enter=0.0, exit=0.0, min_duration_s=0.0, overlap=overlap) as rec:
        snaps = _watch(rec)
        final = rec.stats()
        events = list(rec.events)

    # telemetry: the state, and rates that are zero while the camera is away
    states = [s.source_state for _, s in snaps]
    assert "reconnecting" in states and states[-1] == "live" and final.source_state == "ended"
    down = [s for _, s in snaps if s.source_state == "reconnecting"]
    assert all(s.capture_fps == 0 and s.inference_fps == 0 for s in down)
    assert max(s.state_s for s in down) > 1.5 and max(s.frame_age_s for s in down) > 1.5
    assert final.outages == 1 and 2.0 < final.outage_s < 6.0
    assert final.reconnects == 1
    # after the camera is back, the capture rate measures the new stream only (not diluted by the outage)
    restored_at = next((t for t, s in snaps if s.outages == 1 and s.source_state == "live"), None)
    assert restored_at is not None
    back = [s for t, s in snaps if s.source_state == "live" and 1.5 < t - restored_at < 2.6]
    assert back and all(s.capture_fps > 0.75 * FPS for s in back), [round(s.capture_fps, 1) for s in back]

    # JSON Lines: one "lost", one "restored", the open event ended at the loss with its reason
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    kinds = [(o["type"], o.get("state")) for o in lines]
    stream = [o for o in lines if o["type"] == "stream"]
    assert [o["state"] for o in stream] == ["lost", "restored"], kinds
    lost, restored = stream
    i_lost, i_restored = lines.index(lost), lines.index(restored)
    assert lost["frame"] == cam._lose_at - 1 and lost["timestamp"] is not None and lost["reconnects"] == 0
    assert restored["frame"] >= cam._lose_at and restored["reconnects"] == 1
    assert 2.5 < restored["outage_s"] < 6.0 and restored["timestamp"] - lost["timestamp"] == pytest.approx(
        restored["outage_s"], abs=0.01)
    ended_at_loss = [o for o in lines[i_lost:i_restored] if o["type"] == "event"]
    assert len(ended_at_loss) == 1 and ended_at_loss[0]["state"] == "ended"
    assert ended_at_loss[0]["reason"] == "source lost" and ended_at_loss[0]["end"] <= lost["timestamp"]
    # nothing stays open across the outage, and results stop meanwhile
    before = lines[:i_lost]
    started = sum(o["type"] == "event" and o["state"] == "started" for o in before)
    ended = sum(o["type"] == "event" and o["state"] == "ended" for o in lines[:i_restored])
    assert started >= 1 and started == ended
    assert not [o for o in lines[i_lost:i_restored] if o["type"] == "result"]
    assert [o for o in lines[i_restored:] if o["type"] == "result"], "no results after the camera came back"
    # the Python side sees the same reason; ends decided by the scores have none
    assert [e.reason for e in events if e.reason == "source lost"] == ["source lost"]
    assert all(e.reason in (None, "source lost", "end of stream") for e in events)


class BurstCamera(FlakyCamera):
    """A network camera whose frames pile up in the buffer: ``before`` frames at once, then the stream is lost (for
    ``outage_s``), then ``after`` frames at ``FPS``. Frames carry media time (as RTP's do), so the burst still makes
    windows. The loss reaches the source's stats while its frames wait in the buffer, the order a busy machine gives
    a real camera's reader."""

    def __init__(self, before: int, outage_s: float, after: int) -> None:
        super().__init__(before / FPS, outage_s, after / FPS, n_segments=int((before + after) / FPS / 3.0) + 1,
                         uri="burst://camera", buffer_size=before + 4, block=False, reconnect_initial_s=0.05,
                         reconnect_max_s=0.1)

    def _wait_turn(self) -> bool:
        if self._i == 0:  # the burst comes once the recogniser runs
            return not self._stop.wait(0.3)
        return super()._wait_turn() if self._i > self._lose_at else True

    def _media_ts(self, index: int):
        return index / FPS + (self._outage_s if index >= self._lose_at else 0.0)


def test_frames_captured_before_a_loss_are_the_lost_streams():
    """Frames still buffered when the source reports its loss are used before the loss is reported: the lost line
    names the last of them, none of them count in the new stream's capture rate, and none reach a window after the
    outage."""
    cam = BurstCamera(before=150, outage_s=1.0, after=75)
    out = io.StringIO()
    with Recognizer(PKG, cam, jsonl=out) as rec:
        # the capture thread has pushed the first frames and lost the stream before the first read
        deadline = time.monotonic() + 10
        while not (st := cam.stats()).failed_reads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert st.failed_reads == 1 and st.frames >= 150  # (151 once it is back, 1 s later)
        snaps = _watch(rec)
    restored_snap = next((s for _, s in snaps if s.outages == 1 and s.source_state == "live" and s.frames >= 160),
                         None)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    stream = [o for o in lines if o["type"] == "stream"]
    assert [o["state"] for o in stream] == ["lost", "restored"]
    lost, restored = stream
    assert lost["frame"] == 149 and restored["frame"] == 150
    # windows after the outage hold only frames of the new stream
    after = [o for o in lines[lines.index(restored):] if o["type"] == "result"]
    assert after and all(o["frame"] >= 150 for o in after)
    # the capture rate after the outage is the new stream's (a buffered old frame would stretch its span by the
    # outage and more than halve it)
    assert restored_snap is not None and restored_snap.capture_fps > 0.75 * FPS, restored_snap


def test_no_stream_lines_for_a_source_that_never_fails():
    from aknet_edge.runtime.sources.memory import ArraySource

    rng = np.random.default_rng(0)
    out = io.StringIO()
    with Recognizer(PKG, ArraySource([rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(45)]),
                    jsonl=out) as rec:
        n = len(list(rec))
        assert rec.stats().source_state == "ended" and rec.stats().outages == 0
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert n > 0 and {o["type"] for o in lines} <= {"result", "event"}


# --------------------------------------------------------------------------- rates and states, no model


def test_rate_falls_to_zero_with_time():
    m = RateMeter(64, horizon_s=5.0)
    t0 = 1000.0
    for i in range(64):
        m.tick(t0 + i / FPS, now=t0 + i / FPS)
    last = t0 + 63 / FPS
    assert m.rate(last + 0.01) == pytest.approx(FPS, rel=1e-6)
    assert m.rate(last + 0.9 / FPS) == pytest.approx(FPS, rel=1e-6)  # the next frame is not due yet
    silence = [m.rate(last + s) for s in (0.5, 1, 2, 3, 4, 4.9)]
    assert all(a > b for a, b in zip(silence, silence[1:]))  # falls steadily...
    assert silence[0] < FPS
    assert m.rate(last + 5.0) == 0.0 and m.rate(last + 26) == 0.0  # ... to zero within the horizon


def test_a_tick_with_an_earlier_capture_time_is_not_late():
    m = RateMeter(64)
    for i in range(30):
        m.tick(100.0 + i / FPS, now=100.3 + i / FPS)  # each frame used 0.3 s after its capture
    assert m.rate(100.3 + 29 / FPS + 0.01) == pytest.approx(FPS, rel=1e-6)


def test_losing_the_source_restarts_the_rates_and_counts_the_outage():
    tel = Telemetry()
    t = time.monotonic()
    for i in range(40):
        tel.frame(t - 3 + i / FPS)
    tel.set_state("reconnecting")
    snap = tel.snapshot()
    assert snap.source_state == "reconnecting" and snap.capture_fps == 0 and snap.outages == 1
    assert "reconnecting" in snap.line()
    time.sleep(0.05)
    tel.set_state("live")
    now = time.monotonic()
    for i in range(10):
        tel.frame(now - 0.6 + i / FPS)  # one clock reading: a pause in this loop must not stretch the span
    snap = tel.snapshot()
    assert snap.source_state == "live" and snap.capture_fps == pytest.approx(FPS, rel=0.05)
    assert snap.outages == 1 and snap.outage_s >= 0.05 and snap.frame_age_s is not None
    with pytest.raises(ValueError):
        tel.set_state("gone")
    tel.source(dropped=2, reconnects=1, corrupt=3)
    snap = tel.snapshot()
    assert (snap.dropped, snap.reconnects, snap.corrupt) == (2, 1, 3) and "corrupt 3" in snap.line()


def test_finish_with_a_reason_and_the_jsonl_event_line():
    det = EventDetector(["no_action", "a"], EventConfig(min_duration_s=0))
    det.update(np.array([0.1, 0.9]), 1.0)
    (ev,) = det.finish(reason="source lost")
    assert ev.state == "ended" and ev.reason == "source lost"
    out = io.StringIO()
    w = JsonlWriter(out)
    w.write_event(ev)
    w.write_stream("lost", timestamp=1.5, frame=20, reconnects=0)
    first, second = (json.loads(ln) for ln in out.getvalue().splitlines())
    assert first["reason"] == "source lost" and first["end"] == 1.0
    assert second == {"type": "stream", "v": 1, "state": "lost", "timestamp": 1.5, "frame": 20, "reconnects": 0}


def test_threads_do_not_leak_over_an_outage():
    before = set(threading.enumerate())
    with Recognizer(PKG, _camera(before_s=1.0, outage_s=0.5, after_s=0.5)) as rec:
        list(rec)
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(threading.enumerate()) - before
