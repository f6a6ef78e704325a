"""Who an HTTP endpoint of ours answers: the one rule for the preview page and ``/metrics``.

Two checks, in this order, for every request to a server that shows camera data or the site's numbers:
its ``Host`` (:func:`host_allowed`: a server bound to loopback answers only to its own names, so a web page
in the operator's browser cannot read it through a DNS name rebound to 127.0.0.1) and its token
(:func:`token_given`: ``?token=``, ``Authorization: Bearer`` or ``X-Preview-Token``, compared in constant
time). Standard library only: both servers run on a Jetson with nothing extra installed.
"""

from __future__ import annotations

import hmac
import ipaddress
import urllib.parse
from typing import Any, Optional

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _raw(text: str) -> bytes:
    """The bytes a client sent, from the latin-1 text http.server makes of a request line or header value."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (a caller's own str): its UTF-8
        return text.encode("utf-8")


def token_given(token: Optional[str], query: str, headers: Any) -> bool:
    """Whether a request carries ``token`` (None: nothing to carry) in its query (``token=``), an
    ``Authorization: Bearer`` or an ``X-Preview-Token`` header, compared in constant time as the UTF-8 bytes the
    client meant: the request line and header values arrive as latin-1 text of their raw bytes, so the query is
    percent-decoded as bytes (a browser's %C3%BC and a raw UTF-8 ü alike) and a header re-encoded. ``query`` is
    the request target's query string. The one rule for every HTTP endpoint that shows camera data."""
    if token is None:
        return True
    given = b""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if urllib.parse.unquote_plus(key) == "token":
            given = urllib.parse.unquote_to_bytes(_raw(value).replace(b"+", b" "))
            break
    if not given:
        auth = headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        given = _raw(headers.get("X-Preview-Token", "") if bearer is None else bearer)
    return bool(given) and hmac.compare_digest(given, token.encode("utf-8"))


def host_allowed(bound: str, port: int, target: str, headers: Any) -> bool:
    """Whether a request may be answered by a server bound to ``bound``:``port``: one bound to a loopback address
    answers only to its own names (127.0.0.1, localhost, [::1] and ``bound``, with the port; the URL's host for a
    request in absolute form, else the ``Host`` header), so a page in the operator's browser cannot read it
    through a DNS name rebound to 127.0.0.1 (DNS rebinding). Any other binding: True (the token guards it)."""
    try:
        if not ipaddress.ip_address(bound).is_loopback:
            return True
    except ValueError:  # a name, not an address: treat it as the loopback case, the stricter one
        pass
    netloc = urllib.parse.urlsplit(target).netloc if not target.startswith("/") else ""
    host = (netloc or headers.get("Host") or "").strip().lower()
    names = set(LOOPBACK_NAMES) | {bound.lower()}
    return host in {f"{name}:{port}" for name in names} or (port == 80 and host in names)
