"""Lesson 07, section 6: workers that steal the web's CPU, at normal and at lower priority.

:func:`compare` fires the same burst of signups at several apps (the bare
handler, and dramatiq apps whose workers run at different priorities), one
after another, in a new order each trial, and keeps each burst's median
answer time. A dramatiq burst ends when its workers have finished its jobs,
so the next burst never meets the last one's backlog (unless they take longer than
``DRAIN_SECONDS``: polite workers on a busy machine). :func:`Verdict` says
whether the difference between two apps is larger than the spread of the
trials: on a busy machine it often is not, and then no single run means much.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import psutil
from flask import Flask
from matplotlib.figure import Figure

from shared.app import state
from shared.fmt import fmt_ratio
from shared.load import run_load
from shared.modes.dramatiq.niceness import autogroups_on
from shared.plots import DPI
from shared.processes import start_child, stop_tree
from shared.progress import progress_bar
from shared.web import BackgroundServer

#: How long a burst's jobs may take after it before the next burst goes anyway. Polite workers
#: on a machine busy with other programs can take minutes; their leftovers hardly compete.
DRAIN_SECONDS = 10.0
COLOURS = ("tab:grey", "tab:red", "tab:green", "tab:blue")


@dataclass(frozen=True)
class Burst:
    """One burst at one app: its median answer time, and how long its jobs took after it (s)."""

    p50: float
    drain: float  # at most DRAIN_SECONDS
    drained: bool  # False: its jobs were not all done after DRAIN_SECONDS


def burst(app: Flask, signups: int, clients: int) -> Burst:
    """``signups`` from ``clients`` clients at once; then wait until their jobs are done."""
    with BackgroundServer(app) as server:
        load = run_load(f"{server.url}/signup", n=signups, concurrency=clients, progress=False)
    answered = time.perf_counter()
    drained = state(app).runner.wait(DRAIN_SECONDS)
    if load.summary().ok < signups:
        raise RuntimeError(f"some signups failed: {load.summary()}")
    return Burst(load.summary().p50, time.perf_counter() - answered, drained)


def compare(apps: dict[str, Flask], *, trials: int, signups: int,
            clients: int) -> dict[str, list[Burst]]:
    """Each app's burst in every trial; the apps take turns in a rotating order."""
    names = list(apps)
    bursts: dict[str, list[Burst]] = {name: [] for name in names}
    with progress_bar(trials * len(names), "bursts", "burst") as bar:
        for trial in range(trials):
            shift = trial % len(names)
            for name in names[shift:] + names[:shift]:
                bursts[name].append(burst(apps[name], signups, clients))
                bar.update()
    return bursts


def ratios(bursts: dict[str, list[Burst]], over: str) -> dict[str, list[float]]:
    """Each app's p50 over ``over``'s, trial by trial (the same trial's bursts side by side)."""
    return {name: [a.p50 / b.p50 for a, b in zip(values, bursts[over])]
            for name, values in bursts.items() if name != over}


@dataclass(frozen=True)
class Verdict:
    """Two apps' ratios to the baseline, trial by trial: is the gap bigger than the spread?"""

    slower: list[float]
    faster: list[float]

    @property
    def effect(self) -> float:
        return statistics.median(self.slower) - statistics.median(self.faster)

    @property
    def spread(self) -> float:
        """The wider of the two ranges (max - min over the trials)."""
        return max(max(r) - min(r) for r in (self.slower, self.faster))

    @property
    def clear(self) -> bool:
        """The gap between the medians is larger than the spread of either."""
        return self.effect > self.spread

    def __str__(self) -> str:
        gap = (f"the medians differ by {fmt_ratio(max(self.effect, 0.0))} of the bare p50, "
               f"the trials spread over up to {fmt_ratio(self.spread)}")
        if self.clear:
            return f"{gap}: the difference is larger than the noise"
        return (f"{gap}: WARNING, the spread is larger than the difference, so this run cannot "
                f"tell them apart (a busy machine? run the cell again when it is quiet)")


def plot_ratios(by_app: dict[str, list[float]], *, title: str) -> Figure:
    """Each app's p50 over the bare handler's, one dot per trial and a bar at the median."""
    fig, ax = plt.subplots(figsize=(9.0, 3.2), dpi=DPI)
    for row, (values, colour) in enumerate(zip(by_app.values(), COLOURS[1:])):
        ax.scatter(values, [row] * len(values), color=colour, alpha=0.7, zorder=3)
        median = statistics.median(values)
        ax.plot([median, median], [row - 0.3, row + 0.3], color=colour, linewidth=2.5)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="the bare handler")
    ax.set_yticks(range(len(by_app)), list(by_app))
    ax.set_ylim(-0.6, len(by_app) - 0.4)
    ax.set_xlim(left=0)
    ax.set_xlabel("p50 over the bare handler's p50 (one dot per trial, bar: median)")
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


#: A busy loop pinned to the first core (where the OS can pin: Linux), so two of them compete.
SPIN = ("import os\n"
        "if hasattr(os, 'sched_setaffinity'):\n"
        "    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "while True:\n"
        "    pass\n")


def nice_share(*, autogroup: bool, seconds: float = 0.5) -> float:
    """Two busy loops on one core, each in a session of its own, one at nice 19: the share of
    the core the nice one got. ``autogroup``: lower its session's autogroup too, where there is one."""
    normal, polite = (start_child([sys.executable, "-c", SPIN]) for _ in range(2))
    try:
        time.sleep(0.1)  # both pinned and spinning
        psutil.Process(polite.pid).nice(19)
        if autogroup and autogroups_on():
            Path(f"/proc/{polite.pid}/autogroup").write_text("19")
        before = [_cpu(p.pid) for p in (normal, polite)]
        time.sleep(seconds)
        used = [_cpu(p.pid) - start for p, start in zip((normal, polite), before)]
    finally:
        for process in (normal, polite):
            stop_tree(process)
    return used[1] / sum(used) if sum(used) > 0 else 0.0


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system
