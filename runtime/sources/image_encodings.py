"""ROS ``sensor_msgs`` images to BGR frames: every encoding camera drivers publish, in one place.

Why one module: a bag replayed from disk (``rosbag2://``) and a live topic carry the same
messages, and a camera driver picks its encoding, not the user: usb_cam publishes
``yuv422_yuy2``, Jetson's Argus nodes ``nv12``, others ``rgb8``, ``bgra8``, Bayer or 16-bit
depth-style ``mono16``. Rows may be padded (``step`` larger than the pixels), 16-bit data may be
big-endian. An encoding not listed here is an :class:`UnsupportedEncoding` error that names the
supported ones, so a source can say so once instead of silently dropping every frame.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from aknet_edge.errors import AknetError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
# bytes per pixel of each packed encoding (nv12 and nv21 are planar: 1.5 bytes a pixel, rows of width bytes)
_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3, "8UC4": 4, "mono16": 2,
          "16UC1": 2, "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1,
          "yuv422_yuy2": 2, "yuyv": 2, "uyvy": 2, "yuv422": 2, "nv12": 1, "nv21": 1}
ENCODINGS = tuple(_BYTES)


class UnsupportedEncoding(AknetError, ValueError):
    """An Image encoding this module cannot turn into a frame."""


def _cv2() -> Any:
    import cv2

    return cv2


def _bytes_of(data: Any) -> np.ndarray:
    """A message's ``data`` as a flat uint8 array, without a copy where it holds a buffer (rclpy's array.array,
    bytes, a contiguous numpy array: 0.9 MB a 640x480 frame, 30 times a second per camera)."""
    try:
        return np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except (TypeError, ValueError):  # a list, or a strided array
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.uint8)


def decode_image(msg: Any, msgtype: str = IMAGE) -> Optional[np.ndarray]:
    """A ``sensor_msgs`` Image or CompressedImage as a BGR uint8 (H, W, 3) frame; None when its data is short or
    does not decode (a corrupt frame); :class:`UnsupportedEncoding` for an encoding not in :data:`ENCODINGS`."""
    cv2 = _cv2()
    if msgtype == COMPRESSED:
        data = _bytes_of(msg.data)
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    enc = str(msg.encoding)
    per = _BYTES.get(enc)
    if per is None:
        raise UnsupportedEncoding(f"Image encoding {enc!r} is not supported; supported: {', '.join(ENCODINGS)} "
                                  "(and sensor_msgs/CompressedImage JPEG or PNG)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = _bytes_of(msg.data)
    planar = enc in ("nv12", "nv21")
    rows = h * 3 // 2 if planar else h
    if h <= 0 or w <= 0 or step < w * per or buf.size < rows * step or (planar and (h % 2 or w % 2)):
        return None
    px = buf[: rows * step].reshape(rows, step)[:, : w * per]  # drops each row's padding
    if planar:
        return cv2.cvtColor(np.ascontiguousarray(px), cv2.COLOR_YUV2BGR_NV12 if enc == "nv12" else
                            cv2.COLOR_YUV2BGR_NV21)
    if per == 2 and enc in ("mono16", "16UC1"):
        big = bool(getattr(msg, "is_bigendian", False))
        v = np.ascontiguousarray(px).view(">u2" if big else "<u2").reshape(h, w)
        return cv2.cvtColor((v >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if enc in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(np.ascontiguousarray(px).reshape(h, w, 2), cv2.COLOR_YUV2BGR_YUY2)
    if enc in ("uyvy", "yuv422"):  # ROS's "yuv422" is UYVY byte order
        return cv2.cvtColor(np.ascontiguousarray(px).reshape(h, w, 2), cv2.COLOR_YUV2BGR_UYVY)
    img = np.ascontiguousarray(px).reshape(h, w, per) if per > 1 else np.ascontiguousarray(px).reshape(h, w)
    convert: Dict[str, int] = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGR, "bgra8": cv2.COLOR_BGRA2BGR,
                               "8UC4": cv2.COLOR_BGRA2BGR, "bayer_rggb8": cv2.COLOR_BayerBG2BGR,
                               "bayer_bggr8": cv2.COLOR_BayerRG2BGR, "bayer_gbrg8": cv2.COLOR_BayerGR2BGR,
                               "bayer_grbg8": cv2.COLOR_BayerGB2BGR}
    if enc in convert:
        return cv2.cvtColor(img, convert[enc])
    if per == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


__all__ = ["COMPRESSED", "ENCODINGS", "IMAGE", "IMAGE_TYPES", "UnsupportedEncoding", "decode_image"]
