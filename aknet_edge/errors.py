"""One error family for the whole toolkit.

Every error a user can cause derives from :class:`AknetError` and from the
built-in it is closest to, so callers may catch either. Messages say what
happened, what was expected, and how to fix it; CLIs print them without a
traceback and exit non-zero.
"""

from __future__ import annotations

from typing import Any

from .redact import redact


class AknetError(Exception):
    """Base class of every error aknet_edge raises on purpose.

    Its message is masked when it is made (:func:`aknet_edge.redact.redact`): a message that quotes a camera
    URI or an option shows no password, whoever prints it (a CLI's error line, a library caller's log).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args), **kwargs)


class ConfigError(AknetError, ValueError):
    """A configuration field has a value the toolkit cannot use."""


class InputShapeError(AknetError, ValueError):
    """A tensor or array handed to a model has the wrong shape or dtype."""


class DataError(AknetError, ValueError):
    """Training, evaluation or calibration data is missing, empty or unreadable."""


class CheckpointError(AknetError, ValueError):
    """A checkpoint cannot be read or does not fit the model."""


class DependencyError(AknetError, ImportError):
    """An optional dependency needed for the requested feature is missing."""
