"""An output video written to a temporary next to the target and renamed at close.

Why the rename: a crash or a kill mid-run must never leave a truncated file
under the name the user asked for.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from aknet_edge.errors import AknetError, ConfigError
from aknet_edge.media import FOURCC

log = logging.getLogger(__name__)



class VideoOutputError(AknetError, OSError):
    """The output video cannot be written."""


class VideoOutput:
    """Opens lazily on the first frame (its size fixes the video's size)."""

    def __init__(self, path: str | os.PathLike[str], fps: float = 15.0) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise ConfigError(f"output video {self.path}: expected a suffix in {', '.join(FOURCC)}")
        if not self.path.parent.is_dir():
            raise VideoOutputError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self.fps = fps
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, image_bgr: np.ndarray) -> None:
        if self._writer is None:
            h, w = image_bgr.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()]),
                                           float(self.fps), (w, h), True)
            if not self._writer.isOpened():
                self._writer = None
                raise VideoOutputError(f"cv2.VideoWriter cannot write {self.path}; try another suffix")
        self._writer.write(image_bgr)
        self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames:
            os.replace(self._tmp, self.path)
            log.info("wrote %s (%d frames)", self.path, self.frames)
        else:
            self._tmp.unlink(missing_ok=True)
