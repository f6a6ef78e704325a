"""A :class:`~aknet_edge.runtime.sources.Source` fed by a ROS 2 subscription: one image topic, one stream.

Why a push source: rclpy delivers messages on its executor's thread; the pipeline reads frames from sources. The
subscription callback only hands the message over (:meth:`TopicSource.put`: a bounded inbox, the oldest dropped
and counted when recognition falls behind), and the source's own capture thread decodes it
(:mod:`..sources.image_encodings`), so the executor stays free for other topics and the parameter services.

Clocks: a frame's time is its ``header.stamp`` (seconds on the camera's clock), so windows are sampled on the
camera's timing whether the topic is live or a bag replayed with ``use_sim_time``; a zero stamp (a driver that
never sets it) falls back to the time the node received the message, on the node's clock. A stamp going backwards
(a bag looping, sim time reset) restarts the stream's window: logged once, never a crash.

Outages: a topic that delivers nothing for ``timeout_s`` is a lost camera to the pipeline (its grab returns
None): the lane reports "lost", ends its open event and diagnostics say ERROR. The capture thread then waits for
the next message ("reconnect"), and the first frame after it restores the stream.

Imports no rclpy: it takes any object shaped like ``sensor_msgs/Image`` or ``CompressedImage``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Deque, Optional, Set, Tuple

import numpy as np

from ..lane import POLL_S
from ..sources.base import Source, SourceOpenError
from ..sources.image_encodings import COMPRESSED, IMAGE, UnsupportedEncoding, decode_image
from ..sources.options import LiveOptions

log = logging.getLogger(__name__)

_WAIT_S = 0.1  # longest wait on the inbox before looking at the stop flag again
RESUME_S = POLL_S + 0.2  # a lost topic's frames flow again after this (the lane's poll, plus its longest idle wait)


def stamp_seconds(msg: Any) -> float:
    """``header.stamp`` in seconds (0.0 when it is unset)."""
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    if stamp is None:
        return 0.0
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


class TopicSource(Source):
    """Frames of one image topic, pushed by a subscription callback (:meth:`put`).

    ``msgtype``: :data:`IMAGE` or :data:`COMPRESSED`. ``timeout_s``: seconds without a usable message before the
    topic counts as lost. ``queue_size``: messages waiting for the capture thread; when full the oldest is
    dropped (``stats().dropped``).
    """

    live = True
    color = "BGR"
    options_class = LiveOptions

    def __init__(self, topic: str, msgtype: str = IMAGE, *, timeout_s: float = 3.0, queue_size: int = 4) -> None:
        # block: the capture thread waits for the pipeline rather than dropping decoded frames; the inbox before
        # it is where a topic faster than recognition loses its oldest images. The "reconnect" after a loss is a
        # wait for the next message, started after RESUME_S: the lane polls its source every POLL_S while no
        # frame comes, and must see the loss before the frames that end it (else it would take the loss for one
        # after them and restart their window). Messages arriving meanwhile wait in the inbox.
        options = LiveOptions(buffer_size=2, block=True, reconnect_initial_s=RESUME_S, reconnect_max_s=RESUME_S)
        super().__init__(f"topic {topic}", options=options)
        if msgtype not in (IMAGE, COMPRESSED):
            raise ValueError(f"msgtype {msgtype!r}: expected {IMAGE} or {COMPRESSED}")
        self.topic = topic
        self.msgtype = msgtype
        self.timeout_s = float(timeout_s)
        self.queue_size = int(queue_size)
        self.encoding_error: Optional[str] = None  # the unsupported encoding's message, once one arrived
        self.frame_id = ""  # the newest decoded image's header.frame_id (annotated images carry it)
        self.last_stamp: Optional[float] = None  # its time (header stamp, or receive time), seconds
        self.received = 0  # messages handed to put()
        self._inbox: Deque[Tuple[Any, float]] = collections.deque()
        self._inbox_cond = threading.Condition()
        self._opened = False
        self._bad_encodings: Set[str] = set()
        self._warned_backwards = False

    # -- the subscription's side (rclpy's executor thread)
    def put(self, msg: Any, received_s: float = 0.0) -> None:
        """Hand over one message; ``received_s``: the node's clock when it arrived (used when the stamp is zero).
        Never blocks: a full inbox drops its oldest message."""
        with self._inbox_cond:
            self.received += 1
            if len(self._inbox) >= self.queue_size:
                self._inbox.popleft()
                self._count_dropped()
            self._inbox.append((msg, received_s))
            self._inbox_cond.notify()

    # -- the capture thread
    def _open(self) -> None:
        """The first open succeeds at once (the subscription exists); after a loss, "reconnecting" is waiting for
        the next message that may decode (a topic whose encoding is unsupported stays lost)."""
        if not self._opened:
            self._opened = True
            return
        with self._inbox_cond:
            while not self._stop.is_set():
                while self._inbox and self._unsupported(self._inbox[0][0]):
                    self._inbox.popleft()
                    self._count_dropped()
                if self._inbox:
                    return
                self._inbox_cond.wait(_WAIT_S)
        raise SourceOpenError(f"{self.uri}: closed")

    def _grab(self) -> Optional[Tuple[np.ndarray, Optional[float]]]:
        """The next usable message as (BGR image, stamp seconds); None after ``timeout_s`` without one (lost)."""
        deadline = time.monotonic() + self.timeout_s
        while not self._stop.is_set():
            with self._inbox_cond:
                while not self._inbox:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stop.is_set():
                        return None
                    self._inbox_cond.wait(min(remaining, _WAIT_S))
                msg, received_s = self._inbox.popleft()
            image = self._decode(msg)
            if image is None:
                continue
            t = stamp_seconds(msg) or received_s
            if self.last_stamp is not None and t < self.last_stamp:
                self._went_back(self.last_stamp, t)
            self.last_stamp = t
            self.frame_id = str(getattr(getattr(msg, "header", None), "frame_id", "") or "")
            return image, t
        return None

    def _decode(self, msg: Any) -> Optional[np.ndarray]:
        """The message's image, or None: an unsupported encoding (said once, its frames dropped) or data that does
        not decode (counted corrupt)."""
        if self._unsupported(msg):
            self._count_dropped()
            return None
        try:
            image = decode_image(msg, self.msgtype)
        except UnsupportedEncoding as exc:
            enc = str(getattr(msg, "encoding", ""))
            self._bad_encodings.add(enc)
            self.encoding_error = f"{self.topic}: {exc}"
            log.error("%s; its frames are dropped until the publisher sends a supported encoding",
                      self.encoding_error)
            self._count_dropped()
            return None
        except Exception as exc:  # a corrupt message must not stop the stream
            log.debug("%s: a message did not decode: %s", self.uri, exc)
            image = None
        if image is None:
            self._count_corrupt()
        return image

    def _unsupported(self, msg: Any) -> bool:
        return self.msgtype == IMAGE and str(getattr(msg, "encoding", "")) in self._bad_encodings

    def _went_back(self, last: float, t: float) -> None:
        how = log.debug if self._warned_backwards else log.warning
        how("%s: header stamp went back from %.3f s to %.3f s (a bag looping, sim time reset?): the stream's window "
            "restarts%s", self.topic, last, t, "" if self._warned_backwards else " (said once; later ones at debug)")
        self._warned_backwards = True

    def _count_dropped(self) -> None:
        with self._cond:
            self._stats.dropped += 1

    def _release(self) -> None:
        pass


def topic_source(topic: str, *, timeout_s: float, queue_size: int) -> TopicSource:
    """The source for ``topic``: CompressedImage when it ends in ``/compressed`` (image_transport), else Image."""
    return TopicSource(topic, COMPRESSED if topic.rstrip("/").endswith("/compressed") else IMAGE,
                       timeout_s=timeout_s, queue_size=queue_size)


__all__ = ["TopicSource", "stamp_seconds", "topic_source"]
