"""Figures of what a load run measured: how long clients waited, and why.

Every function returns a :class:`~matplotlib.figure.Figure` and never
shows it: Jupyter's inline backend displays a figure made with ``plt.subplots``
once, at the end of the cell.  Nothing here is random, so the same
measurements always give the same picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import cycle
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

from shared.fmt import fmt_duration

if TYPE_CHECKING:
    from shared.load import LoadResult, Record
    from shared.store import Span

DPI = 90
WIDE = (8.0, 4.0)
WAITING_COLOUR = "#c4c4c4"
FAILED_COLOUR = "tab:red"
RUN_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown",
               "tab:pink", "tab:olive", "tab:cyan")
#: The course's jobs keep their colour from one figure to the next.
JOB_COLOURS = {"welcome_email": "tab:orange", "email": "tab:orange", "avatar": "tab:blue"}
OTHER_JOB_COLOURS = ("tab:green", "tab:purple", "tab:brown", "tab:pink",
                     "tab:olive", "tab:cyan")

#: Above this many requests the timeline drops per-row detail.
MANY_REQUESTS = 60
#: Runs whose latencies differ more than this factor get a log time axis.
LOG_SCALE_SPREAD = 20


def plot_latency_distribution(results: Sequence[LoadResult], *, ax: Axes | None = None,
                              title: str | None = None, p95_from: int = 0) -> Figure:
    """One cumulative curve per run: the share of clients answered within x.

    Dashed and dotted lines drop from the curve at the median (p50) and at
    p95; the legend gives their values.  The time axis turns logarithmic
    when the runs differ by more than 20x, so a 5 ms run and a 1 s run both
    stay readable.  A run of fewer than ``p95_from`` requests gets its
    slowest one marked instead of a p95 (of 8 samples, p95 is just the slowest).
    """
    fig, ax, created = _figure_and_axes(ax, WIDE)
    measured = [result for result in results if result.records]
    for number, result in enumerate(measured):
        _draw_cumulative(ax, result, _run_name(result, number),
                         RUN_COLOURS[number % len(RUN_COLOURS)], p95_from=p95_from)

    everything = [latency for result in measured for latency in result.latencies]
    positive = [latency for latency in everything if latency > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_SPREAD:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(left=0)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(_time_tick))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("time the client waited for the answer")
    ax.set_ylabel("requests answered\nwithin that time")
    ax.set_title(title if title is not None else "How long each client waited")
    ax.grid(True, which="major", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    if measured:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  fontsize="small", handlelength=2.2)
    if created:
        fig.tight_layout()
    return fig


def plot_timeline(result: LoadResult, spans: Sequence[Span] = (), *,
                  ax: Axes | None = None, title: str | None = None,
                  xmax: float | None = None) -> Figure:
    """One row per request: a grey bar while the client waits, jobs in colour.

    Rows are in the order the server began serving the requests, first at
    the top: by the start of a request's earliest job, or, for a request
    without jobs, by when it was answered.  Time is counted from the start
    of the run, up to ``xmax`` seconds if given (give several figures the
    same ``xmax`` to compare them), else up to the last thing drawn.  A job
    drawn past the end of its grey bar ran after the client already had its
    answer.  Failed requests and failed jobs get a red cross where they
    ended.  Spans need only ``request_id``, ``name``, ``start``, ``end``
    (``perf_counter()`` readings) and ``ok``.
    """
    _check_xmax(xmax)
    spans = list(spans)
    rows = len(result.records)
    fig, ax, created = _figure_and_axes(ax, (WIDE[0], 4.0 if rows <= 24 else 5.0))
    handles = _draw_timeline(ax, result, spans, _job_colours(span.name for span in spans),
                             labelled_rows=20)
    ax.set_xlim(0, xmax or _timeline_end(result, spans))
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("request, in the order served")
    ax.set_title(title if title is not None else _timeline_title(result))
    ax.legend(handles=list(handles.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, fontsize="small")
    if created:
        fig.tight_layout()
    return fig


def plot_timelines(runs: Sequence[LoadResult | tuple[LoadResult, Sequence[Span]]],
                   titles: Sequence[str] | None = None, *, xmax: float | None = None,
                   title: str | None = None) -> Figure:
    """Several runs' timelines stacked in one figure, on one shared time axis.

    ``runs`` holds ``(result, spans)`` pairs (or bare results, without
    jobs).  Each panel is drawn as :func:`plot_timeline` draws it; the time
    axis is common to all, up to ``xmax`` or to the end of the longest run,
    so a run that took three times as long looks three times as long.
    ``titles`` names the panels (default: each run's label); ``title``
    goes above them all.
    """
    _check_xmax(xmax)
    pairs = [(run[0], list(run[1])) if isinstance(run, tuple) else (run, []) for run in runs]
    if not pairs:
        raise ValueError("plot_timelines needs at least one run")
    if titles is not None and len(titles) != len(pairs):
        raise ValueError(f"{len(pairs)} runs but {len(titles)} titles: give one title per run")
    heights = [min(max(1.3, 0.6 + 0.08 * len(result.records)), 2.6) for result, _ in pairs]
    fig, grid = plt.subplots(len(pairs), 1, sharex=True, squeeze=False, dpi=DPI,
                             figsize=(WIDE[0], sum(heights) + (1.2 if title else 0.9)),
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    axes = list(grid[:, 0])
    colours = _job_colours(span.name for _, spans in pairs for span in spans)
    handles: dict[str, Artist] = {}
    for number, (ax, (result, spans)) in enumerate(zip(axes, pairs)):
        handles |= _draw_timeline(ax, result, spans, colours, labelled_rows=12)
        ax.set_title(titles[number] if titles is not None else _run_name(result, number),
                     loc="left", fontsize="medium")
    axes[0].set_xlim(0, xmax or max(_timeline_end(result, spans) for result, spans in pairs))
    axes[-1].set_xlabel("seconds since the run started")
    fig.supylabel("request, in the order served", fontsize="medium")
    if title:
        fig.suptitle(title)
    failed = handles.pop("failed", None)  # last in the legend, whichever run failed first
    axes[0].legend(handles=[*handles.values(), *([failed] if failed else [])], loc="upper left",
                   bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return fig


def _draw_timeline(ax: Axes, result: LoadResult, spans: Iterable[Span],
                   colours: dict[str, str], *, labelled_rows: int) -> dict[str, Artist]:
    """Draw one run's rows into ``ax``; return its legend entries by label."""
    own_spans: dict[str, list[Span]] = {}
    for span in spans:
        own_spans.setdefault(span.request_id, []).append(span)
    records = _in_order_served(result.records, own_spans)
    row_of = {record.request_id: row for row, record in enumerate(records, start=1)}
    drawn = sorted((span for record in records for span in own_spans.get(record.request_id, ())),
                   key=lambda span: (span.start, span.name))
    many = len(records) > MANY_REQUESTS
    t0 = result.started

    ax.barh(list(row_of.values()), [record.latency for record in records],
            left=[record.start - t0 for record in records],
            height=0.9 if many else 0.8, color=WAITING_COLOUR, linewidth=0, zorder=2)
    handles: dict[str, Artist] = {
        "waiting": Patch(facecolor=WAITING_COLOUR, label="waiting for the answer")}

    for name in dict.fromkeys(span.name for span in drawn):
        named = [span for span in drawn if span.name == name]
        ax.barh([row_of[span.request_id] for span in named],
                [span.end - span.start for span in named],
                left=[span.start - t0 for span in named],
                height=0.5 if many else 0.36, color=colours[name], linewidth=0, zorder=3)
        handles[f"job {name}"] = Patch(facecolor=colours[name],
                              label=f"{name.replace('_', ' ')} job")

    failures = [(record.end - t0, row_of[record.request_id])
                for record in records if _failed(record)]
    failures += [(span.end - t0, row_of[span.request_id]) for span in drawn if not span.ok]
    if failures:
        ax.scatter([x for x, _ in failures], [y for _, y in failures], marker="x",
                   s=12 if many else 30, linewidths=1.2 if many else 1.8,
                   color=FAILED_COLOUR, zorder=4)
        handles["failed"] = Line2D([], [], marker="x", linestyle="none", color=FAILED_COLOUR,
                                   markersize=6, markeredgewidth=1.8, label="failed")

    ax.set_ylim(len(records) + 0.7, 0.3)  # first served at the top
    if len(records) <= labelled_rows:
        ax.set_yticks(range(1, len(records) + 1))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, min_n_ticks=2))
    ax.tick_params(axis="y", length=0, labelsize="small")
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return handles


