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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import psutil
from flask import Flask
from matplotlib.figure import Figure

from shared.app import state
from shared.fmt import fmt_ratio
from shared.load import run_load
from shared.modes import Runner
from shared.modes.dramatiq.niceness import autogroups_on
from shared.plots import DPI
from shared.processes import start_child, stop_tree, wait_until
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


@contextmanager
def paused(runner: Runner) -> Iterator[None]:
    """Stop a dramatiq runner's worker groups (SIGSTOP) for a while, then let them go on."""
    processes = [psutil.Process(pid) for pid in getattr(runner, "pids", [])]
    processes += getattr(runner, "worker_processes", list)()
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            process.resume()


def burst(app: Flask, signups: int, clients: int, warm: int = 0, pause: bool = False) -> Burst:
    """``signups`` from ``clients`` clients at once; then wait until their jobs are done.

    An app with jobs first gets ``warm`` signups, untimed, and the timed ones start once a
    worker is running one of their jobs: a short burst could otherwise be over before an idle
    worker even polls again (``worker_timeout``), and nothing would compete for the CPU.
    ``pause``: no warm-up, and the app's workers are stopped during the burst instead, so the
    web does the same work with no worker on the CPU.
    """
    store = state(app).store
    if pause:
        with paused(state(app).runner):
            p50 = _timed(app, signups, clients)
        return _drained(app, p50)
    with BackgroundServer(app) as server:
        if warm and state(app).runner.kinds:
            run_load(f"{server.url}/signup", n=warm, concurrency=clients, progress=False)
            queued = store.counts()["queued"]

            def working() -> bool:  # running one, or taken some already
                now = store.counts()
                return now["running"] > 0 or now["queued"] < queued or queued == 0

            wait_until(working, DRAIN_SECONDS, "a worker to start one of the warm-up jobs")
    return _drained(app, _timed(app, signups, clients))


def _timed(app: Flask, signups: int, clients: int) -> float:
    """The timed burst's median answer time."""
    with BackgroundServer(app) as server:
        load = run_load(f"{server.url}/signup", n=signups, concurrency=clients, progress=False)
    if load.summary().ok < signups:
        raise RuntimeError(f"some signups failed: {load.summary()}")
    return load.summary().p50


def _drained(app: Flask, p50: float) -> Burst:
    """Wait (up to ``DRAIN_SECONDS``) for the app's jobs to be done."""
    answered = time.perf_counter()
    drained = state(app).runner.wait(DRAIN_SECONDS)
    return Burst(p50, time.perf_counter() - answered, drained)


def compare(apps: dict[str, Flask], *, trials: int, signups: int, clients: int,
            warm: int = 0, pause: frozenset[str] = frozenset()) -> dict[str, list[Burst]]:
    """Each app's burst in every trial; the apps take turns in a rotating order.

    The names in ``pause`` are measured with their workers stopped (see :func:`burst`); the
    same app may appear under two names.
    """
    names = list(apps)
    bursts: dict[str, list[Burst]] = {name: [] for name in names}
    with progress_bar(trials * len(names), "bursts", "burst") as bar:
        for trial in range(trials):
            shift = trial % len(names)
            for name in names[shift:] + names[:shift]:
                bursts[name].append(burst(apps[name], signups, clients, warm, name in pause))
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
                f"tell them apart (the machine line says whether other programs were to blame)")


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
