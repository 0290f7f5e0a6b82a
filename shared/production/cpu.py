"""Lesson 07, section 6: workers that steal the web's CPU, at normal and at lower priority.

:func:`compare` fires the same burst of signups at several apps (the bare
handler, and dramatiq apps whose workers run at different priorities), one
after another, in a new order each trial, and keeps each burst's median
answer time. A dramatiq burst ends when its workers have finished its jobs,
so the next burst never meets the last one's backlog (unless they take longer than
``DRAIN_SECONDS``: polite workers on a busy machine). :class:`Verdict` pairs
two apps' bursts trial by trial: in how many trials was one faster, and by
how much (the median of the per-trial differences); a one-sided sign test says
whether that count could be chance. On a busy machine it often could, and then no
single run means much.

``python -m shared.production.cpu`` runs the full comparison (two dramatiq
apps, nice 0 and nice 19, ``TRIALS`` trials in a rotating order) from a
terminal and prints the table and the verdicts, with more trials than the
lesson's cell has time for.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
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
from shared.modes.dramatiq.mode import DramatiqMode
from shared.modes.dramatiq.niceness import autogroups_on, lower_priority
from shared.plots import DPI
from shared.processes import start_child, stop_tree, wait_until
from shared.progress import progress_bar
from shared.web import BackgroundServer

#: How long a burst's jobs may take after it before the next burst goes anyway. Polite workers
#: on a machine busy with other programs can take minutes; their leftovers hardly compete. (Short:
#: a busy machine must not make the lesson's cell wait ten seconds a burst.)
DRAIN_SECONDS = 3.0
#: How long a burst waits for a worker to start one of its warm-up jobs before it gives up.
START_SECONDS = 10.0
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


def burst(app: Flask, signups: int, clients: int, warm: int = 0, pause: bool = False,
          server: BackgroundServer | None = None) -> Burst:
    """``signups`` from ``clients`` clients at once; then wait until their jobs are done.

    An app with jobs first gets ``warm`` signups, untimed, and the timed ones start once a
    worker is running one of their jobs: a short burst could otherwise be over before an idle
    worker even polls again (``worker_timeout``), and nothing would compete for the CPU.
    ``pause``: no warm-up, and the app's workers are stopped during the burst instead, so the
    web does the same work with no worker on the CPU. ``server``: one already serving ``app``
    (:func:`compare` keeps one per app: starting and stopping one costs a tenth of a second).
    """
    if server is None:
        with BackgroundServer(app) as own:
            return burst(app, signups, clients, warm, pause, own)
    store = state(app).store
    if pause:
        with paused(state(app).runner):
            p50 = _timed(app, signups, clients, server)
        return _drained(app, p50)
    if warm and state(app).runner.kinds:
        run_load(f"{server.url}/signup", n=warm, concurrency=clients, progress=False)
        queued = store.counts()["queued"]

        def working() -> bool:  # running one, or taken some already
            now = store.counts()
            return now["running"] > 0 or now["queued"] < queued or queued == 0

        wait_until(working, START_SECONDS, "a worker to start one of the warm-up jobs")
    timed = _timed(app, signups, clients, server)
    return _drained(app, timed)


def _timed(app: Flask, signups: int, clients: int, server: BackgroundServer | None = None) -> float:
    """The timed burst's median answer time."""
    if server is None:
        with BackgroundServer(app) as server:
            return _timed(app, signups, clients, server)
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
    with ExitStack() as stack, progress_bar(trials * len(names), "bursts", "burst") as bar:
        # one server per app for the whole comparison (the same app may appear under two names)
        distinct = {id(app): app for app in apps.values()}
        servers = {key: stack.enter_context(BackgroundServer(app)) for key, app in distinct.items()}
        for trial in range(trials):
            shift = trial % len(names)
            for name in names[shift:] + names[:shift]:
                app = apps[name]
                bursts[name].append(burst(app, signups, clients, warm, name in pause,
                                          servers[id(app)]))
                bar.update()
    return bursts


def ratios(bursts: dict[str, list[Burst]], over: str) -> dict[str, list[float]]:
    """Each app's p50 over ``over``'s, trial by trial (the same trial's bursts side by side)."""
    return {name: [a.p50 / b.p50 for a, b in zip(values, bursts[over])]
            for name, values in bursts.items() if name != over}


