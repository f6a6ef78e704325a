"""Small-actor scenes: a small actor does the class among shaking look-alikes; training and the bench read them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from aknet_edge.errors import ConfigError
from aknet_edge.synthetic import CLASSES, SmallActorStyle, make_dataset, make_small_actor_clip

ROOT = Path(__file__).resolve().parents[1]
ALONE = SmallActorStyle(clutter=(0, 0), distractors=(0, 0), noise=0.0)  # the actor on a textured background


def _changed(a: np.ndarray, b: np.ndarray, thresh: int = 60) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=-1) > thresh


def test_deterministic_by_seed_and_resized_from_the_camera_frame() -> None:
    a = make_small_actor_clip(3, 7, frames=4, size=224, span_s=2.0)
    assert a.shape == (4, 224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a, make_small_actor_clip(3, 7, frames=4, size=224, span_s=2.0))
    assert not np.array_equal(a, make_small_actor_clip(3, 8, frames=4, size=224, span_s=2.0))
    small = make_small_actor_clip(3, 7, frames=4, size=112, span_s=2.0)  # the same scene, shrunk as a camera's
    assert np.array_equal(small, np.stack([cv2.resize(f, (112, 112), interpolation=cv2.INTER_AREA) for f in a]))


@pytest.mark.parametrize("seed", range(4))
def test_the_actor_is_small_and_moves_the_way_its_label_says(seed: int) -> None:
    """With nothing else moving, every pixel that changes lies in one box of a quarter of the frame side, and the
    changed region's centroid moves in the class's direction."""
    expect = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
    for name, (sx, sy) in expect.items():
        f = make_small_actor_clip(CLASSES.index(name), seed, frames=5, size=224, style=ALONE)
        moved = np.zeros(f.shape[1:3], bool)
        cents = []
        for frame in f[1:]:
            c = _changed(frame, f[0])
            moved |= c
            ys, xs = np.nonzero(c)
            cents.append((xs.mean(), ys.mean()))
        ys, xs = np.nonzero(moved)
        assert xs.max() - xs.min() <= 0.25 * 224 + 4 and ys.max() - ys.min() <= 0.25 * 224 + 4, (name, seed)
        step = np.diff(np.array(cents), axis=0)
        axis = 0 if sx else 1
        assert np.all((sx or sy) * step[:, axis] > 0.5), (name, seed, cents)


def test_distractors_shake_and_a_still_scene_without_them_stays_still() -> None:
    still = make_small_actor_clip(CLASSES.index("no_action"), 1, frames=4, size=224, style=ALONE)
    assert _changed(still[0], still[-1]).mean() < 0.001
    shaking = make_small_actor_clip(CLASSES.index("no_action"), 1, frames=4, size=224,
                                    style=SmallActorStyle(clutter=(0, 0), distractors=(3, 3), noise=0.0))
    assert _changed(shaking[0], shaking[-1]).mean() > 0.002  # three objects of the actor's size moved


def test_shaking_has_no_direction() -> None:
    """Over many scenes the distractors' motion averages to nothing: the no_action label stays true."""
    style = SmallActorStyle(clutter=(0, 0), distractors=(3, 3), noise=0.0)
    drift = []
    for seed in range(40):
        f = make_small_actor_clip(CLASSES.index("no_action"), seed, frames=6, size=224, style=style)
        cents = []
        for frame in f[1:]:
            ys, xs = np.nonzero(_changed(frame, f[0]))
            cents.append((xs.mean(), ys.mean()))
        drift.append(np.array(cents[-1]) - np.array(cents[0]))
    mean = np.abs(np.mean(drift, axis=0))
    assert np.all(mean < 3.0), mean  # a move_* class moves its object 14-28 px


def test_bad_style_and_scene() -> None:
    for bad in (dict(scene_size=32), dict(actor_frac=0.01), dict(distractors=(3, 1)), dict(clutter=(-1, 2))):
        with pytest.raises(ConfigError):
            SmallActorStyle(**bad)
    with pytest.raises(ConfigError, match="scene='crowd'"):
        make_dataset(1, 0, frames=2, size=64, scene="crowd")
    with pytest.raises(ConfigError):
        make_small_actor_clip(3, 0, style=object())


def test_dataset_of_small_actor_scenes() -> None:
    x, y = make_dataset(2, 5, frames=3, size=96, span_s=2.0, scene="small-actor")
    assert x.shape == (22, 3, 96, 96, 3) and list(y[:11]) == list(range(11))
    assert not np.array_equal(x, make_dataset(2, 5, frames=3, size=96, span_s=2.0)[0])


def test_train_cli_reads_small_actor_clips(tmp_path) -> None:
    out = tmp_path / "m.safetensors"
    r = subprocess.run([sys.executable, "-m", "aknet_edge.train", "--synthetic-clips", "small-actor", "--epochs", "1",
                        "--clips-per-class", "1", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_bench_matches_flops_and_writes_its_table(tmp_path) -> None:
    """The bench's smallest run: AK-Net's K is the largest within TSM's cost at the low resolution."""
    out = tmp_path / "sa.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "small_actors.py"), "--seeds", "1", "--epochs", "1",
                        "--clips-per-class", "1", "--eval-clips-per-class", "1", "--lo", "112", "--hi", "128",
                        "--no-112", "--out", str(out), "--keep", str(tmp_path / "ckpt")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"aknet@128", "tsm@112", "tsm@128"}
    ak, lo = rows["aknet@128"], rows["tsm@112"]
    assert ak["gflops"] <= lo["gflops"] and ak["K"] < 8 * 16 * 16
    from aknet_edge.checkpoint import load_checkpoint
    from aknet_edge.config import ClipSpec
    from aknet_edge.evaluate import DEMO_CHECKPOINTS
    from aknet_edge.flops import count_cost
    from aknet_edge.model import build_model

    cfg = load_checkpoint(DEMO_CHECKPOINTS[0]).cfg
    one_more = cfg.replace(clip=ClipSpec(**{**cfg.clip.__dict__, "size": 128}), keypoints=ak["K"] + 1)
    assert count_cost(build_model(one_more), one_more).gflops > lo["gflops"]
    assert "| aknet@128 | 128 px |" in r.stdout