def _in_order_served(records: Iterable[Record],
                     spans_of: dict[str, list[Span]]) -> list[Record]:
    """Records by when the server began serving them: their earliest job, else their answer."""
    def served(record: Record) -> tuple[float, int]:
        own = spans_of.get(record.request_id)
        return (min(span.start for span in own) if own else record.end, record.index)
    return sorted(records, key=served)


def _timeline_end(result: LoadResult, spans: Iterable[Span]) -> float:
    """Seconds from the run's start to the last thing drawn, plus a margin."""
    ids = {record.request_id for record in result.records}
    last = max([record.end for record in result.records]
               + [span.end for span in spans if span.request_id in ids],
               default=result.started + 1.0)
    return (last - result.started) * 1.03 or 1.0


def _check_xmax(xmax: float | None) -> None:
    if xmax is not None and not (isinstance(xmax, (int, float)) and 0 < xmax < float("inf")):
        raise ValueError(f"xmax must be a number of seconds > 0, got {xmax!r}")


def _draw_cumulative(ax: Axes, result: LoadResult, name: str, colour: str, *,
                     p95_from: int = 0) -> None:
    latencies = sorted(result.latencies)
    shares = [rank / len(latencies) for rank in range(1, len(latencies) + 1)]
    ax.step([latencies[0], *latencies], [0.0, *shares], where="post",
            color=colour, linewidth=2, zorder=3)
    summary = result.summary()
    tail = ((1.0, summary.max, "slowest") if len(latencies) < p95_from
            else (0.95, summary.p95, "p95"))
    for q, value, word in ((0.50, summary.p50, "p50"), tail):
        ax.plot([value, value], [0, q], linestyle="--" if word == "p50" else ":", color=colour,
                linewidth=1.6, label=f"{name} {word} {fmt_duration(value)}", zorder=2)
        ax.plot([value], [q], marker="o", markersize=4, color=colour, zorder=4)


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]
                     ) -> tuple[Figure, Axes, bool]:
    """Our own figure when no axes are given; the caller's layout otherwise."""
    if ax is not None:
        root = ax.get_figure(root=True)  # the whole figure, even for axes in a subfigure
        if root is None:
            raise ValueError("these axes belong to no figure: make them with plt.subplots()")
        return root, ax, False
    fig, ax = plt.subplots(figsize=figsize, dpi=DPI)
    return fig, ax, True


def _run_name(result: LoadResult, number: int) -> str:
    return result.label or f"run {number + 1}"


def _timeline_title(result: LoadResult) -> str:
    if result.label:
        return f"{result.label}: each request, from sent to answered"
    return "Each request, from sent to answered"


def _failed(record: Record) -> bool:
    return record.status is None or record.status >= 500


def _job_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour per job name, in order of first appearance.

    The course's own jobs always get the same colour; others take the next
    spare one.
    """
    spare = cycle(OTHER_JOB_COLOURS)
    colours: dict[str, str] = {}
    for name in names:
        if name not in colours:
            colours[name] = JOB_COLOURS.get(name) or next(spare)
    return colours


def _time_tick(seconds: float, _position: float) -> str:
    if seconds <= 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    return f"{seconds:g} s"
