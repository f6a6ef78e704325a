"""Environment settings: every ``AKNET_*`` variable the toolkit reads, in one documented place.

Why one module: a variable read deep inside a function is invisible to the
user tuning a robot and to the reviewer reading the code. Each setting here has
a name, a default and a help line (the README's table lists the same), and is
parsed by one tested helper, so ``AKNET_ORT_CPU=yes`` and ``=1`` mean the same
and ``=maybe`` is an error rather than silently off. Values are read when
asked for (not at import), so a test or an embedding application may set them
at any time before the call that uses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS: Dict[str, Setting] = {s.name: s for s in (
    Setting("AKNET_EDGE_CACHE", "~/.cache/aknet_edge",
            "folder for the TensorRT engine and timing caches (engines/) and the demo package (demo_package/)"),
    Setting("AKNET_ORT_CPU", "0", "1: the auto backend uses ONNX Runtime's CPU provider even where CUDA/TensorRT "
                                  "providers are installed"),
    Setting("AKNET_ORT_SPIN", "0", "1: let ONNX Runtime's intra-op threads spin (off by default: spinning threads "
                                   "steal the cores capture and inference need on small boards)"),
    Setting("AKNET_PREVIEW_TOKEN", "", "a secret every preview request (and every /metrics request) must carry, used "
                                       "when --preview-token is not given (empty: none)"),
    Setting("AKNET_WEBHOOK_SECRET", "", "the secret that signs every webhook request (X-Aknet-Signature: sha256=<hex "
                                        "HMAC-SHA256 of the body>), used when --webhook-secret is not given (empty: "
                                        "unsigned)"),
)}


def raw(name: str, environ: Optional[Dict[str, str]] = None) -> str:
    """A setting's value as set, or its default."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not an aknet_edge setting; known: {sorted(SETTINGS)}")
    env = os.environ if environ is None else environ
    return env.get(name, SETTINGS[name].default)


def flag(name: str, environ: Optional[Dict[str, str]] = None) -> bool:
    """A yes/no setting: 1/true/yes/on or 0/false/no/off (any case); anything else is an error."""
    value = raw(name, environ).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r}: expected 1/true/yes/on or 0/false/no/off; fix or unset the variable")


def cache_dir(environ: Optional[Dict[str, str]] = None) -> Path:
    """The toolkit's cache folder (``AKNET_EDGE_CACHE``), not created here."""
    return Path(os.path.expanduser(raw("AKNET_EDGE_CACHE", environ)))
