"""Figures for lesson 05: every email of a run on a timeline, and the final comparison.

Both return a :class:`~matplotlib.figure.Figure` and never show it. Runs
drawn side by side share one time scale, so lengths compare across panels.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from shared.fmt import fmt_duration
from shared.plots import DPI, WAITING_COLOUR
from shared.priorities.actors import RESET
from shared.priorities.run import Outcome

RESET_COLOUR = "tab:orange"
NEWSLETTER_COLOUR = "tab:blue"
RESET_WAITING_COLOUR = "#f7c99b"
HELD_COLOUR = "#8c6bb1"  # fetched by a worker, held in its memory, not started yet
TARGET_COLOUR = "tab:red"
#: In rows of one email: the gap above the reset email's row, and its height.
RESET_GAP = 1.5
RESET_HEIGHT = 3.0
#: Time ticks of the comparison figure (seconds) and their labels.
TICKS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def plot_runs(outcomes: Sequence[Outcome], *, titles: Sequence[str] | None = None,
              target: float | None = None) -> Figure:
    """One panel per run, one row per email in the order sent (reset last).

    Light grey (light orange for the reset email): waiting in Redis; purple:
    held by a worker (fetched, not started); blue: a newsletter copy being
    sent; orange: the reset email being sent. A red tick marks ``target``
    seconds after the reset was sent.
    """
    titles = list(titles) if titles is not None else [o.design.name for o in outcomes]
    xmax = max(o.ended - o.started for o in outcomes) * 1.03
    fig, axes = plt.subplots(len(outcomes), 1, figsize=(8.0, 1.9 * len(outcomes) + 0.5),
                             dpi=DPI, sharex=True, squeeze=False)
    for ax, outcome, title in zip(axes[:, 0], outcomes, titles):
        _draw_run(ax, outcome, target)
        ax.set_title(title, fontsize="medium", loc="left")
        ax.set_xlim(0, xmax)
    axes[-1, 0].set_xlabel("seconds since the newsletter was sent")
    handles: list[Artist] = [Patch(color=WAITING_COLOUR, label="copy waiting in Redis"),
               Patch(color=RESET_WAITING_COLOUR, label="reset email waiting in Redis"),
               Patch(color=HELD_COLOUR, label="held by a worker, not started"),
               Patch(color=NEWSLETTER_COLOUR, label="newsletter copy sending"),
               Patch(color=RESET_COLOUR, label="reset email sending")]
    if target is not None:
        handles.append(plt.Line2D([], [], color=TARGET_COLOUR, marker="|", linestyle="none",
                                  markersize=12, markeredgewidth=2, label="reset target"))
    axes[0, 0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def _draw_run(ax, outcome: Outcome, target: float | None) -> None:
    jobs = sorted(outcome.jobs, key=lambda job: (job.kind == RESET, job.number))
    t0 = outcome.started
    copies = len(jobs) - 1
    # The reset email's row is set apart by a gap and drawn taller than a copy's row.
    reset_row = copies + 1 + RESET_GAP + RESET_HEIGHT / 2
    rows = [*range(1, copies + 1), reset_row]
    heights = [1.0] * copies + [RESET_HEIGHT]
    ax.barh(rows, [job.in_redis for job in jobs], left=[job.sent - t0 for job in jobs],
            height=heights, linewidth=0,
            color=[RESET_WAITING_COLOUR if job.kind == RESET else WAITING_COLOUR for job in jobs])
    ax.barh(rows, [job.held for job in jobs], left=[job.fetched - t0 for job in jobs],
            height=heights, linewidth=0, color=HELD_COLOUR)
    colours = [RESET_COLOUR if job.kind == RESET else NEWSLETTER_COLOUR for job in jobs]
    ax.barh(rows, [job.finished - job.started for job in jobs],
            left=[job.started - t0 for job in jobs], height=heights, color=colours, linewidth=0)
    if target is not None:
        ax.plot([outcome.reset.sent - t0 + target], [reset_row], marker="|", markersize=14,
                markeredgewidth=2, color=TARGET_COLOUR, linestyle="none")
    ax.set_ylim(reset_row + RESET_HEIGHT / 2 + 0.5, 0)
    ax.set_yticks([1, copies, reset_row], ["copy 1", f"copy {copies}", "reset email"])
    ax.set_ylabel("emails, in the order sent", fontsize="small")
    ax.tick_params(axis="y", length=0, labelsize="small")
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def plot_reset_waits(outcomes: Sequence[Outcome], *, labels: Sequence[str] | None = None,
                     target: float | None = None) -> Figure:
    """A dot plot, one row per design: how long the reset email waited (left,
    with the ``target`` line), and how long the newsletter took (right).

    Both time axes are logarithmic (waits differ by orders of magnitude), with
    ticks labelled in ms and s; each dot carries its value.
    """
    labels = list(labels) if labels is not None else [o.design.name for o in outcomes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 0.5 * len(outcomes) + 1.6), dpi=DPI,
                                      sharey=True, gridspec_kw={"width_ratios": (3, 2)})
    rows = list(range(len(outcomes)))
    panels = ((left, [o.reset_wait for o in outcomes], RESET_COLOUR, "reset email waited"),
              (right, [o.newsletter_seconds for o in outcomes], NEWSLETTER_COLOUR,
               "newsletter took (first to last email)"))
    for ax, values, colour, title in panels:
        ax.scatter(values, rows, color=colour, s=40, zorder=3)
        for row, value in zip(rows, values):
            ax.annotate(fmt_duration(value), (value, row), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize="small")
        ax.set_xscale("log")
        low, high = min(values) / 2, max(values) * 3
        if ax is left and target is not None:
            low, high = min(low, target / 2), max(high, target * 3)
        ticks = [t for t in TICKS if low <= t <= high]
        ax.set_xticks(ticks, [fmt_duration(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(low, high)
        ax.set_title(title, fontsize="medium", loc="left")
        ax.grid(True, axis="both", color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if target is not None:
        left.axvline(target, color=TARGET_COLOUR, linestyle="--", linewidth=1.5)
        left.annotate(f"target {fmt_duration(target)}", (target, -0.5), xytext=(4, 0),
                      textcoords="offset points", color=TARGET_COLOUR, fontsize="small",
                      va="bottom")
    left.set_yticks(rows, labels)
    left.set_ylim(len(outcomes) - 0.5, -0.9)
    left.set_xlabel("seconds (log scale)")
    right.set_xlabel("seconds (log scale)")
    fig.tight_layout()
    return fig
