"""Lesson 07, section 5: a durable queue's backlog under a crowd, with and without shedding.

:func:`crowd_run` serves one dramatiq app on loopback, sends it a closed-loop
crowd of signups (:func:`shared.load.run_load`) and samples, ten times a
second, what waits: the unfinished avatar jobs the store counts, the seconds
of work they are (:func:`shared.modes.dramatiq.shedding.read_backlogs`, the
number the shedding bounds), the age of the oldest, and what Redis shows: the queue's list (``LLEN``) and the
messages the workers hold (the ``__acks__`` sets: prefetched or running).
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

import matplotlib.pyplot as plt
import psutil
import redis
from flask import Flask
from matplotlib.figure import Figure

from shared.app import state
from shared.load import LoadResult, run_load
from shared.modes.dramatiq.mode import DramatiqMode
from shared.modes.dramatiq.shedding import Backlog, read_backlogs
from shared.plots import DPI
from shared.processes import wait_until
from shared.sampling import Sampler
from shared.web import BackgroundServer

KIND, QUEUE = "avatar", "avatars"
SAMPLE_SECONDS = 0.1
RUN_COLOURS = ("tab:red", "tab:green")
#: How far past the bound the seconds of work queued may go and still count as held (the check
#: reads the store every 0.1 s, and the signups that pass it meanwhile all get in)
NEAR = 2.0
HELD = "stayed near the bound"
PAST = ("went well past the bound: more signups got in between two reads of the store, or the "
        "workers' pace dropped, than the bound allows for")


@dataclass(frozen=True)
class CrowdRun:
    """One app under one crowd: its answers, and what waited, sampled over time."""

    label: str
    bound: float  # the app's max_backlog_seconds (0: none)
    load: LoadResult
    watch: Sampler

    def series(self, name: str) -> tuple[list[float], list[float]]:
        """(seconds since the crowd began, values) of one sampled number."""
        samples = self.watch.samples
        return ([s.t - self.load.started for s in samples], [s.value(name) for s in samples])

    def during_load(self, name: str) -> list[float]:
        """The values sampled while the crowd was sending."""
        end = self.load.started + self.load.wall
        return [s.value(name) for s in self.watch.samples if self.load.started <= s.t <= end]

    def answered(self, status: int) -> int:
        return sum(record.status == status for record in self.load.records)

    def work_verdict(self) -> str:
        """Whether the seconds of work queued stayed within ``NEAR`` times the bound in every
        sample while the crowd lasted (what the left panel of :func:`plot_backlogs` draws)."""
        return HELD if max(self.during_load("seconds"), default=0.0) <= NEAR * self.bound else PAST


class BacklogProbe:
    """Reads one app's avatar backlog from its store and from Redis (closed with the run)."""

    def __init__(self, runner: DramatiqMode) -> None:
        self.namespace = runner.broker_config.namespace
        self._db = sqlite3.connect(runner.store.path, timeout=5.0, check_same_thread=False)
        self._redis = redis.Redis.from_url(runner.settings.redis_url)

    def backlog(self) -> Backlog:
        found = [b for b in read_backlogs(self._db) if b.kind == KIND]
        return found[0] if found else Backlog(KIND, 0, 1.0, True, 0.0)

    def listed(self) -> int:
        """``LLEN`` of the queue: the messages no worker has taken yet."""
        return int(self._redis.llen(f"{self.namespace}:{QUEUE}"))

    def held(self) -> int:
        """Messages the workers took (prefetched or running): their ``__acks__`` sets."""
        keys = self._redis.scan_iter(match=f"{self.namespace}:__acks__.*.{QUEUE}", count=100)
        return sum(int(self._redis.scard(key)) for key in keys)

    def sampler(self) -> Sampler:
        return Sampler(SAMPLE_SECONDS, extra={
            "unfinished": lambda: self.backlog().unfinished,
            "seconds": lambda: self.backlog().seconds,
            "age": lambda: self.backlog().oldest_age if self.backlog().unfinished else 0.0,
            "listed": self.listed, "held": self.held})

    def close(self) -> None:
        self._db.close()
        self._redis.close()


