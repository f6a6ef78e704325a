"""Secrets out of everything we print: the one place that hides passwords in URIs and options.

Why: camera URIs carry credentials (``rtsp://user:password@cam/stream``), and so
can a query (``?token=...``) or an option (``password=...``). They must never reach
a log, telemetry, the preview page, JSON Lines or an error message. Sources keep
the real URI to open it and show only :func:`redact` of it; the CLIs' error line and
the toolkit's log records go through :func:`redact` too (:class:`RedactingFilter`),
so a message that quotes a URI anyway is cleaned on its way out.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict

MASK = "***"
# query or option keys whose values are secrets (whole key, lower case or capitalised)
SECRET_KEYS = ("password", "passwd", "pass", "pwd", "token", "secret", "key", "auth", "apikey", "api_key",
               "access_token", "sig", "signature", "credentials")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@")
# lower case or capitalised (``password=``, ``Password=``): an all-caps ``KEY=VALUE`` is a placeholder in our help
_KEYS = "|".join(k for key in SECRET_KEYS for k in (key, key.capitalize()))
_QUERY = re.compile(r"(?P<lead>[?&;\s])(?P<key>" + _KEYS + r")=(?P<val>[^&;\s\"']*)")


def redact(text: Any) -> str:
    """``text`` with every URI password (``scheme://user:PASSWORD@``) and secret query value masked."""
    s = str(text)
    if "@" in s:
        s = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", s)
    if "=" in s:
        s = _QUERY.sub(lambda m: f"{m.group('lead')}{m.group('key')}={MASK}", s)
    return s


def redact_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Options with secret-named values masked (for logs and descriptions)."""
    return {k: (MASK if k.lower() in SECRET_KEYS else v) for k, v in options.items()}


class RedactingFilter(logging.Filter):
    """A log filter that masks secrets in a record's formatted message (installed on the toolkit's loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter(logger_name: str = "aknet_edge") -> None:
    """Mask secrets in every record the toolkit's loggers emit (idempotent). Handlers see records of child
    loggers that propagate, so the filter sits on each handler of the root and on the toolkit's logger."""
    flt = _FILTER
    logger = logging.getLogger(logger_name)
    if flt not in logger.filters:
        logger.addFilter(flt)
    for handler in logging.getLogger().handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)


_FILTER = RedactingFilter()

__all__ = ["MASK", "RedactingFilter", "SECRET_KEYS", "install_log_filter", "redact", "redact_options"]
