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


# -- distillation (train --teacher) -------------------------------------------------------------------------------

def _swapped_teacher(a: int, b: int):
    """The bundled AK-Net with its classes a and b swapped in the classifier: a teacher that says "b" for a's clips."""
    import torch

    from aknet_edge.checkpoint import load_checkpoint

    teacher = load_checkpoint()
    with torch.no_grad():
        for t in (teacher.fc.weight, teacher.fc.bias):
            t[[a, b]] = t[[b, a]].clone()
    return teacher


def _margin(model, x, a: int, b: int) -> float:
    """Mean of logit b minus logit a: how much the model says b rather than a."""
    import torch

    from aknet_edge.model import logits_of

    with torch.no_grad():
        logits = logits_of(model.eval()(torch.from_numpy(x)))
    return float((logits[:, b] - logits[:, a]).mean())


def test_distillation_pulls_the_student_towards_its_teacher():
    """Same seed, same clips, same steps: with the labels alone (weight 0) the student keeps calling class 0 "0";
    with the teacher alone (weight 1) it learns the teacher's swap and says "1" for class 0's clips."""
    from aknet_edge.checkpoint import load_checkpoint
    from aknet_edge.evaluate import heldout_synthetic

    cfg = preset("demo-tiny")
    teacher = _swapped_teacher(0, 1)
    x, y = heldout_synthetic(cfg, 4)
    x0 = x[y == 0]
    before = _margin(load_checkpoint(), x0, 0, 1)
    margins = {}
    for weight in (0.0, 1.0):
        tc = TrainConfig(epochs=2, clips_per_class=6, batch=16, lr=2e-3, seed=5, warmup=0.01, distill_weight=weight,
                         distill_temperature=2.0)
        res = train(cfg, tc, progress=False, init=load_checkpoint(), teacher=teacher)
        margins[weight] = _margin(res.model, x0, 0, 1)
    assert before < 0 and margins[0.0] < 0, (before, margins)  # the labels: class 0 is "0"
    assert margins[1.0] > margins[0.0] + 1.0 and margins[1.0] > before + 1.0, (before, margins)


def test_distillation_loss_is_zero_only_where_the_two_agree():
    import torch

    from aknet_edge.train import distillation_loss

    a = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    assert float(distillation_loss(a, a, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(a, a.flip(1), 4.0)) > 0.01
    assert float(distillation_loss(a, a + 5.0, 2.0)) == pytest.approx(0.0, abs=1e-6)  # a shift is the same softmax


def test_train_cli_teacher_errors_and_metadata(tmp_path):
    """A teacher of other classes, a missing teacher, distillation flags without a teacher and a weight out of range:
    one error line each, exit 2, no checkpoint; a good teacher is recorded in the checkpoint's metadata."""
    import subprocess
    import sys

    from aknet_edge.checkpoint import read_metadata, save_checkpoint
    from aknet_edge.evaluate import DEMO_CHECKPOINTS
    from aknet_edge.model import build_model

    other = tmp_path / "five-classes.safetensors"
    save_checkpoint(build_model(preset("demo-tiny").replace(num_classes=5, labels=())), other)
    out = tmp_path / "m.safetensors"
    run = lambda *a: subprocess.run([sys.executable, "-m", "aknet_edge.train", "--out", str(out), *a],
                                    capture_output=True, text=True, timeout=300)
    for argv, words in [
        (["--teacher", str(other)], "the teacher's classes"),
        (["--teacher", str(tmp_path / "missing.safetensors")], "does not exist"),
        (["--distill-weight", "0.3"], "without --teacher"),
        (["--teacher", str(DEMO_CHECKPOINTS[1]), "--distill-temperature", "0"], "--distill-temperature 0"),
    ]:
        r = run(*argv)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert r.returncode == 2 and len(errors) == 1 and words in errors[0] and "Traceback" not in r.stderr, r.stderr
        assert not out.exists()
    r = run("--init", str(DEMO_CHECKPOINTS[0]), "--teacher", str(DEMO_CHECKPOINTS[1]), "--distill-weight", "0.7",
            "--epochs", "1", "--clips-per-class", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    meta = read_metadata(out)
    assert meta["distill_teacher"] == "tsm" and meta["distill_weight"] == "0.7" and meta["distill_temperature"] == "4.0"
