"""Training lowers the loss; bad data folders give the documented errors."""

import numpy as np
import pytest
import cv2

from aknet_edge.config import preset
from aknet_edge.data import LabelledFolder
from aknet_edge.sampling import read_clip
from aknet_edge.errors import DataError
from aknet_edge.train import TrainConfig, train


def test_a_few_steps_lower_the_loss(tmp_path):
    cfg = preset("demo-tiny")
    tc = TrainConfig(epochs=1, clips_per_class=8, batch=16, lr=3e-3, seed=0, warmup=0.01)
    # one small synthetic set, visited three times: the loss must fall
    res = train(cfg.replace(dropout=0.0), TrainConfig(**{**tc.__dict__, "epochs": 3}), progress=False,
                out=tmp_path / "m.safetensors")
    per_epoch = np.array(res.losses).reshape(3, -1).mean(axis=1)
    assert per_epoch[-1] < per_epoch[0]
    assert (tmp_path / "m.safetensors").exists()


def _write_clip(path, frames=6, size=48, colour=(0, 0, 255)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    for i in range(frames):
        img = np.zeros((size, size, 3), np.uint8)
        cv2.circle(img, (5 + 6 * i, size // 2), 6, colour, -1)
        w.write(img)
    w.release()


def test_labelled_folder_of_videos_and_frame_folders(tmp_path):
    (tmp_path / "left").mkdir()
    (tmp_path / "right").mkdir()
    _write_clip(tmp_path / "left" / "a.avi")
    frames = tmp_path / "right" / "clip0"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((40, 40, 3), i * 40, np.uint8))
    (tmp_path / "right" / "broken.avi").write_bytes(b"garbage")
    folder = LabelledFolder.scan(tmp_path)
    assert folder.classes == ("left", "right")
    x, y, bad = folder.load(preset("demo-tiny").clip)
    assert x.shape == (2, 8, 3, 112, 112) and y.tolist() == [0, 1] and bad == 1
    clip = read_clip(frames, preset("demo-tiny").clip)
    assert clip.shape == (8, 40, 40, 3) and clip[0, 0, 0, 0] == 0 and clip[-1, 0, 0, 0] == 160


def test_bad_data_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        LabelledFolder.scan(tmp_path / "missing")
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no clips"):
        LabelledFolder.scan(tmp_path)
    (tmp_path / "a" / "x.avi").write_bytes(b"garbage")
    with pytest.raises(DataError, match="all 1 clips"):
        LabelledFolder.scan(tmp_path).load(preset("demo-tiny").clip)
    with pytest.raises(DataError, match="lack"):
        LabelledFolder.scan(tmp_path, classes=("b",))


def test_train_cli_on_a_labelled_folder_and_empty_folder(tmp_path):
    import subprocess
    import sys

    from aknet_edge.checkpoint import load_checkpoint

    data = tmp_path / "clips"
    for name, colour in (("wave", (0, 0, 255)), ("still", (0, 255, 0))):
        (data / name).mkdir(parents=True)
        for i in range(2):
            _write_clip(data / name / f"{i}.avi", colour=colour)
    out = tmp_path / "m.safetensors"
    run = lambda *a: subprocess.run([sys.executable, "-m", "aknet_edge.train", *a], capture_output=True, text=True,
                                    timeout=300)
    r = run("--data", str(data), "--epochs", "1", "--batch", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    model = load_checkpoint(out)
    assert model.cfg.labels == ("still", "wave") and model.cfg.num_classes == 2
    (tmp_path / "empty").mkdir()
    r = run("--data", str(tmp_path / "empty"), "--out", str(tmp_path / "x.safetensors"))
    assert r.returncode == 2 and "no clips" in r.stderr and "Traceback" not in r.stderr
