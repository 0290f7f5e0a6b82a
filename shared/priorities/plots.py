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

from shared.plots import DPI, WAITING_COLOUR
from shared.priorities.actors import RESET
from shared.priorities.run import Outcome

RESET_COLOUR = "tab:orange"
NEWSLETTER_COLOUR = "tab:blue"
RESET_WAITING_COLOUR = "#f7c99b"
HELD_COLOUR = "#8c6bb1"  # fetched by a worker, held in its memory, not started yet
TARGET_COLOUR = "tab:red"


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
    rows = range(1, len(jobs) + 1)
    ax.barh(rows, [job.in_redis for job in jobs], left=[job.sent - t0 for job in jobs],
            height=1.0, linewidth=0,
            color=[RESET_WAITING_COLOUR if job.kind == RESET else WAITING_COLOUR for job in jobs])
    ax.barh(rows, [job.held for job in jobs], left=[job.fetched - t0 for job in jobs],
            height=1.0, linewidth=0, color=HELD_COLOUR)
    colours = [RESET_COLOUR if job.kind == RESET else NEWSLETTER_COLOUR for job in jobs]
    ax.barh(rows, [job.finished - job.started for job in jobs],
            left=[job.started - t0 for job in jobs], height=1.0 if len(jobs) > 20 else 0.8,
            color=colours, linewidth=0)
    reset_row = len(jobs)
    if target is not None:
        ax.plot([outcome.reset.sent - t0 + target], [reset_row], marker="|", markersize=12,
                markeredgewidth=2, color=TARGET_COLOUR, linestyle="none")
    ax.set_ylim(len(jobs) + 1, 0)
    ax.set_yticks([1, reset_row], ["copy 1", "reset"])
    ax.tick_params(axis="y", length=0, labelsize="small")
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def plot_reset_waits(outcomes: Sequence[Outcome], *, labels: Sequence[str] | None = None,
                     target: float | None = None) -> Figure:
    """Horizontal bars: how long the reset email waited under each design.

    A second, lighter bar shows when the newsletter's last copy was out. The
    time axis is logarithmic: waits differ by orders of magnitude.
    """
    labels = list(labels) if labels is not None else [o.design.name for o in outcomes]
    fig, ax = plt.subplots(figsize=(8.0, 0.55 * len(outcomes) + 1.4), dpi=DPI)
    rows = list(range(len(outcomes)))
    ax.barh([r - 0.18 for r in rows], [o.reset_wait for o in outcomes], height=0.36,
            color=RESET_COLOUR, label="reset email waited")
    ax.barh([r + 0.18 for r in rows], [o.newsletter_seconds for o in outcomes], height=0.36,
            color=NEWSLETTER_COLOUR, alpha=0.45, label="newsletter took (first to last email)")
    if target is not None:
        ax.axvline(target, color=TARGET_COLOUR, linestyle="--", linewidth=1.5,
                   label="reset target")
    ax.set_xscale("log")
    ax.set_yticks(rows, labels)
    ax.set_ylim(len(outcomes) - 0.5, -0.5)
    ax.set_xlabel("seconds (log scale)")
    ax.grid(True, axis="x", which="major", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
