"""``rosbag2://BAG?topic=/camera/image_raw``: an image topic of a rosbag2 bag as a finite stream.

Why: robots record bags, and engineers replay them to tune thresholds; a bag holds
several cameras, each its own image topic, and every topic becomes its own stream
(:func:`expand_rosbag`, used by ``python -m aknet_edge.run``). Read through the
``rosbags`` library (pure Python; MCAP and SQLite3 storage), an optional extra:
``pip install rosbags`` (Python >= 3.10).

Messages: ``sensor_msgs/msg/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16 and the
8-bit Bayer encodings) and ``sensor_msgs/msg/CompressedImage`` (JPEG, PNG: whatever
OpenCV decodes). A frame's media time is its header stamp (the bag's receive time
where the stamp is zero) relative to the topic's first frame, so a replay keeps the
camera's own timing; a stamp that jumps back restarts the window like any other gap.
A message that does not decode is skipped and counted (``stats().corrupt``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlparse

import numpy as np

from aknet_edge.errors import DependencyError

from .base import Source, SourceError, SourceOpenError
from .image_encodings import COMPRESSED, IMAGE, IMAGE_TYPES, UnsupportedEncoding, decode_image
from .options import RosbagOptions, SourceOptions

log = logging.getLogger(__name__)

SCHEME = "rosbag2"


def _rosbags() -> Any:
    try:
        import rosbags.rosbag2 as rb
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise DependencyError("rosbag2:// sources need the rosbags library (Python >= 3.10): pip install rosbags "
                              "(or pip install 'aknet-edge[rosbag]')") from exc
    return rb, get_typestore(Stores.LATEST)


def bag_path(uri: str) -> Path:
    """``rosbag2:///abs/bag`` or ``rosbag2://rel/bag`` -> the bag's folder (or .mcap/.db3 file)."""
    parsed = urlparse(uri)
    return Path(parsed.netloc + parsed.path)


