"""Two timelines of lesson 06: a poison message beside the good ones, and what ``time_limit`` stops.

Both draw on one time axis what the lab recorded (:class:`shared.retries.lab.Attempt`
and the SMTP server's delivery times), so you see the order of events, not a summary.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from shared.plots import DPI
from shared.retries.lab import Attempt


def plot_poison(poison: Sequence[Attempt], deliveries: Sequence[float]) -> Figure:
    """Row 1: each attempt of the poison message (a cross at its start) and the waits between
    them; row 2: when each good email reached the provider (seconds on the lab's clock)."""
    fig, ax = plt.subplots(figsize=(7.6, 2.6), dpi=DPI)
    for before, after in zip(poison, poison[1:]):
        ax.plot([before.end, after.start], [1, 1], color="tab:red", linestyle=":", linewidth=1,
                label="poison: waiting for its retry, out of the queue"
                if before is poison[0] else None)
    ax.scatter([a.start for a in poison], [1] * len(poison), marker="X", s=60, color="tab:red",
               zorder=3, label=f"poison: an attempt ({len(poison)}, each fails)")
    if poison and poison[-1].outcome == "dead":
        ax.annotate("dead letter", (poison[-1].end, 1), xytext=(6, 6),
                    textcoords="offset points", fontsize="small", color="tab:red")
    ax.scatter(list(deliveries), [0] * len(deliveries), marker="|", s=160, linewidths=1,
               color="tab:green", label=f"a good email delivered ({len(deliveries)})")
    ax.set_yticks([0, 1], ["good emails", "poison message"])
    ax.set_ylim(-1.1, 1.6)
    ends = [a.end for a in poison] + list(deliveries)
    ax.set_xlim(0, max(ends, default=1.0) * 1.12)
    ax.set_xlabel("seconds since the lab started")
    ax.set_title("The poison message leaves the queue between attempts; the others pass it",
                 fontsize="medium")
    ax.legend(loc="lower right", fontsize="small", frameon=True, framealpha=0.9)
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def plot_time_limits(rows: Sequence[tuple[str, float, str]], limit: float) -> Figure:
    """One bar per job, ``(label, seconds it ran, what ended it)``, from its start; the limit drawn."""
    fig, ax = plt.subplots(figsize=(7.6, 2.6), dpi=DPI)
    colors = {"TimeLimitExceeded": "tab:orange"}
    for y, (_label, seconds, ended_by) in enumerate(reversed(rows)):
        ax.barh(y, seconds, height=0.5, color=colors.get(ended_by, "tab:blue"))
        ax.annotate(f"{seconds:.2f} s, ended by {ended_by}", (seconds, y), xytext=(5, -4),
                    textcoords="offset points", fontsize="small")
    ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1,
               label=f"time_limit = {limit:g} s")
    ax.set_yticks(range(len(rows)), [label for label, _, _ in reversed(rows)])
    longest = max([seconds for _, seconds, _ in rows] + [limit])
    ax.set_xlim(0, longest * 1.6)
    ax.set_xlabel("seconds since the attempt started")
    ax.set_title("What stopped each job", fontsize="medium")
    ax.legend(loc="lower right", fontsize="small", frameon=True, framealpha=0.9)
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig
