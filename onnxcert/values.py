"""The one check of a user-given number: finite, not a bool, optionally an integer and in range.

Config files, gate rules and reports all pass numbers through ``finite_number``; each names its
own error class (ConfigError for settings and rules, InputError for a report) and its wording.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import OnnxCertError
from .untrusted import quote


def is_number(value: Any) -> bool:
    """A real int or float (bool excluded) that is finite."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e300
            and math.isfinite(value))


def finite_number(value: Any, what: str, error: type[OnnxCertError], *, integer: bool = False,
                  kind: str | None = None) -> float:
    """``value`` as a float (an int with ``integer``), or ``error`` naming ``what``:
    "{what} must be {kind}, got {value!r}" (kind: "a finite number", or "an integer")."""
    ok = is_number(value) and (not integer or float(value).is_integer())
    if not ok:
        kind = kind or ("an integer" if integer else "a finite number")
        raise error(f"{what} must be {kind}, got {quote(value)}")
    return int(value) if integer else float(value)
