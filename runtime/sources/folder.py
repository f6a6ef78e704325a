"""A folder of images, sorted by name, as a finite stream at ``fps`` media time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aknet_edge.media import IMAGE_SUFFIXES, listing
from aknet_edge.sampling import media_time

from .base import Source, SourceOpenError
from .options import FolderOptions, SourceOptions

log = logging.getLogger(__name__)


class ImageFolderSource(Source):
    """Sorted images of a folder (:data:`aknet_edge.media.IMAGE_SUFFIXES`) as a finite stream at ``fps``
    (media time index / fps)."""

    live = False
    options_class = FolderOptions

    def __init__(self, uri: str, folder: Path, *, options: SourceOptions | None = None, **kwargs: Any) -> None:
        super().__init__(uri, options=options, **kwargs)
        folder = Path(folder)
        self._files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceOpenError(f"{folder} has no images ({listing(IMAGE_SUFFIXES)})")
        self._fps = self.options.fps  # type: ignore[attr-defined]
        self._i = 0

    def _open(self) -> None:
        self._i = 0

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        import cv2

        while self._i < len(self._files):
            path = self._files[self._i]
            i = self._i
            self._i += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping unreadable image %s", path)
                continue
            return image, media_time(i, self._fps)
        return None


def folder_source(path: str, options: Mapping[str, Any], query: str = "") -> ImageFolderSource:
    return ImageFolderSource(path, Path(path), options=FolderOptions.parse(options, query, source=path))


__all__ = ["ImageFolderSource", "folder_source"]
