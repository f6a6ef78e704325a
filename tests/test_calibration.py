"""Calibration data: the runtime's preprocessing, seeded shuffling, the on-disk cache, unreadable clips."""

import time

import cv2
import numpy as np
import pytest

import aknet_edge.preprocess
from aknet_edge.calibration import data as cdata
from aknet_edge.calibration import find_clips, load_calibration_set
from aknet_edge.config import preset
from aknet_edge.errors import DataError

SPEC = preset("demo-tiny").clip


def _video(path, shift=0, frames=6):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(frames):
        img = np.full((64, 64, 3), 40 + shift, np.uint8)
        cv2.rectangle(img, (4 + 5 * i, 20), (20 + 5 * i, 40), (200, 30, 30), -1)
        w.write(img)
    w.release()


def test_same_preprocessing_as_runtime():
    assert cdata.preprocess_clip is aknet_edge.preprocess.preprocess_clip


def test_sources_cache_and_skips(tmp_path, caplog):
    d = tmp_path / "videos"
    (d / "a").mkdir(parents=True)
    for i in range(3):
        _video(d / "a" / f"v{i}.avi", shift=i)
    frames = d / "frames" / "clip0"
    frames.mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((32, 32, 3), 10 * i, np.uint8))
    (d / "a" / "broken.mp4").write_bytes(b"junk")
    assert len(find_clips(d)) == 5
    cache = tmp_path / "cache"
    s1 = load_calibration_set(str(d), SPEC, n_clips=10, seed=3, cache_dir=cache)
    assert s1.clips.shape == (4, 8, 3, 112, 112) and s1.skipped == 1 and not s1.from_cache
    s2 = load_calibration_set(str(d), SPEC, n_clips=10, seed=3, cache_dir=cache)
    assert s2.from_cache and np.array_equal(s1.clips, s2.clips)
    time.sleep(0.01)
    _video(d / "a" / "v0.avi", shift=50)  # data changed: rebuilt
    s3 = load_calibration_set(str(d), SPEC, n_clips=10, seed=3, cache_dir=cache)
    assert not s3.from_cache
    s4 = load_calibration_set(str(d), SPEC, n_clips=2, seed=3, cache_dir=cache)  # settings changed: rebuilt
    assert not s4.from_cache and len(s4.clips) == 2
    listing = tmp_path / "list.txt"
    listing.write_text("videos/a/v1.avi\n# comment\nvideos/frames/clip0\n")
    assert [p.name for p in find_clips(listing)] == ["v1.avi", "clip0"]


def test_seeded_shuffle_is_deterministic():
    a = load_calibration_set("synthetic", SPEC, n_clips=5, seed=1)
    b = load_calibration_set("synthetic", SPEC, n_clips=5, seed=1)
    c = load_calibration_set("synthetic", SPEC, n_clips=5, seed=2)
    assert np.array_equal(a.clips, b.clips) and not np.array_equal(a.clips, c.clips)


def test_bad_calibration_data(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_clips(tmp_path / "missing")
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="no videos"):
        find_clips(tmp_path / "e")
    (tmp_path / "e" / "x.avi").write_bytes(b"junk")
    with pytest.raises(DataError, match="all 1 calibration clips"):
        load_calibration_set(str(tmp_path / "e"), SPEC)
    with pytest.raises(DataError, match="at least 1"):
        load_calibration_set("synthetic", SPEC, n_clips=0)


def test_percentile_reaches_the_calibrator_and_is_validated():
    """A lower percentile clips more of the long tail: the input's INT8 scale shrinks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from aknet_edge.calibration import quantize_int8
    from aknet_edge.errors import ConfigError

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["clip", "w"], ["y"], pads=[1, 1, 1, 1], name="/conv")], "g",
                              [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    clips = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)
    clips[0, 0, 0, 0] = 50.0  # one outlier

    def input_scale(pct):
        q = quantize_int8(model, clips, "percentile", percentile=pct)
        qnode = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "clip")
        inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
        return float(inits[qnode.input[1]])

    assert input_scale(99.0) < input_scale(99.999)
    with pytest.raises(ConfigError, match="calib-percentile"):
        quantize_int8(model, clips, "percentile", percentile=100.0)
    onnx.checker.check_model(model)


def _two_convs():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(size=(3, 3, 3, 3)).astype(np.float32), n) for n in ("w1", "w2"))
    nodes = [helper.make_node("Conv", ["clip", "w1"], ["a"], pads=[1, 1, 1, 1], name="/stem/Conv"),
             helper.make_node("Conv", ["a", "w2"], ["y"], pads=[1, 1, 1, 1], name="/body/Conv"),
             helper.make_node("TopK", ["y", "k"], ["v", "i"], axis=3, name="/pick/TopK")]
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 3, 8, 2])], [w1, w2, k])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_keep_float_nodes_stay_float_and_must_exist():
    from aknet_edge.calibration import float_kept_nodes, quantize_int8
    from aknet_edge.errors import ConfigError

    model = _two_convs()
    assert float_kept_nodes(model) == ["/pick/TopK"]  # selection op types stay float on their own
    assert float_kept_nodes(model, ["/stem/Conv"]) == ["/stem/Conv", "/pick/TopK"]
    clips = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    q = quantize_int8(model, clips, "minmax", ["/stem/Conv"])
    dq_out = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    fed = {n.name: [i for i in n.input if i in dq_out] for n in q.graph.node if n.op_type == "Conv"}
    assert fed["/stem/Conv"] == [] and len(fed["/body/Conv"]) == 2  # stem float; body's input and weight Q/DQ
    with pytest.raises(ConfigError, match="not in the graph"):
        quantize_int8(model, clips, "minmax", ["/stem"])  # a prefix is not a node name


