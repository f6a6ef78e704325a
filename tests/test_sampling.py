"""One temporal sampling: a video fed through the runtime and through the training loader gives the same T frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aknet_edge.config import ClipSpec
from aknet_edge.data import LabelledFolder
from aknet_edge.sampling import FOLDER_FPS, TimeGrid, clip_indices, media_time, read_clip, sample_period


def _write_video(path, fps: float, n: int, size: int = 48) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size), True)
    assert w.isOpened()
    for i in range(n):  # each frame distinct: a bar at a position given by its index, and a colour ramp
        img = np.zeros((size, size, 3), np.uint8)
        img[:, :, 2] = (i * 37) % 256
        img[(i * 3) % size : (i * 3) % size + 3, :, 1] = 255
        w.write(img)
    w.release()


def _runtime_window(path, spec: ClipSpec) -> np.ndarray:
    """The first live window of a file, exactly as the recogniser samples it (source -> GridSampler)."""
    from aknet_edge.runtime.sources import open_source
    from aknet_edge.runtime.window import GridSampler

    sampler = GridSampler(spec.frames, spec.span_s)
    picked = []
    with open_source(str(path)) as src:
        for frame in src:
            samples, _ = sampler.push(frame)
            picked += [s.frame for s in samples]
            if len(picked) >= spec.frames:
                break
    return np.stack([cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB) for f in picked[: spec.frames]])


@pytest.mark.parametrize("fps,seconds", [(15.0, 4.0), (10.0, 2.5), (24.0, 2.1), (7.0, 3.0)])
def test_training_loader_and_runtime_take_the_same_frames(tmp_path, fps, seconds):
    path = tmp_path / "v.avi"
    _write_video(path, fps, int(round(fps * seconds)))
    spec = ClipSpec(frames=8, size=32, span_s=2.0)
    live = _runtime_window(path, spec)
    train = read_clip(path, spec)
    assert live.shape == train.shape == (8, 48, 48, 3)
    assert np.array_equal(live, train)
    # and the frames are the nearest ones to the grid times, not an even spread over the whole video
    n = int(round(fps * seconds))
    expected = clip_indices([media_time(i, fps) for i in range(n)], spec)
    assert expected == [min(n - 1, int(np.floor(k * sample_period(8, 2.0) * fps + 0.5))) for k in range(8)]


def test_labelled_folder_uses_the_shared_sampling(tmp_path):
    (tmp_path / "a").mkdir()
    _write_video(tmp_path / "a" / "long.avi", 15.0, 90)  # 6 s: only the first 2 s are the clip
    spec = ClipSpec(frames=8, size=32, span_s=2.0)
    from aknet_edge.preprocess import preprocess_clip

    x, y, bad = LabelledFolder.scan(tmp_path).load(spec)
    assert bad == 0 and np.allclose(x[0], preprocess_clip(read_clip(tmp_path / "a" / "long.avi", spec), spec))


def test_short_clip_repeats_its_last_frame(tmp_path):
    path = tmp_path / "short.avi"
    _write_video(path, 15.0, 12)  # 0.8 s of a 2 s span
    spec = ClipSpec(frames=8, size=32, span_s=2.0)
    clip = read_clip(path, spec)
    idx = clip_indices([media_time(i, 15.0) for i in range(12)], spec)
    assert idx == [0, 4, 9, 11, 11, 11, 11, 11]
    assert np.array_equal(clip[3], clip[7])


def test_frame_folder_plays_at_the_folder_rate(tmp_path):
    for i in range(40):
        cv2.imwrite(str(tmp_path / f"{i:03d}.tif"), np.full((16, 16, 3), i * 5, np.uint8))  # TIFF trains too
    spec = ClipSpec(frames=8, size=32, span_s=2.0)
    clip = read_clip(tmp_path, spec)
    picks = [int(round(k * sample_period(8, 2.0) * FOLDER_FPS)) for k in range(8)]
    assert [int(c[0, 0, 0]) for c in clip] == [i * 5 for i in picks]


def test_time_grid_ties_go_to_the_later_frame_and_each_time_resolves_once():
    grid: TimeGrid[str] = TimeGrid(1.0)
    assert [(r.k, r.item) for r in grid.push(0.0, "a")] == [(0, "a")]
    assert grid.push(0.5, "b") == []
    got = grid.push(1.5, "c")  # t=1.0 is equidistant from b (0.5) and c (1.5)
    assert [(r.k, r.item) for r in got] == [(1, "c")]
    got = grid.push(4.2, "d")  # t=2.0: c is 0.5 away, d 2.2; t=3.0: c 1.5, d 1.2; t=4.0: d
    assert [(r.k, r.item) for r in got] == [(2, "c"), (3, "d"), (4, "d")]
