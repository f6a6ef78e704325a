"""The preview's command-line flags: ``--preview-port``, ``--preview-host``, ``--preview-token``.

Why checked up front: the page shows camera video, so its address and token are settled before a
package, backend or source opens -- a busy port, a bad host or an empty token is one error line,
not a failure after the model loaded. The server binds 127.0.0.1 unless told otherwise; any other
address is a deliberate choice, warned about when no token guards it.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
from typing import Any, Dict, Optional, Tuple

from aknet_edge.checks import check_number
from aknet_edge.errors import ConfigError

from .server import DEFAULT_HOST, PreviewServer

log = logging.getLogger(__name__)

TOKEN_ENV = "AKNET_PREVIEW_TOKEN"  # the token when --preview-token is not given (aknet_edge.settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preview-port``, ``--preview-host`` and ``--preview-token`` (check them with :func:`validate`)."""
    g = parser.add_argument_group("live preview page")
    g.add_argument("--preview-port", type=int, metavar="N",
                   help="serve the live preview page at http://HOST:N/ (annotated video of each stream, label "
                        "and confidence, top-k, events timeline, telemetry; MJPEG at /stream.mjpg, one JPEG at "
                        "/frame.jpg); 0 picks a free port")
    g.add_argument("--preview-host", default=DEFAULT_HOST, metavar="ADDR",
                   help="address the preview listens on (default %(default)s: this machine only; any other "
                        "address shares camera video with the network, so set a token)")
    g.add_argument("--preview-token", metavar="TOKEN",
                   help=f"a secret every preview (and /metrics) request must carry (open the page as "
                        f"/?token=TOKEN, or send 'Authorization: Bearer TOKEN'); default: ${TOKEN_ENV} if set")


def env_token(environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The token from ``AKNET_PREVIEW_TOKEN`` (unset or empty: none; only spaces: an error)."""
    from aknet_edge import settings
    from aknet_edge.errors import ConfigError

    value = settings.raw(TOKEN_ENV, environ)
    if value and not value.strip():
        raise ConfigError(f"{TOKEN_ENV} holds only spaces: expected a non-empty secret; fix or unset the variable")
    return value or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` resolves to a loopback address only (the preview is then not on the network)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _resolve(host: str, port: Any) -> Tuple[str, int]:
    """``host`` and ``port`` checked (a port number, an IPv4 address or name): the address to bind."""
    check_number("--preview-port", port, minimum=0, maximum=65535, whole=True)
    try:
        infos = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, TypeError) as exc:
        raise ConfigError(f"--preview-host {host}: not an IPv4 address or host name here ({exc})") from None
    return infos[0][4][:2]


def _bind_error(host: str, port: int, exc: OSError) -> ConfigError:
    from aknet_edge.io_utils import os_error_reason

    reason = "already in use" if exc.errno == errno.EADDRINUSE else os_error_reason(exc)
    return ConfigError(f"--preview-port {port}: cannot serve the preview on {host}:{port}: {reason}; choose "
                       "another port (0 picks a free one)")


def check_address(host: str, port: int) -> None:
    """The preview's address, tried before anything starts: a busy or invalid port is one error line."""
    address = _resolve(host, port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the preview server binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise _bind_error(host, port, exc) from None


def validate(args: argparse.Namespace) -> None:
    """The preview flags (from :func:`add_arguments`), before a package, backend or source opens."""
    from aknet_edge.errors import ConfigError

    token = getattr(args, "preview_token", None)
    if token is not None and not token.strip():
        raise ConfigError("--preview-token: empty; expected a non-empty secret (or leave the flag out)")
    if args.preview_port is None:
        if token is not None and getattr(args, "metrics_port", None) is None:  # /metrics shares the token
            raise ConfigError("--preview-token: given without --preview-port or --metrics-port; add --preview-port "
                              "N (0 picks a free port) or drop the token")
        return
    env_token()
    check_address(args.preview_host, args.preview_port)


def from_args(args: argparse.Namespace, title: str = "aknet_edge") -> Optional[PreviewServer]:
    """The preview server the flags ask for (None without ``--preview-port``); call :func:`validate` first.

    Warns when the address is not a loopback one: the page then shows camera video to the network.
    """
    if args.preview_port is None:
        return None
    return open_preview(args.preview_port, args.preview_host, getattr(args, "preview_token", None), title)


def open_preview(port: int, host: str = DEFAULT_HOST, token: Optional[str] = None,
                 title: str = "aknet_edge") -> PreviewServer:
    """The one way a preview server is made, for the run CLI and the library alike
    (``Recognizer(..., preview_port=, preview_host=, preview_token=)`` comes here through the outputs).

    The address is checked as the CLI checks it (a bad host or a busy port: :class:`ConfigError`, one line);
    the token is ``token``, else ``AKNET_PREVIEW_TOKEN``; an empty one is an error. An address that is
    not a loopback one logs a warning (the page shows camera video to the network), louder without a token.
    """
    if token is not None and not str(token).strip():
        raise ConfigError("preview token: empty; expected a non-empty secret (or none)")
    token = token or env_token()
    address = _resolve(host, port)
    if not is_loopback(host):
        log.warning("the preview on %s:%d is reachable from other machines and shows camera video%s", host, port,
                    "" if token else f"; anyone who reaches it can watch: set a preview token or {TOKEN_ENV}")
    try:
        return PreviewServer(address[1], address[0], token=token, title=title)
    except OSError as exc:
        raise _bind_error(host, port, exc) from None


__all__ = ["TOKEN_ENV", "add_arguments", "check_address", "env_token", "from_args", "is_loopback", "open_preview",
           "validate"]