def _dramatiq(app: Flask) -> DramatiqMode:
    runner = state(app).runner
    if not isinstance(runner, DramatiqMode):
        raise TypeError(f"this needs a dramatiq app, got {runner!r}")
    return runner


def freeze(app: Flask) -> None:
    """Stop (SIGSTOP) every worker process of a dramatiq app: from now on it runs nothing and takes
    no CPU, and what its workers took stays where it is. :func:`close_apps` lets them go."""
    processes = _dramatiq(app).worker_processes()
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.suspend()

    def stopped() -> bool:  # the signal is delivered a moment later
        try:
            return all(process.status() == psutil.STATUS_STOPPED for process in processes)
        except psutil.NoSuchProcess:
            return True

    wait_until(stopped, 5.0, "the frozen workers to stop", interval=0.01)


def close_apps(*apps: Flask) -> None:
    """Close these apps all at once, without waiting for their jobs: a run is over, its backlog is
    dropped. Frozen workers (:func:`freeze`) are let go first, so that they can take the signal."""
    def close(app: Flask) -> None:
        runner = state(app).runner
        if isinstance(runner, DramatiqMode):
            for process in runner.worker_processes():
                with suppress(psutil.NoSuchProcess):
                    process.resume()
        state(app).close(timeout=0)

    with ThreadPoolExecutor(max_workers=max(1, len(apps))) as pool:
        list(pool.map(close, apps))


def warm_up(app: Flask, signups: int, timeout: float = 30.0) -> None:
    """A few signups at once, and wait until their jobs are done: the workers' pace is then
    known, as on a site that has been running for a while."""
    with BackgroundServer(app) as server:
        run_load(f"{server.url}/signup", n=signups, concurrency=signups, progress=False)
    if not state(app).runner.wait(timeout):
        raise TimeoutError(f"the warm-up's jobs were not done within {timeout:g} s")


def crowd_run(app: Flask, label: str, signups: int, clients: int) -> CrowdRun:
    """Serve ``app``, send it ``signups`` from ``clients`` closed-loop clients, sampling what waits."""
    runner = state(app).runner
    if not isinstance(runner, DramatiqMode):
        raise TypeError(f"crowd_run needs a dramatiq app, got {runner!r}")
    probe = BacklogProbe(runner)
    try:
        with BackgroundServer(app) as server, probe.sampler() as watch:
            load = run_load(f"{server.url}/signup", n=signups, concurrency=clients, label=label,
                            progress=False)  # a new address per signup
    finally:
        probe.close()
    return CrowdRun(label, runner.config["max_backlog_seconds"], load, watch)


def plot_backlogs(runs: list[CrowdRun], *, title: str) -> Figure:
    """Left: the seconds of avatar work queued (what the shedding bounds); right: unfinished
    avatars, store against Redis's list. Both runs on the same axes."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.2), dpi=DPI, sharex=True)
    for run, colour in zip(runs, RUN_COLOURS):
        left.plot(*run.series("seconds"), color=colour, label=run.label)
        right.plot(*run.series("unfinished"), color=colour, label=f"{run.label}: store")
        right.plot(*run.series("listed"), color=colour, linestyle=":",
                   label=f"{run.label}: Redis list (LLEN)")
        if run.bound:
            left.axhline(run.bound, color=colour, linestyle="--", linewidth=1,
                         label=f"the bound: {run.bound:g} s of work")
            left.axhline(NEAR * run.bound, color=colour, linestyle=":", linewidth=1,
                         label=f"{NEAR:g}x the bound: the verdict's limit")
    left.set_ylabel("avatar work queued (s, log)")
    right.set_ylabel("unfinished avatar jobs (log)")
    for ax in (left, right):  # a bounded backlog is tiny next to an unbounded one: both must show
        ax.set_yscale("symlog", linthresh=10)
    for ax in (left, right):
        ax.set_xlabel("seconds since the crowd began")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.legend(loc="best", frameon=False, fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig
