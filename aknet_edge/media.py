"""File-type facts shared by training, calibration, the runtime and the outputs.

One table each, so a TIFF folder that plays live can also train and calibrate,
and a container the runtime writes is one the synthetic writer can write too.
Imports nothing heavy (no numpy, no OpenCV): any layer may use it.
"""

from __future__ import annotations

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"})
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# where a data path is accepted (training, calibration, evaluation), this name means the synthetic generator
SYNTHETIC = "synthetic"
# the containers we write, and the codec OpenCV's writer uses for each (both ship with every OpenCV build)
FOURCC: dict[str, str] = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "MJPG"}


def is_video(name: str) -> bool:
    return _suffix(name) in VIDEO_SUFFIXES


def is_image(name: str) -> bool:
    return _suffix(name) in IMAGE_SUFFIXES


def listing(suffixes: frozenset[str] | dict[str, str]) -> str:
    """``.avi, .mp4, ...`` for error messages."""
    return ", ".join(sorted(suffixes))


def _suffix(name: str) -> str:
    dot = str(name).rfind(".")
    return str(name)[dot:].lower() if dot >= 0 else ""
