"""Figures for lesson 02: threads over time, queue waits, a bounded queue, pool scaling, backoff.

Every function returns a :class:`~matplotlib.figure.Figure` (dpi 90, small)
and never shows it; Jupyter displays it once at the end of the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from shared.plots import DPI, WAITING_COLOUR

if TYPE_CHECKING:
    from shared.sampling import Sampler
    from shared.scaling import Point
    from shared.store import JobStatus, Span

KIND_COLOURS = {"welcome_email": "tab:orange", "avatar": "tab:blue"}
LINE_COLOURS = ("tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:brown")
MARKERS = ("o", "s", "^", "D", "v")
DASHES = ("-", "--", "-.", (0, (1, 1)), "-")
MB = 1024 * 1024


def plot_threads_and_memory(sampler: Sampler, *, title: str | None = None,
                            xmax: float | None = None) -> Figure:
    """Live threads (top) and resident memory (bottom) against seconds since sampling began."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 3.6), dpi=DPI, sharex=True)
    t0 = sampler.started if sampler.started is not None else sampler.samples[0].t
    times = [sample.t - t0 for sample in sampler.samples]
    top.plot(times, [sample.threads for sample in sampler.samples], color="tab:red")
    top.set_ylabel("live threads")
    top.set_ylim(bottom=0)
    bottom.plot(times, [sample.rss / MB for sample in sampler.samples], color="tab:purple")
    bottom.set_ylabel("memory (MB, resident)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("seconds since the burst began")
    bottom.set_xlim(0, xmax if xmax is not None else max(times[-1], 0.1))
    for ax in (top, bottom):
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
    top.set_title(title if title is not None else "Threads and memory while the jobs run")
    fig.tight_layout()
    return fig


def plot_threads_compared(samplers: dict[str, Sampler], *, title: str | None = None,
                          marks: dict[str, tuple[float, str]] | None = None) -> Figure:
    """Live threads against seconds since each run began, one line per run, on one scale.

    ``marks`` maps a run's label to ``(perf_counter() reading, text)``: a dotted
    vertical line in that run's colour, labelled, e.g. where its queue was dropped.
    """
    fig, ax = plt.subplots(figsize=(7.0, 2.8), dpi=DPI)
    for number, (label, sampler) in enumerate(samplers.items()):
        t0 = sampler.started if sampler.started is not None else sampler.samples[0].t
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        ax.plot([sample.t - t0 for sample in sampler.samples],
                [sample.threads for sample in sampler.samples], color=colour, label=label)
        if marks and label in marks:
            when, text = marks[label]
            ax.axvline(when - t0, linestyle=":", color=colour, linewidth=1.5)
            ax.annotate(text, xy=(when - t0, 0.5), xycoords=("data", "axes fraction"),
                        xytext=(4, 0), textcoords="offset points", color=colour,
                        fontsize="small", rotation=90, va="center")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since the burst began")
    ax.set_ylabel("live threads")
    ax.set_title(title if title is not None else "Live threads, the same burst")
    ax.legend(loc="upper right", frameon=False, fontsize="small")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def plot_bounded_queue(sampler: Sampler, answers: Sequence[tuple[float, int]], *, bound: int,
                       started: float, depth: str = "queued",
                       title: str | None = None) -> Figure:
    """A bounded queue under a crowd: jobs waiting (top, against the bound), answers (bottom).

    ``sampler`` sampled the queue's depth as the extra ``depth``; ``answers``
    are ``(perf_counter() when answered, HTTP status)`` pairs; ``started`` is
    the ``perf_counter()`` reading the time axis counts from. The bottom
    panel counts the answers so far, ``202`` and ``503`` apart.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 3.8), dpi=DPI, sharex=True)
    times = [sample.t - started for sample in sampler.samples]
    top.step(times, [sample.value(depth) for sample in sampler.samples], where="post",
             color="tab:purple", label="jobs waiting in the queue")
    top.axhline(bound, linestyle="--", color="black", linewidth=1,
                label=f"the bound: {bound} jobs")
    top.set_ylim(0, bound * 1.8)  # headroom above the bound for the legend: it covers no line
    top.set_ylabel("jobs waiting")
    top.legend(loc="upper center", ncol=2, frameon=False, fontsize="small")
    for status, colour in ((202, "tab:green"), (503, "tab:red")):
        ends = sorted(when - started for when, answered in answers if answered == status)
        bottom.step([0.0, *ends], range(len(ends) + 1), where="post", color=colour,
                    label=f"{status} answers so far")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("answers")
    bottom.set_xlabel("seconds since the first signup")
    bottom.legend(loc="upper left", frameon=False, fontsize="small")
    last = max([*times, *(when - started for when, _ in answers)], default=0.0)
    bottom.set_xlim(0, last * 1.02 or 1.0)
    for ax in (top, bottom):
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
    top.set_title(title if title is not None else "A bounded queue under a crowd")
    fig.tight_layout()
    return fig


class _Ran(NamedTuple):
    """A job that started; ``finished_at`` is its start while it still runs."""

    kind: str
    enqueued_at: float
    started_at: float
    finished_at: float


def plot_queue_waits(jobs: Sequence[JobStatus], *, title: str | None = None,
                     xmax: float | None = None) -> Figure:
    """One row per job, in the order queued: grey while it waited in the queue, colour while it ran."""
    ordered = sorted((_Ran(job.kind, job.enqueued_at, job.started_at,
                           job.finished_at or job.started_at)
                      for job in jobs if job.started_at is not None),
                     key=lambda job: (job.enqueued_at, job.kind != "welcome_email"))
    fig, ax = plt.subplots(figsize=(7.0, 3.6 if len(ordered) <= 40 else 4.4), dpi=DPI)
    t0 = min((job.enqueued_at for job in ordered), default=0.0)
    rows = range(1, len(ordered) + 1)
    ax.barh(rows, [job.started_at - job.enqueued_at for job in ordered],
            left=[job.enqueued_at - t0 for job in ordered], height=0.8,
            color=WAITING_COLOUR, linewidth=0)
    ax.barh(rows, [job.finished_at - job.started_at for job in ordered],
            left=[job.started_at - t0 for job in ordered], height=0.8,
            color=[KIND_COLOURS.get(job.kind, "tab:green") for job in ordered], linewidth=0)
    ax.set_ylim(len(ordered) + 0.7, 0.3)
    ax.set_xlim(0, xmax if xmax is not None else
                max(job.finished_at - t0 for job in ordered) * 1.03 if ordered else 1.0)
    ax.set_xlabel("seconds since the first job was queued")
    ax.set_ylabel("job, in the order queued")
    ax.set_title(title if title is not None else "Waiting in the queue, then running")
    kinds = sorted({job.kind for job in ordered}, key=lambda kind: kind != "welcome_email")
    handles = [Patch(facecolor=WAITING_COLOUR, label="waiting in the queue")]
    handles += [Patch(facecolor=KIND_COLOURS.get(kind, "tab:green"), label=f"{kind} running")
                for kind in kinds]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize="small")
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def plot_scaling(series: dict[str, Sequence[Point]], *, cores: int | None = None,
                 title: str | None = None) -> Figure:
    """Speed-up against pool size: each run's throughput over its own one-worker throughput.

    The dotted line is perfect scaling (N workers, N times the throughput),
    drawn through the measured pool sizes, so that each point compares with
    the perfect one straight above or below it; the dashed line is the
    number of cores.
    """
    fig, ax = plt.subplots(figsize=(7.0, 3.6), dpi=DPI)
    sizes = sorted({point.workers for points in series.values() for point in points})
    ax.plot(sizes, sizes, linestyle=":", marker="_", markersize=10, color="grey",
            label="perfect scaling")
    if cores:
        ax.axhline(cores, linestyle="--", color="black", linewidth=1, label=f"{cores} cores")
    highest, lowest = float(max(sizes)), 1.0
    for number, (label, points) in enumerate(series.items()):
        base = next(point.rate for point in points if point.workers == min(p.workers for p in points))
        speedups = [point.rate / base for point in points]
        highest, lowest = max(highest, *speedups), min(lowest, *speedups)
        # Lines that land on each other stay apart by marker and dash.
        ax.plot([point.workers for point in points], speedups,
                marker=MARKERS[number % len(MARKERS)], markersize=7 - number % 3,
                linestyle=DASHES[number % len(DASHES)], markerfacecolor="none" if number % 2 else None,
                color=LINE_COLOURS[number % len(LINE_COLOURS)], label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_yscale("log", base=2)  # equal steps for 1x, 2x, 4x, 8x: a doubling looks like one
    ax.get_yaxis().set_major_formatter(plt.FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.get_yaxis().set_minor_formatter(NullFormatter())
    ax.get_xaxis().set_minor_formatter(NullFormatter())
    ax.set_xlabel("workers in the pool")
    ax.set_ylabel("throughput, times\nthat of 1 worker")
    ax.set_ylim(min(lowest, 1.0) / 1.25, highest * 1.25)
    ax.set_title(title if title is not None else "What more workers buy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def plot_backoff(waits: Sequence[tuple[int, float]], *, base: float, cap: float,
                 title: str | None = None) -> Figure:
    """Measured waits before each retry (dots) inside the formula's range (shaded).

    ``waits`` holds ``(retry number, seconds waited)`` pairs. Where the cap
    binds, a dashed line shows the ceiling the doubling alone would give.
    """
    from shared.backoff import backoff_ceiling  # noqa: PLC0415 - keeps imports one-way

    fig, ax = plt.subplots(figsize=(7.0, 3.2), dpi=DPI)
    retries = range(1, max((retry for retry, _ in waits), default=3) + 1)
    ceilings = [backoff_ceiling(n, base=base, cap=cap) for n in retries]
    ax.bar(retries, ceilings, width=0.6, color="tab:blue", alpha=0.12,
           label="formula: uniform between 0 and the ceiling")
    ax.hlines(ceilings, [n - 0.3 for n in retries], [n + 0.3 for n in retries], color="tab:blue",
              linewidth=1.5, label="ceiling: min(cap, base x 2^(n-1))")
    uncapped = [(n, base * 2.0 ** (n - 1)) for n in retries if base * 2.0 ** (n - 1) > cap]
    if uncapped:
        ax.hlines([ceiling for _, ceiling in uncapped], [n - 0.3 for n, _ in uncapped],
                  [n + 0.3 for n, _ in uncapped], color="tab:blue", linestyles="--",
                  linewidth=1, label="without the cap: base x 2^(n-1)")
    ax.scatter([retry for retry, _ in waits], [wait for _, wait in waits], color="tab:red",
               s=18, zorder=3, label="measured wait")
    ax.set_xticks(list(retries))
    ax.set_xlim(0.4, retries[-1] + 0.6)
    ax.set_ylim(0, max(ceilings + [c for _, c in uncapped] + [wait for _, wait in waits]) * 1.15)
    ax.set_xlabel("retry number n")
    ax.set_ylabel("seconds waited\nbefore the retry")
    ax.set_title(title if title is not None else "Retries waited as the formula says")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def plot_attempts(spans: Sequence[Span], *, title: str | None = None) -> Figure:
    """Every attempt of every job on one time axis: one row per job, a cross where an
    attempt was refused, a dot where it got through. Shows when retries arrive."""
    fig, ax = plt.subplots(figsize=(7.0, 2.8), dpi=DPI)
    jobs = sorted({span.job_id for span in spans},
                  key=lambda job: min(s.start for s in spans if s.job_id == job))
    row = {job: number for number, job in enumerate(jobs, start=1)}
    t0 = min((span.start for span in spans), default=0.0)
    for ok, marker, colour, label in ((False, "x", "tab:red", "attempt refused"),
                                      (True, "o", "tab:green", "attempt that got through")):
        chosen = [span for span in spans if span.ok is ok]
        ax.scatter([span.start - t0 for span in chosen], [row[span.job_id] for span in chosen],
                   marker=marker, color=colour, s=28, label=label, zorder=3)
    for job in jobs:
        starts = sorted(span.start - t0 for span in spans if span.job_id == job)
        ax.plot(starts, [row[job]] * len(starts), color="#cccccc", linewidth=1, zorder=1)
    ax.set_yticks(list(row.values()))
    ax.set_ylim(len(jobs) + 0.7, 0.3)
    ax.set_xlim(left=-0.005)
    ax.set_xlabel("seconds since the first attempt")
    ax.set_ylabel("email")
    ax.set_title(title if title is not None else "When each attempt started")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig
