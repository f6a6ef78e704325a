"""Loading TensorRT, reading its version, its logger, and the errors that name a version.

Why together: every other module of this package starts the same way (import
tensorrt lazily, refuse versions outside :mod:`aknet_edge.trt_eras`, hand
TensorRT the one process-wide logger) and reports missing features the same
way ("X is not available in TensorRT N: do Y").
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Optional, Sequence, Tuple

from aknet_edge import trt_eras
from aknet_edge.errors import AknetError, DependencyError

Version = Tuple[int, int, int]

# The logger TensorRT's messages go to unless a caller names another; the old
# single module's name, so existing logging configuration keeps applying.
LOGGER_NAME = "aknet_edge.runtime.trt"
INSTALL_HINT = "pip install tensorrt (desktop) or JetPack's python3-libnvinfer (Jetson)"
MIN_VERSION: Version = trt_eras.SUPPORTED_SINCE + (0,)  # type: ignore[assignment]
MAX_VERSION_EXCLUSIVE: Version = trt_eras.SUPPORTED_UNTIL + (0,)  # type: ignore[assignment]


# --------------------------------------------------------------------------- errors


class TensorRTFeatureError(AknetError, RuntimeError):
    """A feature the caller asked for does not exist in the installed TensorRT."""

    def __init__(self, feature: str, version: Version, hint: str = "") -> None:
        self.feature = feature
        self.version = version
        message = f"{feature} is not available in TensorRT {format_version(version)}"
        super().__init__(f"{message}: {hint}" if hint else message)


class UnsupportedTensorRTError(DependencyError):
    """The installed TensorRT is outside the range aknet_edge supports."""


class EngineBuildError(AknetError, RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


class EngineRuntimeError(AknetError, RuntimeError):
    """An engine could not be loaded or run."""


def require(feature: str, version: Version, title: Optional[str] = None) -> None:
    """Raise :class:`TensorRTFeatureError` unless ``version`` has ``feature`` (a key of trt_eras.FEATURES).

    The hint says from which version a feature exists, or what replaces one
    that was removed; ``title`` overrides how the message names the feature.
    """
    if trt_eras.available(feature, version):
        return
    entry = trt_eras.FEATURES[feature]
    if entry.since is not None and tuple(version) < entry.since:
        hint = f"they exist from TensorRT {format_version(entry.since)}"
    else:
        hint = entry.instead
    raise TensorRTFeatureError(title or entry.title, version, hint)


# --------------------------------------------------------------------------- import and version


def load_tensorrt() -> Any:
    """Import ``tensorrt`` on first use, so this package imports without it."""
    try:
        import tensorrt as trt  # noqa: WPS433 - optional dependency
    except (ImportError, OSError) as exc:  # OSError: bindings present, native libraries missing
        raise DependencyError(f"TensorRT cannot be imported ({exc}): {INSTALL_HINT}") from exc
    return trt


def format_version(version: Sequence[int]) -> str:
    return ".".join(str(v) for v in version)


def parse_trt_version(text: str) -> Version:
    """``"10.3.0.26"`` -> ``(10, 3, 0)``; pure, so it is testable without TensorRT."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if match is None:
        raise UnsupportedTensorRTError(f"cannot read a TensorRT version from {text!r}; expected like '10.3.0'")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def check_supported(version: Version) -> Version:
    """Refuse versions whose API this package was not written against."""
    if not trt_eras.is_supported(version):
        raise UnsupportedTensorRTError(
            f"TensorRT {format_version(version)} is not supported: aknet_edge needs "
            f"{format_version(MIN_VERSION[:2])} <= version < {MAX_VERSION_EXCLUSIVE[0]} "
            f"(JetPack 5.1+ on Jetson, or pip install 'tensorrt<{MAX_VERSION_EXCLUSIVE[0]}')")
    return version


def trt_version(trt: Any = None) -> Version:
    """The (major, minor, patch) of the given or the installed TensorRT module."""
    if trt is None:
        trt = load_tensorrt()
    return parse_trt_version(getattr(trt, "__version__", ""))


def api_era(version: Version) -> int:
    """8 (8.5 to 9.x: EXPLICIT_BATCH, builder precision flags), 10, or 11 (strongly typed only)."""
    return trt_eras.api_era(version)


# --------------------------------------------------------------------------- logger

_LOGGER_LOCK = threading.Lock()
_TRT_LOGGER: Any = None


def get_trt_logger(logger_name: str = LOGGER_NAME) -> Any:
    """The process-wide TensorRT logger, forwarding to ``logging.getLogger(logger_name)``.

    One instance per process: TensorRT keeps the first logger it is given for
    builders and runtimes alike and warns when handed a different one.
    """
    global _TRT_LOGGER
    trt = load_tensorrt()
    with _LOGGER_LOCK:
        if _TRT_LOGGER is None:
            _TRT_LOGGER = _logger_class(trt)()
        _TRT_LOGGER.target = logging.getLogger(logger_name)
    return _TRT_LOGGER


def _logger_class(trt: Any) -> type:
    """An ILogger subclass; made here so this package imports without TensorRT."""
    levels = {
        int(trt.ILogger.Severity.INTERNAL_ERROR): logging.CRITICAL,
        int(trt.ILogger.Severity.ERROR): logging.ERROR,
        int(trt.ILogger.Severity.WARNING): logging.WARNING,
        int(trt.ILogger.Severity.INFO): logging.INFO,
        int(trt.ILogger.Severity.VERBOSE): logging.DEBUG,
    }

    class PythonLogger(trt.ILogger):
        """Forwards TensorRT messages to Python logging (VERBOSE becomes DEBUG)."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.target = logging.getLogger(LOGGER_NAME)

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(int(severity), logging.INFO)
            if self.target.isEnabledFor(level):
                self.target.log(level, "TensorRT: %s", msg)

    return PythonLogger
