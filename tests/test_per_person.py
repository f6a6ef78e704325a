"""Per-person recognition: fixed regions and tracked actors are lanes of the one pipeline."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from aknet_edge.errors import ConfigError
from aknet_edge.runtime import MultiRecognizer, Recognizer
from aknet_edge.runtime import records
from aknet_edge.runtime.sources.memory import ArraySource
from aknet_edge.runtime.tracks import TrackFeed
from aknet_edge.runtime.views import parse_region, square
from aknet_edge.scenes import multi_actor_scene, side_by_side, write_detections
from aknet_edge.synthetic import iter_long_video

PKG = Path(__file__).parent / "data" / "package-0.2.0"


def _video(seed: int, n: int = 75, size: int = 112) -> list:
    _, frames = iter_long_video(seed, 3, 15.0, size)
    return [f for _, (_, f) in zip(range(n), frames)]


def _run(source, **kw):
    out = io.StringIO()
    with Recognizer(PKG, source, jsonl=out, **kw) as rec:
        results = list(rec)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    return results, lines


def test_regions_over_two_videos_side_by_side_equal_each_video_alone():
    left, right = _video(1), _video(2)
    both = side_by_side([left, right])
    assert both[0].shape == (112, 224, 3)
    alone = {name: _run(ArraySource(frames, color="RGB"))[0] for name, frames in (("l", left), ("r", right))}
    results, lines = _run(ArraySource(both, color="RGB"), regions=["l=0,0,112,112", "r=0.5,0,0.5,1"])
    per = {name: [r for r in results if r.roi == name] for name in ("l", "r")}
    for name in ("l", "r"):
        got, want = per[name], alone[name]
        assert len(got) == len(want) > 0
        assert [r.frame_index for r in got] == [r.frame_index for r in want]
        assert [r.label for r in got] == [r.label for r in want]
        np.testing.assert_allclose([r.confidence for r in got], [r.confidence for r in want], atol=1e-3)
        np.testing.assert_allclose(np.stack([r.logits for r in got]), np.stack([r.logits for r in want]), atol=1e-3)
    assert {r.box for r in per["l"]} == {(0, 0, 112, 112)} and {r.box for r in per["r"]} == {(112, 0, 112, 112)}
    assert {ln["roi"] for ln in lines if ln["type"] == "result"} == {"l", "r"}


def test_regions_of_several_cameras_batch_in_one_pipeline():
    cams = {"a": ArraySource(side_by_side([_video(1, 45), _video(2, 45)]), color="RGB"),
            "b": ArraySource(_video(3, 45), color="RGB")}
    with MultiRecognizer(PKG, cams, regions=["a:x=0,0,112,112", "a:y=112,0,112,112"]) as rec:
        results = list(rec)
        stats = rec.stats()
    assert {(r.stream, r.roi) for r in results} == {("a", "x"), ("a", "y"), ("b", None)}
    assert sorted(stats.streams) == ["a/x", "a/y", "b"]


@pytest.mark.parametrize("text", ["x=1,2,3", "=0,0,1,1", "a=0,0,0,5", "bad name=0,0,1,1", "a=0,0,-1,1", "a=x,0,1,1"])
def test_bad_regions_are_one_clear_error(text):
    with pytest.raises(ConfigError, match="NAME=x,y,w,h"):
        parse_region(text)


def test_a_region_naming_an_unknown_camera_is_refused():
    with pytest.raises(ConfigError, match="no camera is named 'c'"):
        MultiRecognizer(PKG, {"a": ArraySource(_video(1, 20)), "b": ArraySource(_video(2, 20))}, regions=["c:x=0,0,1,1"])


def test_square_crop_keeps_inside_the_frame():
    assert square((0, 0, 10, 20), 0.0, 100, 100) == (0, 0, 20, 20)
    assert square((90, 90, 10, 10), 0.5, 100, 100) == (80, 80, 20, 20)  # shifted back inside
    assert square((10, 10, 500, 40), 0.1, 100, 120) == (20, 0, 100, 100)  # the short side, kept inside


def _scene_run(scene, feed, **kw):
    frames, times = [], []
    for t, f, boxes in scene.frames():
        frames.append(f)
        times.append(t)
    src = ArraySource(frames, fps=scene.fps, color="RGB")
    out = io.StringIO()
    with Recognizer(PKG, src, jsonl=out, tracks=feed, **kw) as rec:
        results = list(rec)
    return results, [json.loads(ln) for ln in out.getvalue().splitlines()]


def test_tracked_actors_each_get_their_own_results_and_events(tmp_path):
    scene = multi_actor_scene(5, actors=3, segments=2)
    det = tmp_path / "det.jsonl"
    write_detections(scene, det)
    results, lines = _scene_run(scene, str(det))
    assert {r.track for r in results} == {"a0", "a1", "a2"}
    for r in results:
        assert r.box is not None and r.box[2] == r.box[3]  # square crops
    v = __import__("jsonschema").Draft202012Validator(records.load_schema())
    for ln in lines:
        v.validate(ln)
    assert any(ln["type"] == "event" and ln.get("track") for ln in lines)


def test_a_track_that_disappears_ends_its_event_with_track_lost():
    scene = multi_actor_scene(6, actors=2, segments=2)
    feed = TrackFeed()
    for k, (t, _, boxes) in enumerate(scene.frames()):
        feed.push(t, [(i, b) for i, b in boxes if i == "a0" or t < scene.duration / 2])  # a1 leaves half-way
    results, lines = _scene_run(scene, feed, min_duration_s=0.0)
    ends = [ln for ln in lines if ln["type"] == "event" and ln.get("track") == "a1" and ln["state"] == "ended"]
    assert ends and ends[-1]["reason"] == "track lost"
    # its lane goes on with the last crop through the timeout (a short occlusion keeps the lane), then ends
    assert max(r.timestamp for r in results if r.track == "a1") < scene.duration / 2 + 1.0 + 0.1


def test_bad_boxes_reused_ids_disordered_records_and_too_many_tracks_never_crash(caplog):
    caplog.set_level(logging.WARNING)
    scene = multi_actor_scene(7, actors=4, segments=2)
    feed = TrackFeed()
    recs = list(scene.frames())
    for t, _, boxes in reversed(recs):  # out of order: put in order by time
        tracks = [(i, b) for i, b in boxes]
        tracks += [("out", (-500, -500, 50, 50)), ("zero", (5, 5, 0, 0)), ("nan", (float("nan"), 1, 2, 3)),
                   ("edge", (scene.width - 10, scene.height - 10, 80, 80))]
        if 1.0 < t < 1.5:
            tracks = []  # a gap: every track misses half a second (inside the timeout)
        feed.push(t, tracks)
    results, lines = _scene_run(scene, feed, max_tracks=3, track_timeout_s=1.0)
    tracks = {r.track for r in results}
    assert len(tracks) <= 4 and "zero" not in tracks and "nan" not in tracks
    assert feed.bad >= 2
    warned = [r for r in caplog.records if "max_tracks" in r.getMessage()]
    assert len(warned) == 1


def test_track_ids_reused_after_their_track_ended_start_a_new_lane():
    scene = multi_actor_scene(8, actors=1, segments=3)
    feed = TrackFeed()
    for t, _, boxes in scene.frames():
        if not (2.5 < t < 4.0):  # gone for 1.5 s (> timeout), then back under the same id
            feed.push(t, boxes)
    results, lines = _scene_run(scene, feed, track_timeout_s=0.5, min_duration_s=0.0)
    times = sorted(r.timestamp for r in results if r.track == "a0")
    assert times[0] < 2.5 and times[-1] > 4.0
    assert not [r for r in results if 2.5 + 0.5 + 0.1 < r.timestamp < 4.0]  # ended after the 0.5 s timeout


def test_tracks_from_a_callback():
    scene = multi_actor_scene(9, actors=2, segments=2)
    truth = {round(t, 6): boxes for t, _, boxes in scene.frames()}

    def boxes(stream, t):
        return truth.get(round(t, 6))

    results, _ = _scene_run(scene, boxes)
    assert {r.track for r in results} == {"a0", "a1"}


def test_regions_and_tracks_together_are_refused():
    with pytest.raises(ConfigError, match="one or the other"):
        Recognizer(PKG, ArraySource(_video(1, 10)), regions=["a=0,0,1,1"], tracks=TrackFeed())


def test_the_run_cli_recognises_each_track_of_a_detections_file(tmp_path):
    import subprocess
    import sys

    import cv2

    scene = multi_actor_scene(11, actors=2, segments=2)
    video = tmp_path / "scene.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), scene.fps, (scene.width, scene.height))
    for _, f, _ in scene.frames():
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    det = tmp_path / "det.jsonl"
    write_detections(scene, det)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", str(video), "--package", str(PKG), "--tracks",
                           str(det), "--jsonl", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert {ln.get("track") for ln in lines if ln["type"] == "result"} == {"a0", "a1"}
    bad = subprocess.run([sys.executable, "-m", "aknet_edge.run", str(video), "--package", str(PKG), "--tracks",
                          str(tmp_path / "missing.jsonl")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --tracks")
