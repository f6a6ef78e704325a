"""The on-screen preview: ``cv2.imshow`` where a display exists, nothing otherwise.

Why it never fails: the same command runs on a desk with a monitor and on a headless robot;
``--display`` there must not stop recognition, so a missing display or an OpenCV without
HighGUI only turns the window off (logged at debug level).
"""

from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

log = logging.getLogger(__name__)


def display_available() -> bool:
    """Whether an on-screen window can be opened (a display and an OpenCV with HighGUI)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    info = cv2.getBuildInformation()
    return "GUI:" not in info or "NONE" not in info.split("GUI:", 1)[1][:40]


class DisplayWindow:
    """``cv2.imshow`` where a display exists; silently does nothing otherwise."""

    def __init__(self, title: str = "aknet_edge") -> None:
        self.title = title
        self.enabled = display_available()
        if not self.enabled:
            log.debug("no display: preview window disabled")

    def show(self, image_bgr: np.ndarray) -> None:
        if not self.enabled:
            return
        try:
            cv2.imshow(self.title, image_bgr)
            cv2.waitKey(1)
        except cv2.error as exc:
            log.debug("preview window unavailable (%s); disabled", exc)
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


__all__ = ["DisplayWindow", "display_available"]
