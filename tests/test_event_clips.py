"""Event clips (``--event-clips DIR --pre-roll S --post-roll S``): one decodable clip per event, the right span,
the source's frames at the right times, a follow-up JSON Lines record, retention by size, a full disk skipped.

Clips are read back by real decoders: ffprobe for the container's frame count and duration, OpenCV for the
pixels. Each source frame carries its index as a row of black and white blocks, so a decoded clip frame says
which source frame it is (MJPG's loss does not flip a block).
"""

from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from aknet_edge.runtime import MultiRecognizer, Recognizer, records
from aknet_edge.runtime.clips import EventClipOptions
from aknet_edge.runtime.sources.memory import ArraySource
from aknet_edge.synthetic import iter_long_video

from conftest import REPO

PKG = Path(__file__).parent / "data" / "package-0.2.0"
FPS = 15.0
BITS = 14  # 14 blocks of 8 x 8 pixels across the top of a 112-pixel frame: frame indices up to 16383
PRE, POST = 1.0, 1.0

cv2 = pytest.importorskip("cv2")


def _stamp(image: np.ndarray, index: int) -> np.ndarray:
    out = image.copy()
    for b in range(BITS):
        out[:8, 8 * b:8 * b + 8] = 255 if index >> b & 1 else 0
    return out


def _read_stamp(image: np.ndarray) -> int:
    gray = image[:8, :8 * BITS].reshape(8, BITS, 8, -1).mean(axis=(0, 2, 3))
    return int(sum(1 << b for b in range(BITS) if gray[b] > 127))


def _frames(seed: int = 5, segments: int = 6) -> List[np.ndarray]:
    _, it = iter_long_video(seed, segments, FPS, 112, (2.0, 3.0))
    return [_stamp(rgb, i) for i, (_, rgb) in enumerate(it)]


def _ffprobe(path: Path) -> Dict[str, Any]:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg): clips are checked with a real decoder")
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames,r_frame_rate,codec_name:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    num, den = info["streams"][0]["r_frame_rate"].split("/")
    return {"frames": int(info["streams"][0]["nb_read_frames"]), "fps": float(num) / float(den),
            "duration": float(info["format"]["duration"]), "codec": info["streams"][0]["codec_name"]}


def _decode(path: Path) -> List[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def _lines(text: str) -> List[Dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines()]


def _validator() -> Optional[Any]:
    try:
        import jsonschema
    except ImportError:
        return None
    return jsonschema.Draft202012Validator(records.load_schema())


def _run(folder: Path, frames: List[np.ndarray], **clip: Any) -> Any:
    """(timestamp, source frame index) of every result (from the callback: none dropped), and the JSON Lines."""
    out = io.StringIO()
    seen: List[Any] = []
    opts = EventClipOptions(str(folder), pre_roll_s=PRE, post_roll_s=POST, **clip)
    with Recognizer(PKG, ArraySource(frames, fps=FPS), jsonl=out, keep_images=True, event_clips=opts,
                    on_result=lambda r: seen.append((r.timestamp, _read_stamp(r.image)))) as rec:
        list(rec)
    return seen, _lines(out.getvalue())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 99.0 if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def frames() -> List[np.ndarray]:
    return _frames()


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory, frames):
    folder = tmp_path_factory.mktemp("raw")
    results, lines = _run(folder, frames, raw=True, format="avi")
    return folder, results, lines


