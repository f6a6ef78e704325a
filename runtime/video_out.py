"""An output video written to a temporary next to the target and renamed at close.

Why the rename: a crash or a kill mid-run must never leave a truncated file
under the name the user asked for.

The first frame fixes the video's size; a frame of another size (a camera that
changed resolution, a stream that came back different) is scaled to fit it,
keeping its aspect ratio (black bars), so every frame reaches the video
(OpenCV's writer silently drops frames of another size).

Failures at run time do not stop recognition: when the writer fails, or the
disk the video goes to has less than ``min_free_bytes`` left (OpenCV's writer
does not report a full disk; it goes on writing a broken file), the output
video stops with one warning, its temporary is removed (freeing the space for
the other outputs) and nothing is renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import cv2
import numpy as np

from aknet_edge.errors import AknetError, ConfigError
from aknet_edge.media import FOURCC

from .sinks import Sink

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 1 << 20  # stop before the disk is full: OpenCV's writer cannot report it


class VideoOutputError(AknetError, OSError):
    """The output video cannot be written."""


def free_bytes(folder: Path) -> int:
    """Bytes this process may still write in ``folder``'s file system."""
    return shutil.disk_usage(str(folder)).free


def fit_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (w, h) with its aspect ratio kept, centred on black; as is if it fits."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    scale = min(w / iw, h / ih)
    nw, nh = max(1, min(w, int(round(iw * scale)))), max(1, min(h, int(round(ih * scale))))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((h, w) + image.shape[2:], image.dtype)
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y:y + nh, x:x + nw] = resized
    return out


class VideoOutput:
    """Opens lazily on the first frame (its size fixes the video's size; other sizes are fitted to it)."""

    def __init__(self, path: str | os.PathLike[str], fps: float = 15.0, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise ConfigError(f"output video {self.path}: expected a suffix in {', '.join(FOURCC)}")
        if not self.path.parent.is_dir():
            raise VideoOutputError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self.fps = fps
        self.min_free_bytes = int(min_free_bytes)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
        self._writer: cv2.VideoWriter | None = None
        self.size: Optional[tuple[int, int]] = None  # (w, h), fixed by the first frame
        self.frames = 0
        self.resized = 0  # frames fitted to the first frame's size
        self.failed: Optional[str] = None  # why the video stopped (None while it works)

    def write(self, image_bgr: np.ndarray) -> None:
        if self.failed is not None:
            return
        try:
            if self._writer is None:
                h, w = image_bgr.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
                self._writer = cv2.VideoWriter(str(self._tmp), fourcc, float(self.fps), (w, h), True)
                if not self._writer.isOpened():
                    self._writer = None
                    raise VideoOutputError(f"cv2.VideoWriter cannot write {self.path}; try another suffix")
                self.size = (w, h)
            assert self.size is not None
            fitted = fit_frame(image_bgr, self.size)
            if fitted is not image_bgr:
                if not self.resized:
                    log.info("%s: frames of %dx%d fitted into the video's %dx%d", self.path, image_bgr.shape[1],
                             image_bgr.shape[0], *self.size)
                self.resized += 1
            if free_bytes(self._tmp.parent) < self.min_free_bytes:  # a statvfs call: microseconds
                raise VideoOutputError(f"{os.strerror(28)} (less than {self.min_free_bytes} bytes left)")
            self._writer.write(fitted)
            self.frames += 1
        except (cv2.error, OSError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failed = str(exc) or type(exc).__name__
        log.warning("output video %s: writing failed (%s) after %d frames; it is not written, recognition goes on",
                    self.path, self.failed, self.frames)
        self._discard()

    def discard(self) -> None:
        """Drop the video: its temporary is removed and nothing is renamed into place (an event clip cut short by a
        shutdown, or one that must not be kept)."""
        self._discard()

    def _discard(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.release()
            except cv2.error as exc:
                log.debug("releasing the writer of %s failed: %s", self.path, exc)
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the partial video %s: %s", self._tmp, exc)

    def close(self) -> None:
        if self._writer is None:
            return
        if self.failed is not None:
            self._discard()
            return
        try:
            self._writer.release()
            self._writer = None
            if self.frames:
                os.replace(self._tmp, self.path)
                log.info("wrote %s (%d frames)", self.path, self.frames)
            else:
                self._tmp.unlink()
        except (cv2.error, OSError) as exc:
            self._fail(exc)


def stream_video_path(path: Union[str, "os.PathLike[str]"], stream: Optional[str]) -> Path:
    """``out.mp4`` and stream ``front`` -> ``out-front.mp4`` (one video file per stream; None: ``out.mp4``)."""
    p = Path(path)
    return p if stream is None else p.with_name(f"{p.stem}-{stream}{p.suffix}")


class VideoSink(Sink):
    """The annotated frames of each stream into its own video file (:func:`stream_video_path`).

    Files open when the pipeline starts (a bad path is an error before anything runs) and are
    written lazily from the first frame; a full disk stops one file with one warning
    (:class:`VideoOutput`), the rest of recognition goes on.
    """

    name = "video"
    wants_frames = True

    def __init__(self, path: Union[str, "os.PathLike[str]"], streams: Sequence[Optional[str]], fps: float,
                 several: bool) -> None:
        self.outputs: Dict[Optional[str], VideoOutput] = {
            s: VideoOutput(stream_video_path(path, s if several else None), fps=fps) for s in streams}

    def frame(self, stream: Optional[str], image_bgr: np.ndarray) -> None:
        out = self.outputs.get(stream)
        if out is not None:
            out.write(image_bgr)

    def close(self) -> None:
        for out in self.outputs.values():
            try:
                out.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", out.path, exc)
