"""Tests of the procedural synthetic action clips and long videos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from aknet_edge import synthetic as syn
from aknet_edge.synthetic import CLASSES, SceneStyle, Segment

CLEAN = SceneStyle(noise=0.0, distractors=0, texture=False)
SIZE = 112


def _label(name: str) -> int:
    return CLASSES.index(name)


def _render_clean(name: str, seed: int, times: np.ndarray) -> np.ndarray:
    return syn.render_action(_label(name), np.random.default_rng(seed), np.asarray(times, dtype=float), SIZE, CLEAN)


def _changed(a: np.ndarray, b: np.ndarray, thresh: int = 60) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=-1) > thresh


def _diff_centroid(frame: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(x, y) centroid of the pixels that changed since ``ref``.

    For a translating object this is the midpoint of its start and current
    positions, so it moves the way the object does; needs no background model.
    """
    ys, xs = np.nonzero(_changed(frame, ref))
    assert xs.size > 0, "no pixel changed"
    return np.array([xs.mean(), ys.mean()])


def _trajectory(frames: np.ndarray) -> np.ndarray:
    return np.stack([_diff_centroid(f, frames[0]) for f in frames[1:]])


def test_classes_and_style() -> None:
    assert CLASSES[0] == "no_action"
    assert len(CLASSES) == 11 and len(set(CLASSES)) == 11
    style = SceneStyle()
    assert (style.noise, style.distractors, style.texture) == (6.0, 2, True)
    with pytest.raises(ValueError, match="noise"):
        SceneStyle(noise=-1.0)
    with pytest.raises(ValueError, match="distractors"):
        SceneStyle(distractors=-1)


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_every_class_renders(label: int) -> None:
    clip = syn.make_clip(label, seed=3)
    assert clip.shape == (8, SIZE, SIZE, 3) and clip.dtype == np.uint8
    assert clip.std() > 1.0  # not a blank image
    frames = syn.render_action(label, np.random.default_rng(1), np.linspace(0, 1, 5), 48)
    assert frames.shape == (5, 48, 48, 3) and frames.dtype == np.uint8


def test_make_clip_options_and_determinism() -> None:
    a = syn.make_clip(_label("move_left"), seed=7)
    assert np.array_equal(a, syn.make_clip(_label("move_left"), seed=7))
    assert not np.array_equal(a, syn.make_clip(_label("move_left"), seed=8))
    assert not np.array_equal(a, syn.make_clip(_label("move_right"), seed=7))
    b = syn.make_clip(2, seed=1, frames=16, size=64, style=SceneStyle(noise=0.0))
    assert b.shape == (16, 64, 64, 3) and b.dtype == np.uint8
    assert syn.make_clip(2, seed=1, frames=1).shape == (1, SIZE, SIZE, 3)


def test_render_action_same_scene_whatever_times() -> None:
    """The scene is drawn before anything that depends on len(times)."""
    few = _render_clean("rotate_cw", 5, [0.0, 1.0])
    many = _render_clean("rotate_cw", 5, np.linspace(0, 1, 9))
    # up to the object's +-1.5 px jitter, which depends on the number of frames
    assert _changed(few[0], many[0]).mean() < 0.02
    assert _changed(few[1], many[-1]).mean() < 0.02


@pytest.mark.parametrize(
    "bad",
    [
        dict(label=11),
        dict(label=-1),
        dict(label=1.0),
        dict(times=np.array([0.0, 1.5])),
        dict(times=np.zeros((2, 2))),
        dict(times=np.array([])),
        dict(size=4),
    ],
)
def test_render_action_rejects_bad_input(bad: dict) -> None:
    kwargs = dict(label=1, rng=np.random.default_rng(0), times=np.linspace(0, 1, 3), size=32) | bad
    with pytest.raises(ValueError):
        syn.render_action(**kwargs)


def test_make_clip_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="label"):
        syn.make_clip(len(CLASSES), seed=0)
    with pytest.raises(ValueError, match="seed"):
        syn.make_clip(0, seed=-1)
    with pytest.raises(ValueError, match="frames"):
        syn.make_clip(0, seed=0, frames=0)


def test_make_dataset() -> None:
    clips, labels = syn.make_dataset(2, seed=0, frames=4, size=32)
    n = 2 * len(CLASSES)
    assert clips.shape == (n, 4, 32, 32, 3) and clips.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.tolist() == list(range(len(CLASSES))) * 2  # interleaved
    again, _ = syn.make_dataset(2, seed=0, frames=4, size=32)
    assert np.array_equal(clips, again)
    other, other_labels = syn.make_dataset(2, seed=1, frames=4, size=32)
    assert np.array_equal(labels, other_labels)
    flat_a = {c.tobytes() for c in clips}
    flat_b = {c.tobytes() for c in other}
    assert len(flat_a) == n and len(flat_b) == n
    assert not flat_a & flat_b  # distinct seeds: disjoint clips
    empty, empty_labels = syn.make_dataset(0, seed=0, frames=2, size=16)
    assert empty.shape == (0, 2, 16, 16, 3) and empty_labels.shape == (0,)


