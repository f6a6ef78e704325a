"""Value checks shared by the command-line tools and the runtime's own options.

Ground (pyproject.toml, [tool.importlinter]): the CLIs (:mod:`aknet_edge.cli_common` re-exports it) and the
runtime (the preview's port) both check numbers this way, and the runtime may import no CLI module.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .errors import ConfigError


def check_number(flag: str, value: Any, *, minimum: Optional[float] = None, above: Optional[float] = None,
                 maximum: Optional[float] = None, whole: bool = False, optional: bool = True, unit: str = "") -> Any:
    """A numeric option's range, checked once for every CLI: finite, and ``>= minimum``, ``> above``, ``<= maximum``.

    ``None`` passes when ``optional`` (an unset option). The message names the flag and the value as the user
    typed them, e.g. ``--threads 0: expected a whole number >= 1``.
    """
    if value is None and optional:
        return value
    bounds = []
    if minimum is not None:
        bounds.append(f">= {_num(minimum)}")
    if above is not None:
        bounds.append(f"> {_num(above)}")
    if maximum is not None:
        bounds.append(f"<= {_num(maximum)}")
    kind = "a whole number" if whole else "a finite number"
    expected = f"expected {kind}{' ' + ' and '.join(bounds) if bounds else ''}{' ' + unit if unit else ''}"
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (not whole or isinstance(value, int))
    if ok and not whole:
        ok = math.isfinite(value)
    if ok:
        ok = ((minimum is None or value >= minimum) and (above is None or value > above)
              and (maximum is None or value <= maximum))
    if not ok:
        raise ConfigError(f"{flag} {value}: {expected}")
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