def make_polite(app: Flask, nice: int) -> None:
    """Lower a running dramatiq app's worker groups to ``nice`` now, the way the mode does as
    each group starts (a restarted group starts at it too). Raising it back needs root."""
    runner = state(app).runner
    if not isinstance(runner, DramatiqMode):
        raise TypeError(f"make_polite needs a dramatiq app, got the {runner.name} mode")
    runner.config["nice"] = nice
    for group in runner.groups:
        group.nice = nice
        if group.child is not None and group.running:
            lower_priority(group.child.pid, nice)


#: A sign test below this (one-sided) says the count of wins is not chance
SIGNIFICANT = 0.05


@dataclass(frozen=True)
class Verdict:
    """Two apps' ratios to the baseline, paired trial by trial (the same trial's bursts ran
    back to back): in how many trials was ``faster`` faster, and by how much?"""

    slower: list[float]
    faster: list[float]
    name: str = "the second"  # what ``faster`` is, for the sentence

    @property
    def differences(self) -> list[float]:
        """Per trial: ``slower`` minus ``faster`` (in bare p50s; > 0 when ``faster`` was)."""
        return [a - b for a, b in zip(self.slower, self.faster, strict=True)]

    @property
    def wins(self) -> int:
        return sum(d > 0 for d in self.differences)

    @property
    def p_value(self) -> float:
        """One-sided sign test: the chance that ``faster`` would win this many trials or more if
        each trial were a coin toss (ties left out). One-sided: the question is asked before the
        run (is ``faster`` faster?), and a clean sweep of five trials then already says yes."""
        n = sum(d != 0 for d in self.differences)
        return sum(math.comb(n, i) for i in range(self.wins, n + 1)) / 2 ** n if n else 1.0

    @property
    def clear(self) -> bool:
        return self.p_value < SIGNIFICANT

    def __str__(self) -> str:
        gap = statistics.median(self.differences)
        if abs(gap) < 0.05:  # "faster by 0.0x" would read as nonsense
            size = "under 0.05x the bare p50, either way"
        else:
            size = f"{'faster' if gap > 0 else 'slower'} by {fmt_ratio(abs(gap))} the bare p50"
        said = (f"{self.name} was faster in {self.wins} of {len(self.differences)} trials; the "
                f"median per-trial difference: {size}")
        if self.clear:
            return f"{said}: more wins than chance would give"
        return (f"{said}: WARNING, a count that chance alone could give, so this run cannot "
                f"tell whether {self.name} is faster (the machine line says whether other "
                f"programs were to blame)")


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


#: A busy loop at the nice value given as its first argument, pinned to one core (where the OS can
#: pin: Linux): the core given as its second argument, else the first one it may use.
SPIN = ("import os, sys\n"
        "os.nice(int(sys.argv[1]))\n"
        "if hasattr(os, 'sched_setaffinity'):\n"
        "    allowed = sorted(os.sched_getaffinity(0))\n"
        "    core = int(sys.argv[2]) if len(sys.argv) > 2 else allowed[0]\n"
        "    os.sched_setaffinity(0, {core if core in allowed else allowed[0]})\n"
        "while True:\n"
        "    pass\n")
#: How long the two loops compete before the measurement starts: the scheduler's load averages
#: (PELT, a half-life of 32 ms) need a moment to settle, and a share measured at once comes out low
SETTLE_SECONDS = 0.2


def nice_share(*, autogroup: bool, seconds: float = 0.5, core: int | None = None) -> float:
    """Two busy loops on one core (``core``, or the first), each in a session of its own, one at
    nice 19: the share of the core the nice one got. ``autogroup``: lower its session's autogroup
    too, where there is one."""
    where = [] if core is None else [str(core)]
    normal, polite = (start_child([sys.executable, "-c", SPIN, str(nice), *where]) for nice in (0, 19))
    try:
        _wait_spinning([normal.pid, polite.pid])
        if autogroup and autogroups_on():
            Path(f"/proc/{polite.pid}/autogroup").write_text("19")
        time.sleep(SETTLE_SECONDS)
        before = [_cpu(p.pid) for p in (normal, polite)]
        time.sleep(seconds)
        used = [_cpu(p.pid) - start for p, start in zip((normal, polite), before)]
    finally:
        for process in (normal, polite):
            stop_tree(process)
    return used[1] / sum(used) if sum(used) > 0 else 0.0