def test_moving_classes_change_and_no_action_stays() -> None:
    moving = ("move_left", "move_right", "move_up", "move_down", "approach", "recede", "appear", "disappear")
    for seed in range(6):
        still = _render_clean("no_action", seed, [0.0, 1.0])
        assert _changed(still[0], still[1]).mean() < 0.02
        for name in moving:
            f = _render_clean(name, seed, [0.0, 1.0])
            assert _changed(f[0], f[1]).mean() > 0.02, (name, seed)


@pytest.mark.parametrize("seed", range(4))
def test_move_direction_and_order(seed: int) -> None:
    times = np.linspace(0, 1, 5)
    expect = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
    for name, (sx, sy) in expect.items():
        traj = _trajectory(_render_clean(name, seed, times))
        steps = np.diff(traj, axis=0)
        axis, other = (0, 1) if sx else (1, 0)
        sign = sx or sy
        assert np.all(sign * steps[:, axis] > 2.0), (name, traj)  # >= 0.3 * 112 / 4 / 2 px per step
        # sideways drift only from clipping at a border or 1 px jitter
        assert np.all(np.abs(steps[:, other]) < 0.5 * np.abs(steps[:, axis])), (name, traj)
    # played backwards, move_left moves right: order is what tells the pair apart
    left = _render_clean("move_left", seed, times)
    back = _trajectory(left[::-1])
    assert np.all(np.diff(back[:, 0]) > 2.0)


def _marker_centroid(frame: np.ndarray) -> np.ndarray:
    """Centroid of the orientation marker (pure near-black or near-white dot) of a clean render."""
    f = frame.astype(np.int32)
    grey = (f.max(axis=-1) - f.min(axis=-1)) <= 2
    for mask in (grey & (f.max(axis=-1) <= 12), grey & (f.min(axis=-1) >= 243)):
        if mask.sum() >= 6:
            ys, xs = np.nonzero(mask)
            return np.array([xs.mean(), ys.mean()])
    raise AssertionError("marker not found")


@pytest.mark.parametrize("seed", range(5))
def test_rotation_direction(seed: int) -> None:
    """cw is clockwise as seen on screen: with y pointing down, cross(p1-p0, p2-p1) > 0."""
    for name, sign in (("rotate_cw", 1.0), ("rotate_ccw", -1.0)):
        frames = _render_clean(name, seed, [0.0, 0.5, 1.0])
        p0, p1, p2 = (_marker_centroid(f) for f in frames)
        a, b = p1 - p0, p2 - p1
        cross = a[0] * b[1] - a[1] * b[0]
        assert sign * cross > 0, (name, seed, p0, p1, p2)


def _smooth(frame: np.ndarray) -> bool:
    """True when a clean frame has no object edge (flat or gradient background only)."""
    f = frame.astype(np.int32)
    return max(np.abs(np.diff(f, axis=0)).max(), np.abs(np.diff(f, axis=1)).max()) <= 4


@pytest.mark.parametrize("seed", range(4))
def test_appear_and_disappear(seed: int) -> None:
    times = [0.0, 0.1, 0.2, 0.9, 1.0]
    app = _render_clean("appear", seed, times)
    assert _smooth(app[0]) and np.array_equal(app[0], app[1]) and np.array_equal(app[0], app[2])
    assert not _smooth(app[-1]) and _changed(app[0], app[-1]).mean() > 0.01
    dis = _render_clean("disappear", seed, times)
    assert _smooth(dis[-1]) and np.array_equal(dis[-1], dis[-2])
    assert not _smooth(dis[0]) and _changed(dis[0], dis[-1]).mean() > 0.01


def test_noise_is_added_and_bounded() -> None:
    clean = syn.render_action(0, np.random.default_rng(0), np.zeros(2), 64, SceneStyle(noise=0.0))
    noisy = syn.render_action(0, np.random.default_rng(0), np.zeros(2), 64, SceneStyle(noise=6.0))
    diff = noisy.astype(np.float64) - clean
    assert 4.0 < diff.std() < 8.0
    assert not np.array_equal(noisy[0], noisy[1])  # fresh noise per frame


