"""rosbag2:// sources on bags written here with rosbags (MCAP and SQLite3, Image and CompressedImage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rosbags = pytest.importorskip("rosbags", reason="the rosbag2 source needs the optional rosbags library")
cv2 = pytest.importorskip("cv2")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from aknet_edge.runtime.sources import EndOfStream, SourceOpenError, expand_source, open_source  # noqa: E402

from test_runtime_support import demo_package  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STORE = get_typestore(Stores.LATEST)
FPS = 15.0
T0 = 1_700_000_000 * 10**9  # wall-clock stamps, as a robot records them


def _frames(seed: int, n: int, size: int = 64) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size + 16, 3), dtype=np.uint8) for _ in range(n)]


def _header(i: int):
    ns = T0 + int(round(i * 1e9 / FPS))
    t = STORE.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
    return STORE.types["std_msgs/msg/Header"](stamp=t, frame_id="cam"), ns


def _image(bgr: np.ndarray, i: int, encoding: str):
    header, ns = _header(i)
    px = {"bgr8": bgr, "rgb8": bgr[..., ::-1], "mono8": bgr[..., 0]}[encoding]
    px = np.ascontiguousarray(px)
    step = px.shape[1] * (1 if px.ndim == 2 else 3)
    msg = STORE.types["sensor_msgs/msg/Image"](header=header, height=px.shape[0], width=px.shape[1],
                                               encoding=encoding, is_bigendian=0, step=step,
                                               data=px.reshape(-1).copy())
    return msg, ns


def _compressed(bgr: np.ndarray, i: int):
    header, ns = _header(i)
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    msg = STORE.types["sensor_msgs/msg/CompressedImage"](header=header, format="png", data=png.reshape(-1))
    return msg, ns


def write_bag(path: Path, topics: dict, storage: StoragePlugin, extra_string_topic: bool = True) -> Path:
    """``topics``: name -> (kind "bgr8"/"rgb8"/"mono8"/"png", frames)."""
    with Writer(path, version=9, storage_plugin=storage) as w:
        conns = {}
        for topic, (kind, _) in topics.items():
            msgtype = "sensor_msgs/msg/CompressedImage" if kind == "png" else "sensor_msgs/msg/Image"
            conns[topic] = w.add_connection(topic, msgtype, typestore=STORE)
        if extra_string_topic:
            s = w.add_connection("/log", "std_msgs/msg/String", typestore=STORE)
            w.write(s, T0, STORE.serialize_cdr(STORE.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
        for topic, (kind, frames) in topics.items():
            for i, f in enumerate(frames):
                msg, ns = _compressed(f, i) if kind == "png" else _image(f, i, kind)
                w.write(conns[topic], ns + 1000, STORE.serialize_cdr(msg, msg.__msgtype__))
    return path


def _read_all(uri: str) -> list:
    src = open_source(uri)
    out = []
    try:
        while True:
            try:
                f = src.read(timeout=5)
            except EndOfStream:
                break
            assert f is not None
            out.append(f)
    finally:
        src.close()
    return out


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
def test_every_encoding_reads_back_as_the_frames_written(tmp_path, storage):
    frames = _frames(0, 6)
    kinds = {"/cam/bgr": "bgr8", "/cam/rgb": "rgb8", "/cam/mono": "mono8", "/cam/png": "png"}
    bag = write_bag(tmp_path / "bag", {t: (k, frames) for t, k in kinds.items()}, storage)
    for topic, kind in kinds.items():
        got = _read_all(f"rosbag2://{bag}?topic={topic}")
        assert len(got) == len(frames)
        for i, (f, want) in enumerate(zip(got, frames)):
            assert f.color == "BGR"
            if kind == "mono8":
                want = np.repeat(want[..., :1], 3, axis=2)
            assert np.array_equal(f.image, want), (topic, i)
            assert f.timestamp == pytest.approx(i / FPS, abs=1e-6)  # header stamps, from the topic's first frame


def test_topics_expand_to_streams_and_bad_input_is_refused(tmp_path):
    frames = _frames(1, 3)
    bag = write_bag(tmp_path / "bag", {"/front/image_raw": ("bgr8", frames), "/rear/image": ("png", frames)},
                    StoragePlugin.MCAP)
    assert [n for n, _ in expand_source("0", f"rosbag2://{bag}")] == ["front_image_raw", "rear_image"]
    assert [n for n, _ in expand_source("robot", f"rosbag2://{bag}", explicit=True)] == \
        ["robot.front_image_raw", "robot.rear_image"]
    assert expand_source("x", f"rosbag2://{bag}?topic=/rear/image") == [("x", f"rosbag2://{bag}?topic=%2Frear%2Fimage")]
    with pytest.raises(SourceOpenError, match="no topic /nope.*front/image_raw"):
        open_source(f"rosbag2://{bag}?topic=/nope", start=False)
    with pytest.raises(SourceOpenError, match="holds std_msgs/msg/String, not images"):
        open_source(f"rosbag2://{bag}?topic=/log", start=False)
    with pytest.raises(SourceOpenError, match="name the image topic"):
        open_source(f"rosbag2://{bag}", start=False)
    notbag = tmp_path / "notbag"
    notbag.mkdir()
    (notbag / "metadata.yaml").write_text("just: text\n")
    with pytest.raises(SourceOpenError, match="not a rosbag2 bag"):
        open_source(f"rosbag2://{notbag}?topic=/x", start=False)
    with pytest.raises(SourceOpenError, match="no such file"):
        open_source(f"rosbag2://{tmp_path / 'missing'}?topic=/x", start=False)
    only_text = write_bag(tmp_path / "text", {}, StoragePlugin.SQLITE3)
    with pytest.raises(SourceOpenError, match="no image topics"):
        expand_source("0", f"rosbag2://{only_text}")


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.mark.slow
def test_a_bag_with_two_cameras_gives_two_streams_equal_to_the_frames_in_memory(pkg, tmp_path):
    """The CLI on a two-topic bag: two streams, each with the results of its frames replayed from memory."""
    from aknet_edge.runtime import Recognizer
    from aknet_edge.runtime.sources.memory import ArraySource
    from aknet_edge.synthetic import iter_long_video

    cams = {}
    for topic, seed in (("/front/image_raw", 3), ("/rear/image_raw", 4)):
        _, it = iter_long_video(seed, 1, FPS, 112, (3.0, 3.0))
        cams[topic] = [np.ascontiguousarray(f[..., ::-1]) for _, f in it]  # BGR
    bag = write_bag(tmp_path / "robot", {t: ("bgr8", f) for t, f in cams.items()}, StoragePlugin.SQLITE3)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", f"rosbag2://{bag}", "--package", str(pkg),
                           "--jsonl", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    for topic, frames in cams.items():
        name = topic.strip("/").replace("/", "_")
        mine = [x for x in lines if x["stream"] == name and x["type"] == "result"]
        with Recognizer(pkg, ArraySource(frames, fps=FPS, color="BGR"), overlap=False) as rec:
            want = [r.to_json() for r in rec]
        assert len(mine) == len(want) > 0
        for a, b in zip(want, mine):
            assert a["timestamp"] == pytest.approx(b["timestamp"], abs=1e-3)
            assert a["label"] == b["label"] and a["top_k"][0][0] == b["top_k"][0][0]
            assert a["confidence"] == pytest.approx(b["confidence"], abs=2e-4)


@pytest.mark.parametrize("case,words", [
    ("missing-topic", "no topic /nope"),
    ("not-images", "not images"),
    ("not-a-bag", "not a rosbag2 bag"),
])
def test_cli_bad_bags_are_one_error_line(pkg, tmp_path, case, words):
    bag = write_bag(tmp_path / "bag", {"/cam": ("bgr8", _frames(2, 2))}, StoragePlugin.MCAP)
    uri = {"missing-topic": f"rosbag2://{bag}?topic=/nope", "not-images": f"rosbag2://{bag}?topic=/log",
           "not-a-bag": f"rosbag2://{tmp_path}?topic=/cam"}[case]
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", uri, "synthetic://?speed=0", "--package", str(pkg),
                           "--jsonl", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert out.read_text() == "precious\n"  # the user's file is left alone
