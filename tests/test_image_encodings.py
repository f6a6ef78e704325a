"""Every sensor_msgs encoding camera drivers publish decodes to the frame it holds (runtime/sources/image_encodings.py);
an encoding we cannot decode and an empty bag say so, once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from aknet_edge.runtime.sources.image_encodings import COMPRESSED, ENCODINGS, UnsupportedEncoding, decode_image


def _bgr(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 4 % 256, yy * 5 % 256, (xx + yy) * 3 % 256], -1).astype(np.uint8)


def _yuyv(bgr: np.ndarray) -> np.ndarray:
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV).astype(np.int32)
    h, w = bgr.shape[:2]
    out = np.empty((h, w, 2), np.uint8)
    out[..., 0] = yuv[..., 0]
    u = (yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) // 2
    v = (yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) // 2
    out[:, 0::2, 1], out[:, 1::2, 1] = u, v
    return out.reshape(h, w * 2)


def _nv12(bgr: np.ndarray, vu: bool = False) -> np.ndarray:
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    y, u, v = i420[:h], i420[h:h + h // 4].reshape(-1), i420[h + h // 4:].reshape(-1)
    uv = np.empty(u.size * 2, np.uint8)
    uv[0::2], uv[1::2] = (v, u) if vu else (u, v)
    return np.vstack([y, uv.reshape(h // 2, w)])


def _packed(bgr: np.ndarray, enc: str) -> np.ndarray:
    """The pixel bytes of ``bgr`` in ``enc``, one row per image row (without padding)."""
    h, w = bgr.shape[:2]
    table = {"bgr8": bgr, "8UC3": bgr, "rgb8": bgr[..., ::-1], "bgra8": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
             "8UC4": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), "rgba8": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA),
             "mono8": bgr[..., 1], "8UC1": bgr[..., 1]}
    if enc in table:
        return np.ascontiguousarray(table[enc]).reshape(h, -1)
    if enc in ("mono16", "16UC1"):
        return (bgr[..., 1].astype(np.uint16) << 8).astype("<u2").view(np.uint8).reshape(h, -1)
    if enc in ("yuv422_yuy2", "yuyv"):
        return _yuyv(bgr)
    if enc in ("uyvy", "yuv422"):
        return _yuyv(bgr).reshape(h, w, 2)[..., ::-1].reshape(h, -1)
    if enc in ("nv12", "nv21"):
        return _nv12(bgr, vu=enc == "nv21")
    if enc.startswith("bayer_"):
        pattern = enc[6:10]
        mosaic = np.empty((h, w), np.uint8)
        idx = {"r": 2, "g": 1, "b": 0}
        for dy in (0, 1):
            for dx in (0, 1):
                mosaic[dy::2, dx::2] = bgr[dy::2, dx::2, idx[pattern[dy * 2 + dx]]]
        return mosaic
    raise AssertionError(enc)


def _msg(bgr: np.ndarray, enc: str, pad: int = 7, big: bool = False) -> SimpleNamespace:
    rows = _packed(bgr, enc)
    if big:
        rows = rows.reshape(rows.shape[0], -1, 2)[..., ::-1].reshape(rows.shape[0], -1)
    padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    padded[:, :rows.shape[1]] = rows
    return SimpleNamespace(height=bgr.shape[0], width=bgr.shape[1], encoding=enc, is_bigendian=int(big),
                           step=padded.shape[1], data=padded.reshape(-1).tobytes())


@pytest.mark.parametrize("enc", ENCODINGS)
def test_every_encoding_decodes_to_the_frame_it_holds_with_padded_rows(enc):
    bgr = _bgr()
    got = decode_image(_msg(bgr, enc))
    assert got.shape == bgr.shape and got.dtype == np.uint8
    if enc in ("mono8", "8UC1", "mono16", "16UC1"):
        want = cv2.cvtColor(bgr[..., 1], cv2.COLOR_GRAY2BGR)
    else:
        want = bgr
    err = np.abs(got.astype(int) - want.astype(int))
    if enc.startswith("bayer_") or enc in ("yuv422_yuy2", "yuyv", "uyvy", "yuv422", "nv12", "nv21"):
        assert err.mean() < 12, (enc, err.mean())  # chroma subsampled or demosaiced: close, not exact
    else:
        assert err.max() == 0, enc


def test_big_endian_16_bit_is_read_as_such():
    bgr = _bgr()
    np.testing.assert_array_equal(decode_image(_msg(bgr, "mono16", big=True)), decode_image(_msg(bgr, "mono16")))


def test_an_unknown_encoding_names_the_supported_ones_and_short_data_is_a_corrupt_frame():
    with pytest.raises(UnsupportedEncoding, match="'32FC1' is not supported; supported: rgb8"):
        decode_image(SimpleNamespace(height=2, width=2, encoding="32FC1", is_bigendian=0, step=8, data=b"\0" * 16))
    short = _msg(_bgr(), "bgr8")
    short.data = short.data[:100]
    assert decode_image(short) is None
    ok, jpg = cv2.imencode(".jpg", _bgr())
    assert decode_image(SimpleNamespace(data=jpg.tobytes(), format="jpeg"), COMPRESSED).shape == (48, 64, 3)


def test_a_bag_in_yuyv_runs_an_unsupported_one_fails_once_and_an_empty_one_says_so(tmp_path):
    pytest.importorskip("rosbags", reason="the rosbag2 source needs the optional rosbags library")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from aknet_edge.runtime.sources import EndOfStream, SourceError, SourceOpenError, open_source

    store = get_typestore(Stores.ROS2_HUMBLE)

    def bag(path: Path, enc: str, n: int) -> Path:
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
            conn = w.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
            for i in range(n):
                m = _msg(_bgr(), enc) if enc != "32FC1" else SimpleNamespace(
                    height=2, width=2, step=8, data=b"\0" * 16)
                t = store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=i * 1000)
                msg = store.types["sensor_msgs/msg/Image"](
                    header=store.types["std_msgs/msg/Header"](stamp=t, frame_id="c"), height=m.height,
                    width=m.width, encoding=enc, is_bigendian=0, step=m.step,
                    data=np.frombuffer(m.data, np.uint8).copy())
                w.write(conn, 10**9 + i * 1000, store.serialize_cdr(msg, msg.__msgtype__))
        return path

    src = open_source(f"rosbag2://{bag(tmp_path / 'yuyv', 'yuv422_yuy2', 5)}?topic=/cam")
    frames = []
    try:
        while True:
            try:
                f = src.read(timeout=5)
            except EndOfStream:
                break
            frames.append(f)
    finally:
        src.close()
    assert len(frames) == 5 and frames[0].image.shape == (48, 64, 3)

    src = open_source(f"rosbag2://{bag(tmp_path / 'float', '32FC1', 3)}?topic=/cam")
    try:
        with pytest.raises(SourceError, match="topic /cam: Image encoding '32FC1' is not supported"):
            while src.read(timeout=5) is None:
                pass
    finally:
        src.close()

    with pytest.raises(SourceOpenError, match="has no messages"):
        open_source(f"rosbag2://{bag(tmp_path / 'empty', 'bgr8', 0)}?topic=/cam")
