"""How measured numbers are printed.

Notebooks print timings inside sentences, and the notebook checker swaps them
for placeholders with regular expressions, so every format here is regular:
a number, one space, a unit (or an ``x`` glued to a ratio, a ``%`` to a
share).
"""

from __future__ import annotations

import math


def fmt_duration(seconds: float) -> str:
    """A duration as ``"0.42 ms"``, ``"6.7 ms"``, ``"512 ms"`` or ``"1.23 s"``.

    The unit is chosen after rounding, so 0.9996 s prints as ``"1.00 s"``,
    never as ``"1000 ms"``.
    """
    _require_finite_non_negative(seconds, "a duration")
    ms = seconds * 1000
    if round(ms, 2) < 1:
        return f"{ms:.2f} ms"
    if round(ms, 1) < 10:
        return f"{ms:.1f} ms"
    if round(ms) < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(x: float) -> str:
    """How many times bigger: ``"12.3x"``, or ``"105x"`` from 100 up."""
    _require_finite_non_negative(x, "a ratio")
    if round(x, 1) < 100:
        return f"{x:.1f}x"
    return f"{x:.0f}x"


def fmt_rate(per_second: float, unit: str = "req") -> str:
    """A rate with one decimal: ``"15.2 req/s"``."""
    _require_finite_non_negative(per_second, "a rate")
    return f"{per_second:.1f} {unit}/s"


def fmt_share(part: float, whole: float) -> str:
    """What share of ``whole`` is ``part``, as people say it.

    ``"under 0.1%"``, ``"0.4%"``, ``"9.5%"`` (one decimal below 10%),
    ``"57%"``, ``"100%"``.  A part smaller than the whole never prints as
    ``"100%"`` (it is ``"over 99%"``), and a tiny one never as ``"0.0%"``.
    """
    _require_finite_non_negative(part, "a part")
    _require_finite_non_negative(whole, "a whole")
    if whole == 0:
        raise ValueError("a share of nothing makes no sense: whole must be > 0")
    percent = part / whole * 100
    if percent == 0:
        return "0%"
    if round(percent, 1) < 0.1:
        return "under 0.1%"
    if round(percent, 1) < 10:
        return f"{percent:.1f}%"
    if round(percent) >= 100 and part < whole:
        return "over 99%"
    return f"{percent:.0f}%"


def _require_finite_non_negative(value: float, what: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