def test_long_video_segments_and_frames() -> None:
    fps = 10.0
    segments, frames = syn.iter_long_video(seed=2, n_segments=8, fps=fps, size=32, seg_seconds=(1.0, 1.5))
    assert len(segments) == 8
    assert segments[0].start == 0.0
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.start  # consecutive, no gap
        assert a.label != b.label  # never the same class twice in a row
    for s in segments:
        assert s.name == CLASSES[s.label]
        assert 1.0 - 0.5 / fps <= s.end - s.start <= 1.5 + 0.5 / fps
    assert any(s.label == 0 for s in segments)
    assert any(s.label != 0 for s in segments)

    items = list(frames)
    assert len(items) == round(segments[-1].end * fps)  # the frames cover the whole duration
    stamps = np.array([t for t, _ in items])
    assert np.allclose(stamps, np.arange(len(items)) / fps)
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for _, f in items)
    # every timestamp falls in exactly one segment
    for t in stamps:
        assert sum(s.start <= t < s.end for s in segments) == 1

    again, frames2 = syn.iter_long_video(seed=2, n_segments=8, fps=fps, size=32, seg_seconds=(1.0, 1.5))
    assert again == segments
    assert all(np.array_equal(f, g) for (_, f), (_, g) in zip(items, frames2))


def test_long_video_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="fps"):
        syn.iter_long_video(0, 3, fps=0.0)
    with pytest.raises(ValueError, match="seg_seconds"):
        syn.iter_long_video(0, 3, seg_seconds=(3.0, 2.0))
    with pytest.raises(ValueError, match="n_segments"):
        syn.iter_long_video(0, 0)


def _read_video(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_write_long_video_roundtrip(tmp_path, suffix: str) -> None:
    fps, size = 10.0, 48
    path = tmp_path / f"long{suffix}"
    segments = syn.write_long_video(path, seed=4, n_segments=3, fps=fps, size=size)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.name + ".segments.json"])

    frames = _read_video(path)
    expected = round(segments[-1].end * fps)
    assert abs(len(frames) - expected) <= 1
    assert frames[0].shape == (size, size, 3)

    # the decoded first frame matches the RGB render after RGB->BGR, up to compression
    _, it = syn.iter_long_video(seed=4, n_segments=3, fps=fps, size=size)
    _, first = next(it)
    err = np.abs(frames[0].astype(np.int32) - cv2.cvtColor(first, cv2.COLOR_RGB2BGR)).mean()
    assert err < 12.0

    meta = json.loads((tmp_path / (path.name + ".segments.json")).read_text())
    assert meta["fps"] == fps and meta["size"] == size
    assert syn.load_segments(path) == segments
    assert syn.load_segments(str(path) + ".segments.json") == segments
    assert all(isinstance(s, Segment) for s in segments)


def test_write_long_video_bad_suffix(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.avi.*\.mp4"):
        syn.write_long_video(tmp_path / "x.gif", seed=0, n_segments=2)  # .mkv is a shared FOURCC since 0.3.0
    assert list(tmp_path.iterdir()) == []


def test_write_long_video_missing_folder(tmp_path) -> None:
    with pytest.raises(OSError):
        syn.write_long_video(tmp_path / "nope" / "x.avi", seed=0, n_segments=2)


def test_load_segments_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="segments"):
        syn.load_segments(tmp_path / "missing.avi")
    bad = tmp_path / "bad.avi.segments.json"
    bad.write_text(json.dumps({"fps": 1.0}))
    with pytest.raises(ValueError, match="malformed"):
        syn.load_segments(tmp_path / "bad.avi")


def test_no_torch_import() -> None:
    """The generator must run where torch is absent (data prep, runtime tests)."""
    code = "import sys, aknet_edge.synthetic; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env=env).returncode == 0


def test_training_clips_are_sampled_by_time_like_the_live_window(monkeypatch) -> None:
    """With the model's span, a clip is T samples span/(T-1) apart inside a 2-3 s action (aknet_edge.sampling)."""
    from aknet_edge.sampling import sample_period

    seen = []
    real = syn.render_action

    def spy(label, rng, times, size, style=SceneStyle()):
        seen.append(np.asarray(times))
        return real(label, rng, times, size, style)

    monkeypatch.setattr(syn, "render_action", spy)
    for seed in range(20):
        syn.make_clip(1, seed=seed, frames=8, size=32, span_s=2.0)
    for times in seen:
        steps = np.diff(times)
        lo, hi = syn.ACTION_SECONDS
        assert np.allclose(steps, steps[0]) and sample_period(8, 2.0) / hi - 1e-9 <= steps[0] <= sample_period(8, 2.0) / lo + 1e-9
        assert 0.0 <= times[0] and times[-1] <= 1.0 + 1e-9
    assert len({round(float(t[0]), 6) for t in seen}) > 10  # random starts inside the action
    seen.clear()
    syn.make_clip(1, seed=0, frames=8, size=32)  # no span: the 0.2.0 spread over the whole action
    assert seen[0][0] <= 0.1 and seen[0][-1] >= 0.9
