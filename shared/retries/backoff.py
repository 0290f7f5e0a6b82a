"""Dramatiq's retry backoff as a formula, and a figure of the chosen delays against it.

After the attempt that failed with ``retries`` retries behind it, Dramatiq
2.x waits ``min_backoff * 2**retries * U(1, 2)`` milliseconds, where ``U``
is a uniform random factor (jitter, so that a thousand jobs that failed
together do not come back together). A wait over ``max_backoff`` is
replaced by ``max_backoff * U(0.5, 1)``.
"""

from __future__ import annotations

import statistics
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


def plot_delays(delays: Sequence[tuple[int, float, float]], *, min_backoff: float,
                max_backoff: float, poll_ms: float | None = None) -> Figure:
    """Two panels from ``(retries, chosen_s, measured_s)`` per retry.

    Left: the delay Dramatiq *chose* (its draw), against the formula's window
    (grey boxes). Right: how late the retry started, ``measured - chosen`` in
    ms (the worker's poll lag), with its median; ``poll_ms`` draws two polls.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 4.2), dpi=DPI,
                                      gridspec_kw={"width_ratios": [3, 2]})
    retries = range(0, max(k for k, _, _ in delays) + 1) if delays else range(1)
    for k in retries:
        low, high = backoff_window(k, min_backoff, max_backoff)
        left.fill_between([k - 0.3, k + 0.3], low / 1000, high / 1000, color="#d9d9d9",
                          label="formula's window" if k == 0 else None)
    xs = [k + _spread(i) for i, (k, _, _) in enumerate(delays)]
    left.scatter(xs, [chosen for _, chosen, _ in delays], s=14, color="tab:orange", zorder=3,
                 label="delay Dramatiq chose")
    left.axhline(max_backoff / 1000, color="tab:red", linewidth=0.8, linestyle="--",
                 label=f"max_backoff = {max_backoff / 1000:g} s")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(FuncFormatter(_seconds_tick))
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_yticks([t for t in (0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60)
                     if min_backoff / 2000 <= t <= max_backoff / 500])
    left.set_xticks(list(retries))
    left.set_xlabel("retries before this failure (k)")
    left.set_ylabel("chosen delay")
    left.set_title("The draw, against the formula", fontsize="medium")
    # Below the panel, not on it: the boxes and dots fill the whole plot area.
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize="small",
                frameon=False)

    lateness = [(measured - chosen) * 1000 for _, chosen, measured in delays]
    right.scatter(xs, lateness, s=14, color="tab:blue", zorder=3, label="measured - chosen")
    if lateness:
        middle = statistics.median(lateness)
        right.axhline(middle, color="tab:blue", linewidth=0.8,
                      label=f"median {middle:.0f} ms")
    if poll_ms is not None:
        right.axhline(2 * poll_ms, color="tab:gray", linewidth=0.8, linestyle="--",
                      label=f"two polls, 2 x {poll_ms:g} ms")
    right.set_ylim(bottom=min([0.0] + lateness))
    right.set_xticks(list(retries))
    right.set_xlabel("retries before this failure (k)")
    right.set_ylabel("lateness (ms)")
    right.set_title("How late the retry started", fontsize="medium")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize="small",
                 frameon=False)
    for ax in (left, right):
        ax.grid(True, which="major", color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def _seconds_tick(value: float, _position: object) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


def _spread(index: int) -> float:
    """A small fixed sideways offset so dots at the same k do not hide each other."""
    return ((index * 7) % 9 - 4) * 0.05
