"""Secrets out of everything we print: the one place that hides passwords in URIs and options.

Why: camera URIs carry credentials (``rtsp://user:password@cam/stream``), and so can a query
(``?token=...``), a GStreamer property (``user-pw=...``) or an option (``password=...``). They must never
reach a log, telemetry, the preview page, JSON Lines or an error message. Three doors, one rule
(:func:`redact`):

* sources keep the real URI to open the device and show only ``redact(uri)`` (``Source.uri``);
* every :class:`~aknet_edge.errors.AknetError` masks its message when it is made (so a library caller's
  ``str(exc)`` is as clean as the CLIs' ``error:`` line);
* every log record of the toolkit's loggers (``aknet_edge.*``) is masked when it is made, by a log-record
  factory installed on import (:func:`install_record_factory`): records are made before any handler the
  application sets up sees them, so this holds whatever logging configuration the application has. The
  CLIs also put :class:`RedactingFilter` on the root handlers (:func:`install_log_filter`), which masks
  other libraries' records as well.

What counts as a secret: the password of a URI's user information (everything between the first ``:``
and the last ``@`` of the authority, so an unencoded ``@`` in a password is no escape), and the value of
any ``key=value`` (query, option list, GStreamer property), ``'key': 'value'`` (a dict's repr or JSON) or
``Bearer value`` whose key holds one of :data:`SECRET_KEYS` as a word (``password``, ``user-pw``,
``client_secret``, ``apiKey``, ``X-Amz-Signature``; not ``keyint`` or ``passthrough``). Placeholders in
help texts (``KEY=VALUE``, ``?token=TOKEN``, ``<password>``, ``$AKNET_PREVIEW_TOKEN``) stay readable.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Tuple

MASK = "***"
# the words that make a key secret: a key is secret when one of its words (split at '-', '_', '.', and
# lower-to-upper case changes) is one of these, or the whole key is
SECRET_KEYS = ("password", "passwd", "pass", "pwd", "pw", "passphrase", "token", "secret", "key", "auth",
               "authorization", "apikey", "api_key", "access_token", "sig", "signature", "credential", "credentials")
_WORDS = frozenset(SECRET_KEYS)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# values that are not secrets but the help's placeholders
_PLACEHOLDERS = frozenset({"VALUE", "TOKEN", "SECRET", "PASSWORD", "PASS", "PW", "PWD", "KEY", "AUTH", "N", "X",
                           "...", MASK, ""})

# scheme://authority (the authority ends at the path, query, fragment, white space or a quote)
_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<auth>[^/?#\s\"'<>]*)")
# key= after a separator (start, white space, ? & ; , = ( [ {): query pairs, option lists, properties
_PAIR = re.compile(r"(?:(?<=[?&;,\s=(\[{])|^)(?P<key>[A-Za-z0-9_.\-]+)=")
_PAIR_END = re.compile(r"[&;,\s\"'<>)\]}]")
# 'key': 'value' or "key": "value" (a dict's repr, JSON), ('key', 'value') (a pair's repr: option tuples)
_QUOTED = re.compile(r"(?P<open>\()?(?P<q>['\"])(?P<key>[A-Za-z0-9_.\-]+)(?P=q)(?(open),\s*|\s*:\s*)"
                     r"(?P<vq>['\"])(?P<val>[^'\"]*)(?P=vq)")
# an Authorization header's credentials (``Bearer abc``, ``Authorization: Basic dXNlcjpwdw==``)
_BEARER = re.compile(r"\b(?P<kind>[Bb]earer|BEARER|[Aa]uthorization:\s*[Bb]asic)\s+(?P<val>[^\s\"',;]+)")


def is_secret_key(name: Any) -> bool:
    """Whether an option or query key names a secret (``password``, ``user-pw``, ``apiKey``, ``client_secret``)."""
    text = str(name).strip()
    if text.lower() in _WORDS:
        return True
    return any(word.lower() in _WORDS for word in _WORD.findall(text))


def _placeholder(value: str) -> bool:
    v = value.strip()
    return (v.upper() == v and v.strip("<>[]{}") in _PLACEHOLDERS) or (v.startswith("<") and v.endswith(">")) \
        or bool(re.fullmatch(r"\$\{?[A-Z_][A-Z0-9_]*\}?", v))


def _userinfo(m: "re.Match[str]") -> str:
    auth = m.group("auth")
    at = auth.rfind("@")
    if at < 0:
        return m.group(0)
    user, colon, password = auth[:at].partition(":")
    if not colon or not password or password == MASK:
        return m.group(0)
    return f"{m.group('scheme')}{user}:{MASK}@{auth[at + 1:]}"


def _pairs(s: str) -> str:
    spans: List[Tuple[int, int]] = []
    for m in _PAIR.finditer(s):
        if not is_secret_key(m.group("key")):
            continue
        start = m.end()
        end_m = _PAIR_END.search(s, start)
        end = len(s) if end_m is None else end_m.start()
        if end > start and not _placeholder(s[start:end]) and (not spans or start >= spans[-1][1]):
            spans.append((start, end))
    for start, end in reversed(spans):
        s = s[:start] + MASK + s[end:]
    return s


def redact(text: Any) -> str:
    """``text`` with every URI password and every secret value (see the module's docstring) masked."""
    s = str(text)
    if "@" in s:
        s = _AUTHORITY.sub(_userinfo, s)
    if "=" in s:
        s = _pairs(s)
    if "'" in s or '"' in s:
        s = _QUOTED.sub(lambda m: m.group(0) if not is_secret_key(m.group("key")) or _placeholder(m.group("val"))
                        else m.group(0)[:m.start("val") - m.start()] + MASK + m.group("vq"), s)
    if " " in s:
        s = _BEARER.sub(lambda m: m.group(0) if _placeholder(m.group("val")) else f"{m.group('kind')} {MASK}", s)
    return s


def redact_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Options with secret-named values masked, and the rest's text redacted (for logs and descriptions)."""
    return {k: (MASK if is_secret_key(k) else (redact(v) if isinstance(v, str) else v)) for k, v in options.items()}


def _clean(record: logging.LogRecord) -> None:
    """Mask ``record``'s message and its traceback text in place (the record then carries no arguments)."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to logging's own error handling
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # formatted here, masked, and cached where every Formatter looks first
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(text)
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """A log filter that masks secrets in a record (installed on the root handlers by the CLIs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _clean(record)
        return True


def install_log_filter(logger_name: str = "aknet_edge") -> None:
    """Mask secrets in every record the root handlers (the CLIs' terminal) emit, other libraries' too
    (idempotent; call after the handlers are set up). The toolkit's own records are masked already
    (:func:`install_record_factory`)."""
    flt = _FILTER
    logger = logging.getLogger(logger_name)
    if flt not in logger.filters:
        logger.addFilter(flt)
    for handler in logging.getLogger().handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)


def install_record_factory() -> None:
    """Mask every record of the ``aknet_edge`` loggers as it is made (idempotent; done on import).

    Why a record factory and not a filter: a logger's filter sees only records logged on that very logger,
    not its children's, and handlers belong to the application, which may add its own at any time. The
    factory wraps whichever one is installed (the standard way to customise records)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "aknet_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        name = getattr(record, "name", "") or ""
        if name == "aknet_edge" or name.startswith("aknet_edge."):
            _clean(record)
        return record

    factory.aknet_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_FILTER = RedactingFilter()
install_record_factory()

__all__ = ["MASK", "RedactingFilter", "SECRET_KEYS", "install_log_filter", "install_record_factory",
           "is_secret_key", "redact", "redact_options"]