def test_one_clip_per_event_with_the_events_span_and_the_sources_frames(raw_run, frames):
    folder, results, lines = raw_run
    ended = [x for x in lines if x["type"] == "event" and x["state"] == "ended"]
    clips = [x for x in lines if x["type"] == "clip"]
    assert len(ended) >= 3, "the synthetic video should give several events"
    # one clip per event, named by its label and start, after the event's ended line
    assert sorted((c["label"], c["event_start"], c["event_end"]) for c in clips) == \
        sorted((e["label"], e["start"], e["end"]) for e in ended)
    for c in clips:
        e = next(e for e in ended if (e["label"], e["start"]) == (c["label"], c["event_start"]))
        assert lines.index(c) > lines.index(e)
    validator = _validator()
    if validator is not None:
        for c in clips:
            assert not list(validator.iter_errors(c)), c
    assert len({c["path"] for c in clips}) == len(clips)  # a file per clip
    # written whole: every clip in place, no temporaries left
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(c["path"]).name for c in clips)
    fps = clips[0]["fps"]
    assert fps == pytest.approx(3.5)  # the window rate: 8 samples over 2 s
    stamps = results
    first = stamps[0][0]
    complete = 0
    for c in clips:
        probe = _ffprobe(Path(c["path"]))
        assert probe["frames"] == c["frames"] and probe["fps"] == pytest.approx(fps, rel=1e-3)
        assert probe["duration"] == pytest.approx(c["end"] - c["start"], abs=1e-3)
        e = next(e for e in ended if (e["label"], e["start"]) == (c["label"], c["event_start"]))
        if e["start"] - PRE >= first and "reason" not in e:  # the ring reached back, the frames went on
            complete += 1
            assert abs(c["start"] - (e["start"] - PRE)) <= 0.5 / fps + 1e-3  # on the nearest window frame
            want = e["end"] - e["start"] + PRE + POST
            assert abs(probe["duration"] - want) <= 1.0 / fps + 1e-3, (probe, e)
        decoded = _decode(Path(c["path"]))
        assert len(decoded) == c["frames"]
        for i, image in enumerate(decoded):
            tau = c["start"] + i / fps  # the clip frame's time: the window frame nearest it
            gaps = [abs(t - tau) for t, _ in stamps]
            nearest = {s for (t, s), g in zip(stamps, gaps) if g <= min(gaps) + 1e-6}
            got = _read_stamp(image)
            assert got in nearest, (c["path"], i, got, nearest)
            # the pixels are that frame's, MJPG's loss aside (its neighbours are much further off)
            quality = _psnr(image, cv2.cvtColor(frames[got], cv2.COLOR_RGB2BGR))
            others = [_psnr(image, cv2.cvtColor(frames[j], cv2.COLOR_RGB2BGR)) for j in (got - 1, got + 1)
                      if 0 <= j < len(frames)]
            assert quality > 27.0 and quality > max(others) + 5.0, (quality, others)
    assert complete >= 2


def test_annotated_clips_draw_the_overlay_on_the_same_frames(tmp_path, frames, raw_run):
    raw_folder, _, raw_lines = raw_run
    _, lines = _run(tmp_path, frames, format="avi")
    clips = [x for x in lines if x["type"] == "clip"]
    raw_clips = [x for x in raw_lines if x["type"] == "clip"]
    assert [(c["label"], c["event_start"], c["frames"]) for c in clips] == \
        [(c["label"], c["event_start"], c["frames"]) for c in raw_clips]
    assert not any(c["raw"] for c in clips) and all(c["raw"] for c in raw_clips)
    drawn, raw = _decode(Path(clips[0]["path"])), _decode(Path(raw_clips[0]["path"]))
    for a, b in zip(drawn, raw):
        diff = np.abs(a.astype(np.int16) - b).mean(axis=2)
        assert diff[:20].mean() > 20  # the label band across the top
        assert (diff > 30).mean() < 0.5  # the rest is the camera's frame (the keypoints drawn on it aside)


