"""How numbers read on the page and in the summary: 4 significant digits, rounding noise around 0 shown as 0."""

from __future__ import annotations

import math
from typing import Any

NEAR_ZERO = 1e-12  # a value this close to 0 is rounding (a diversity of 1.48e-16 from identical images): shown as 0


def fmt(value: float | None, digits: int = 4) -> str:
    """A number as tables show it: 4 significant digits, 0 for rounding noise around 0, "–" for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return "0" if abs(value) < NEAR_ZERO else f"{value:.{digits}g}"


def fmt_bound(value: float | None) -> str:
    """An interval's end: 3 significant digits (it is less certain than the value), so one fits a narrow column."""
    return fmt(value, 3)


def fmt_signed(value: float) -> str:
    """A difference as tables show it: with its sign, except 0 (rounding noise included)."""
    return "0" if abs(value) < NEAR_ZERO else f"{value:+.4g}"


def as_number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (a bool is no number)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
