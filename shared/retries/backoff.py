"""Dramatiq's retry backoff as a formula, and a figure of measured waits against it.

After the attempt that failed with ``retries`` retries behind it, Dramatiq
2.x waits ``min_backoff * 2**retries * U(1, 2)`` milliseconds, where ``U``
is a uniform random factor (jitter, so that a thousand jobs that failed
together do not come back together). A wait over ``max_backoff`` is
replaced by ``max_backoff * U(0.5, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from dramatiq.middleware.retries import DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, Retries
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from shared.plots import DPI

DEFAULT_MAX_RETRIES = Retries().max_retries
MAX_EXPONENT = 32


def backoff_window(retries: int, min_backoff: float = DEFAULT_MIN_BACKOFF,
                   max_backoff: float = DEFAULT_MAX_BACKOFF) -> tuple[float, float]:
    """The shortest and longest wait, in ms, after a failure with ``retries`` retries behind it."""
    if retries < 0:
        raise ValueError(f"retries counts from 0, got {retries}")
    max_backoff = min(max_backoff, DEFAULT_MAX_BACKOFF)
    base = min_backoff * 2 ** min(retries, MAX_EXPONENT)
    if 2 * base <= max_backoff:
        return base, 2 * base
    if base > max_backoff:
        return max_backoff / 2, max_backoff
    return min(base, max_backoff / 2), max_backoff


def total_window(max_retries: int = DEFAULT_MAX_RETRIES, min_backoff: float = DEFAULT_MIN_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF) -> tuple[float, float]:
    """Shortest and longest time, in ms, from the first failure to the last retry."""
    windows = [backoff_window(k, min_backoff, max_backoff) for k in range(max_retries)]
    return sum(low for low, _ in windows), sum(high for _, high in windows)


def plot_waits(waits: Sequence[tuple[int, float]], *, min_backoff: float, max_backoff: float,
               title: str = "Measured waits between attempts, against the formula") -> Figure:
    """Dots: measured waits ``(retries, seconds)``; grey band: the formula's window."""
    fig, ax = plt.subplots(figsize=(7.0, 3.6), dpi=DPI)
    retries = range(0, max(k for k, _ in waits) + 1) if waits else range(1)
    for k in retries:
        low, high = backoff_window(k, min_backoff, max_backoff)
        ax.fill_between([k - 0.3, k + 0.3], low / 1000, high / 1000, color="#d9d9d9",
                        label="formula: min_backoff x 2^k x U(1, 2), capped" if k == 0 else None)
    ax.scatter([k + _spread(i) for i, (k, _) in enumerate(waits)], [s for _, s in waits],
               s=14, color="tab:orange", zorder=3, label="measured wait")
    ax.axhline(max_backoff / 1000, color="tab:red", linewidth=0.8, linestyle="--",
               label=f"max_backoff = {max_backoff / 1000:g} s")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_seconds_tick))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks([t for t in (0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60)
                   if min_backoff / 2000 <= t <= max_backoff / 500])
    ax.set_xticks(list(retries))
    ax.set_xlabel("retries before this failure (k)")
    ax.set_ylabel("wait before the next attempt (s)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small", frameon=True, framealpha=0.9)
    ax.grid(True, which="major", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def _seconds_tick(value: float, _position: object) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


def _spread(index: int) -> float:
    """A small fixed sideways offset so dots at the same k do not hide each other."""
    return ((index * 7) % 9 - 4) * 0.05