def nice_shares(seconds: float = 0.5) -> tuple[float, float]:
    """:func:`nice_share` with ``nice`` alone, and with the autogroup lowered too: at once, each
    pair on a core of its own, where two cores can be pinned (Linux); else one after the other."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        return nice_share(autogroup=False, seconds=seconds), nice_share(autogroup=True, seconds=seconds)
    with ThreadPoolExecutor(max_workers=2) as pool:
        alone = pool.submit(nice_share, autogroup=False, seconds=seconds, core=cores[0])
        lowered = pool.submit(nice_share, autogroup=True, seconds=seconds, core=cores[1])
        return alone.result(), lowered.result()


def _wait_spinning(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until every loop has pinned itself (its last step before the loop)."""
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        wait_until(lambda: all(len(psutil.Process(pid).cpu_affinity()) == 1 for pid in pids),
                   timeout, "the busy loops to pin themselves to one core", interval=0.01)
    else:
        time.sleep(0.1)


def _cpu(pid: int) -> float:
    """CPU seconds ``pid`` has used: in nanoseconds from ``/proc/<pid>/schedstat`` where there is
    one (Linux), else from the clock ticks ``psutil`` reads (10 ms each: 2% of a half-second run)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system


# -- the full comparison, from a terminal: python -m shared.production.cpu ----------------------

NORMAL, POLITE = "dramatiq, workers at nice 0", "dramatiq, workers at nice 19"
PAUSED = "dramatiq, workers stopped"
TRIALS = 10


def main(argv: list[str] | None = None) -> int:
    """Every app's burst in ``--trials`` trials, in a rotating order; the table and the verdicts."""
    from shared.app import create_app  # noqa: PLC0415 (the app pulls in Flask's whole stack)
    from shared.machine import watch_machine  # noqa: PLC0415
    from shared.redis_server import redis_url  # noqa: PLC0415
    from shared.settings import Settings  # noqa: PLC0415
    from shared.smtp_sink import SmtpSink  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m shared.production.cpu",
                                     description="Do polite (nice 19) workers give the web its "
                                                 "CPU back? Bursts of signups, several trials.")
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--signups", type=int, default=24)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warm", type=int, default=8, help="untimed signups before each burst")
    args = parser.parse_args(argv)
    sink = SmtpSink(delay=0.0).start()
    settings = Settings(smtp_host=sink.host, smtp_port=sink.port, avatar_canvas=400)
    apps = {"bare": create_app("bare", settings=settings),
            NORMAL: create_app("dramatiq", settings=settings, redis_url=redis_url()),
            POLITE: create_app("dramatiq", settings=settings, redis_url=redis_url(), nice=19)}
    apps[PAUSED] = apps[NORMAL]
    try:
        for name in (NORMAL, POLITE):
            runner = state(apps[name]).runner
            assert isinstance(runner, DramatiqMode)
            runner.wait_ready()
        print(f"{args.trials} trials of {args.signups} signups from {args.clients} clients at "
              f"once, at {len(apps)} apps in a rotating order")
        with watch_machine():
            bursts = compare(apps, trials=args.trials, signups=args.signups,
                             clients=args.clients, warm=args.warm, pause=frozenset({PAUSED}))
    finally:
        for app in {id(app): app for app in apps.values()}.values():
            state(app).close(timeout=10)
        sink.stop()
    by_app = ratios(bursts, over="bare")
    width = max(map(len, by_app))
    print(f"{'p50 over the bare handler':<{width}}  median  lowest  highest")
    for name, values in by_app.items():
        print(f"{name:<{width}}  {fmt_ratio(statistics.median(values)):>6}  "
              f"{fmt_ratio(min(values)):>6}  {fmt_ratio(max(values)):>7}")
    print("nice 0 against nice 19:", Verdict(by_app[NORMAL], by_app[POLITE], "nice 19"))
    print("workers running at nice 0 against workers stopped:",
          Verdict(by_app[NORMAL], by_app[PAUSED], "workers stopped"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
