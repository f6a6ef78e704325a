"""The MJPEG preview serves real JPEG frames over HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
import time
import urllib.request

import cv2
import numpy as np

from aknet_edge.runtime import Recognizer
from aknet_edge.runtime.preview import BOUNDARY, MjpegServer

from test_runtime_support import demo_package


def _first_part(url: str, timeout: float = 10.0) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        ctype = resp.headers["Content-Type"]
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buf += resp.read1(65536)
            start = buf.find(b"\r\n\r\n")
            if start >= 0 and b"Content-Length:" in buf[:start]:
                n = int(buf[:start].split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(buf) >= start + 4 + n:
                    return ctype, buf[start + 4:start + 4 + n]
    raise AssertionError("no complete part received")


def _check_jpeg(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # SOI ... EOI
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_server_serves_multipart_jpeg():
    before = set(threading.enumerate())
    server = MjpegServer(port=0)
    try:
        assert server.host == "127.0.0.1"
        server.update(np.full((48, 64, 3), 200, np.uint8))
        ctype, jpeg = _first_part(server.url)
        assert ctype.startswith("multipart/x-mixed-replace") and BOUNDARY in ctype
        img = _check_jpeg(jpeg)
        assert img.shape == (48, 64, 3) and abs(int(img.mean()) - 200) < 5
        with urllib.request.urlopen(server.url + "frame.jpg", timeout=5) as resp:
            _check_jpeg(resp.read())
    finally:
        server.close()
    time.sleep(0.2)
    assert not (set(threading.enumerate()) - before)


def test_recognizer_preview_shows_annotated_frames(tmp_path_factory):
    pkg = demo_package(tmp_path_factory)
    with Recognizer(pkg, "synthetic://?seed=3&segments=2&speed=2&size=112", preview_port=0) as rec:
        ctype, jpeg = _first_part(rec.preview.url)
        img = _check_jpeg(jpeg)
        assert img.shape == (112, 112, 3)