def image_topics(path: Path) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(image topics, every (topic, type)) of the bag at ``path``; a path that is not a bag is a SourceOpenError."""
    rb, _ = _rosbags()
    reader = _open_reader(rb, path)
    try:
        topics = sorted((c.topic, c.msgtype) for c in reader.connections)
    finally:
        reader.close()
    return sorted({t for t, m in topics if m in IMAGE_TYPES}), topics


def _open_reader(rb: Any, path: Path) -> Any:
    if not path.exists():
        raise SourceOpenError(f"{path}: no such file or folder; expected a rosbag2 bag (a folder with metadata.yaml)")
    try:
        reader = rb.Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises its own ReaderError, and others on garbage
        raise SourceOpenError(f"{path}: not a rosbag2 bag ({type(exc).__name__}: {exc}); expected a folder with "
                              "metadata.yaml and .mcap or .db3 storage, as ros2 bag record writes") from None
    return reader


def expand_rosbag(name: str, uri: str, explicit: bool) -> List[Tuple[str, str]]:
    """One (name, URI) per image topic of a ``rosbag2://`` URI: its ``topic=`` values (repeated or comma-separated),
    or every image topic of the bag when it names none. One topic keeps ``name``; several are named by topic
    (``/cam/front/image_raw`` -> ``cam_front_image_raw``, after ``name.`` when the user named the source)."""
    parsed = urlparse(uri)
    query = parse_qsl(parsed.query, keep_blank_values=True)
    wanted = [t for k, v in query if k == "topic" for t in v.split(",") if t and t.lower() not in ("auto", "none")]
    rest = [(k, v) for k, v in query if k != "topic"]
    base = uri.split("?", 1)[0]
    if not wanted:
        path = bag_path(uri)
        found, everything = image_topics(path)
        if not found:
            raise SourceOpenError(f"{path}: no image topics ({', '.join(IMAGE_TYPES)}); its topics: "
                                  f"{_listing(everything)}")
        wanted = found
    if len(wanted) == 1:
        return [(name, f"{base}?{urlencode(rest + [('topic', wanted[0])])}")]
    out = []
    for topic in wanted:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", topic.strip("/")) or "topic"
        out.append((f"{name}.{label}" if explicit else label, f"{base}?{urlencode(rest + [('topic', topic)])}"))
    return out


def _listing(topics: List[Tuple[str, str]]) -> str:
    return ", ".join(f"{t} ({m})" for t, m in topics) or "none"


class RosbagSource(Source):
    """One image topic of a rosbag2 bag, replayed as a finite stream (unpaced unless ``speed``).

    Opening checks that the bag reads and that the topic exists and holds images (a
    :class:`SourceOpenError` naming the bag's image topics otherwise). Options: :class:`RosbagOptions`.
    """

    live = False
    color = "BGR"
    options_class = RosbagOptions

    def __init__(self, uri: str, *, options: Optional[SourceOptions] = None, **kwargs: Any) -> None:
        super().__init__(uri, options=options, **kwargs)
        o: RosbagOptions = self.options  # type: ignore[assignment]
        self.path = bag_path(uri)
        self._rb, self._store = _rosbags()
        found, everything = image_topics(self.path)
        topic = o.topic
        if topic is None:
            if len(found) != 1:
                raise SourceOpenError(f"{uri}: name the image topic: ?topic=... (the bag's image topics: "
                                      f"{', '.join(found) or 'none'})")
            topic = found[0]
        types = {t: m for t, m in everything}
        if topic not in types:
            raise SourceOpenError(f"{uri}: the bag has no topic {topic}; its image topics: {', '.join(found) or 'none'}")
        if types[topic] not in IMAGE_TYPES:
            raise SourceOpenError(f"{uri}: topic {topic} holds {types[topic]}, not images ({', '.join(IMAGE_TYPES)}); "
                                  f"the bag's image topics: {', '.join(found) or 'none'}")
        self.topic, self.msgtype, self.speed = topic, types[topic], o.speed
        self._reader: Any = None
        self._messages: Optional[Iterator[Any]] = None
        self._origin: Optional[int] = None
        self._t0: Optional[float] = None

    def _open(self) -> None:
        self._reader = _open_reader(self._rb, self.path)
        conns = [c for c in self._reader.connections if c.topic == self.topic]
        if sum(int(getattr(c, "msgcount", 1)) for c in conns) == 0:  # say so: a run of 0 frames is no answer
            self._reader.close()
            self._reader = None
            raise SourceOpenError(f"{self.uri}: topic {self.topic} has no messages in this bag (it is empty); "
                                  "record the camera's topic, or pick another with ?topic=...")
        self._messages = self._reader.messages(connections=conns)
        self._origin = None

    def _grab(self) -> Optional[Tuple[np.ndarray, Optional[float]]]:
        assert self._messages is not None
        for conn, log_ns, raw in self._messages:
            try:
                msg = self._store.deserialize_cdr(raw, conn.msgtype)
                image = decode_image(msg, conn.msgtype)
            except UnsupportedEncoding as exc:  # every frame of the topic would fail: one error, not 0 frames
                raise SourceError(f"{self.uri}: topic {self.topic}: {exc}") from None
            except Exception as exc:
                log.debug("%s: message at %d does not decode: %s", self.uri, log_ns, exc)
                image = None
            if image is None:
                self._count_corrupt()
                continue
            stamp = _stamp_ns(msg) or int(log_ns)
            if self._origin is None:
                self._origin = stamp
            t = (stamp - self._origin) * 1e-9
            if self.speed > 0:
                self._pace(t, self.speed)
            return image, t
        return None

    def _release(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None
                self._messages = None


def _stamp_ns(msg: Any) -> int:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return 0
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def rosbag_source(uri: str, options: Mapping[str, Any], query: str = "") -> RosbagSource:
    return RosbagSource(uri, options=RosbagOptions.parse(options, query, source=uri))


__all__ = ["COMPRESSED", "IMAGE", "IMAGE_TYPES", "RosbagSource", "decode_image", "expand_rosbag", "image_topics",
           "rosbag_source"]