def test_full_disk_skips_clips_and_recognition_goes_on(tmp_path, frames, caplog):
    """A real full file system: a small tmpfs filled to the last byte. Clips are skipped with a warning, every
    result still comes, nothing half-written stays, and clips come back once space is freed."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no privilege for mount(2))")
    try:
        filler = folder / "filler.bin"
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:  # ENOSPC: the file system is full
                pass
        assert shutil.disk_usage(str(folder)).free < 65536
        freed: Dict[str, int] = {}

        def free_after_three(event: Any) -> None:
            if event.state == "ended":
                freed["ended"] = freed.get("ended", 0) + 1
                if freed["ended"] == 3:
                    filler.unlink()  # the operator frees space: the next events get their clips

        out = io.StringIO()
        with caplog.at_level(logging.WARNING):
            with Recognizer(PKG, ArraySource(frames, fps=FPS), jsonl=out, on_event=free_after_three,
                            event_clips=EventClipOptions(str(folder), pre_roll_s=PRE, post_roll_s=POST)) as rec:
                results = list(rec)
                failed = dict(rec.sinks.failed)
        lines = _lines(out.getvalue())
        with Recognizer(PKG, ArraySource(frames, fps=FPS)) as plain:
            expected = len(list(plain))
        assert len(results) == expected and not failed  # recognition went on; the sink stayed on
        skipped = [r for r in caplog.records if "skipped" in r.getMessage() and "event clip" in r.getMessage()]
        assert len(skipped) >= 2 and all("No space left" in r.getMessage() for r in skipped)
        clips = [x for x in lines if x["type"] == "clip"]
        ended = [x for x in lines if x["type"] == "event" and x["state"] == "ended"]
        assert clips and len(clips) + len(skipped) == len(ended)
        assert sorted(p.name for p in folder.iterdir()) == sorted(Path(c["path"]).name for c in clips)
        for c in clips:
            assert _ffprobe(Path(c["path"]))["frames"] == c["frames"]
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_cli_clips_for_two_cameras_with_retention(tmp_path):
    """The run CLI: two cameras, MP4 clips (annotated), a 'clip' line per event on valid JSON Lines, and the
    oldest clips deleted beyond --event-clips-max-mb."""
    folder = tmp_path / "clips"
    limit_mb = 0.05
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", "front=synthetic://?seed=1&segments=5&speed=0",
                           "rear=synthetic://?seed=2&segments=5&speed=0", "--package", str(PKG), "--jsonl", "-",
                           "--event-clips", str(folder), "--pre-roll", "0.5", "--post-roll", "0.5",
                           "--event-clips-max-mb", str(limit_mb)],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = _lines(proc.stdout)
    validator = _validator()
    if validator is not None:
        assert all(not list(validator.iter_errors(x)) for x in lines)
    clips = [x for x in lines if x["type"] == "clip"]
    ended = [x for x in lines if x["type"] == "event" and x["state"] == "ended"]
    assert {c["stream"] for c in clips} == {"front", "rear"}
    assert sorted((c["stream"], c["label"], c["event_start"]) for c in clips) == \
        sorted((e["stream"], e["label"], e["start"]) for e in ended)
    assert len({c["path"] for c in clips}) == len(clips)  # a name retention freed is not given again
    kept = sorted(folder.iterdir())
    assert kept and all(p.suffix == ".mp4" and p.name.startswith("clip-") for p in kept)
    assert len(kept) < len(clips)  # retention deleted some
    assert sum(p.stat().st_size for p in kept) <= limit_mb * 1024 * 1024 or len(kept) == 1
    # the newest are kept: the clips kept are the last ones written
    order = [Path(c["path"]).name for c in clips]
    assert sorted(order.index(p.name) for p in kept) == list(range(len(order) - len(kept), len(order)))
    for p in kept:
        c = next(c for c in clips if Path(c["path"]).name == p.name)
        probe = _ffprobe(p)
        assert probe["frames"] == c["frames"] and probe["codec"] == "mpeg4" and not c["raw"]


@pytest.mark.parametrize("argv, words", [
    (["--pre-roll", "1"], "--pre-roll: given without --event-clips"),
    (["--event-clips", "{tmp}/no/such/dir"], "does not exist"),
    (["--event-clips", "{tmp}/c", "--post-roll", "-1"], "--post-roll -1.0: expected a finite number >= 0"),
    (["--event-clips", "{tmp}/c", "--event-clips-max-mb", "0"], "--event-clips-max-mb 0.0: expected"),
    (["--event-clips", "{tmp}/file"], "not a folder"),
])
def test_clip_flags_are_checked_before_anything_opens(argv, words, tmp_path, capsys):
    from aknet_edge.cli_common import run_cli
    from aknet_edge.run import main

    (tmp_path / "file").write_text("x")
    rc = run_cli(main, [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--package", str(PKG)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_several_streams_get_their_own_clips(tmp_path):
    """Two cameras through the library: each event's clip holds its own camera's frames."""
    a, b = _frames(seed=7, segments=3), _frames(seed=8, segments=3)
    b = [255 - f for f in b]  # tell the cameras apart by their pixels
    out = io.StringIO()
    with MultiRecognizer(PKG, {"a": ArraySource(a, fps=FPS), "b": ArraySource(b, fps=FPS)}, jsonl=out,
                         event_clips=EventClipOptions(str(tmp_path), pre_roll_s=0.5, post_roll_s=0.5, raw=True,
                                                      format="mkv")) as rec:
        list(rec)
    clips = [x for x in _lines(out.getvalue()) if x["type"] == "clip"]
    assert {c["stream"] for c in clips} == {"a", "b"}
    for c in clips:
        image = _decode(Path(c["path"]))[0]
        source = (a if c["stream"] == "a" else b)[_read_stamp(image) if c["stream"] == "a" else
                                                   _read_stamp(255 - image)]
        assert _psnr(image, cv2.cvtColor(source, cv2.COLOR_RGB2BGR)) > 27.0
        assert Path(c["path"]).name.startswith(f"clip-{c['stream']}-") and Path(c["path"]).suffix == ".mkv"
        assert math.isclose(c["end"] - c["start"], c["frames"] / c["fps"], abs_tol=1e-3)
