"""Deploys and graceful shutdown (lesson 07, section 4): real worker groups, stopped as deploys stop them.

A :class:`Lab` is one experiment's world: a fresh store, a real SMTP sink
whose ``delay`` sets how long each welcome email takes, a fresh Redis
namespace with the course's heartbeat and maintenance settings, and real
``dramatiq shared.modes.dramatiq.actors`` worker groups
(:class:`shared.modes.dramatiq.workers.WorkerGroup`) reading the email queue.
Every job records each run in the store (its ``attempts``), so a count says
what a shutdown did: lost (never done), or run twice.

:func:`interrupt` runs one shutdown: a group mid-backlog, a ``stop`` you pass
(the signal, sent your way), then a new group started as soon as the old one
exited, as a process manager does on a deploy, until every job is done.
:func:`run_parallel` runs several at once. Dramatiq's worker logs say what
each worker process did with the signal (:func:`log_events`).

This is the measurement layer: the app and its modes never import it.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import psutil
import redis

from shared.job import Job
from shared.modes.dramatiq.broker import (BrokerConfig, delete_namespace, job_message, make_broker,
                                          namespace_keys, queue_of)
from shared.modes.dramatiq.mode import MAINTENANCE_CHANCE, DramatiqMode
from shared.modes.dramatiq.workers import WorkerGroup, log_folder, remove_folder
from shared.processes import wait_until
from shared.recovery import held_by, last_heartbeat
from shared.settings import Settings
from shared.smtp_sink import SmtpSink
from shared.store import Store

QUEUE = queue_of("welcome_email")
#: The course's settings (``DramatiqMode``): a silent worker counts as dead after this (ms),
#: and an idle consumer naps at most ``WORKER_TIMEOUT`` ms between fetches.
HEARTBEAT_TIMEOUT = cast(int, DramatiqMode.options["heartbeat_timeout"])
WORKER_TIMEOUT = cast(int, DramatiqMode.options["worker_timeout"])
#: This section's labs: a shorter heartbeat_timeout (ms) and a likelier maintenance draw (per million
#: fetches), so a dead worker's messages come back within seconds. ``make serve`` keeps the course's.
LAB_HEARTBEAT_TIMEOUT = 2_000
LAB_MAINTENANCE_CHANCE = 250_000
READY_SECONDS = 30.0
DONE_SECONDS = 60.0
#: Held around every store call of a lab and around every start of a worker group. The labs of
#: :func:`run_parallel` run in threads, each with its store's connection in thread-local data, and
#: a group starts through ``subprocess`` with a ``preexec_fn``: the forked child clears the other
#: threads' thread-local data before it execs, which closes their sqlite connections. A thread
#: caught inside sqlite at the fork holds that connection's mutex, and the child waits for it forever
#: (seen: a Run-All stuck in ``sqlite3_finalize`` under ``PyOS_AfterFork_Child``).
_FORK_GUARD = threading.RLock()

Stop = Callable[[WorkerGroup], None]
# "[2026-12-02 18:20:01,123] [PID 41] [MainThread] [dramatiq.WorkerProcess(0)] [INFO] Stopping ..."
_LOG_LINE = re.compile(r"^\[(?P<at>[\d-]+ [\d:]+,\d+)\] \[PID (?P<pid>\d+)\] \[[^]]*\] "
                       r"\[(?P<source>[^]]*)\] \[(?P<level>[A-Z]+)\] (?P<text>.*)$")


@dataclass(frozen=True)
class LogEvent:
    """One line a dramatiq group logged."""

    at: float  # Unix time
    pid: int
    source: str  # "dramatiq.MainProcess", "dramatiq.WorkerProcess(0)", "dramatiq.worker.Worker", ...
    level: str
    text: str


def log_events(text: str) -> list[LogEvent]:
    """The lines of a dramatiq log, parsed (a traceback's lines are left out)."""
    events = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            events.append(LogEvent(at, int(match["pid"]), match["source"], match["level"],
                                   match["text"]))
    return events


def wait_logged(group: WorkerGroup, text: str, times: int, timeout: float = 10.0) -> None:
    """Wait until the group's current run has logged a line containing ``text`` ``times`` times."""
    group.current.wait_until(lambda: group.log_text(current=True).count(text) >= times, timeout,
                             f"{times} log lines saying {text!r}")


@dataclass(frozen=True)
class Where:
    """Where a run's jobs are at one moment."""

    done: int
    running: int
    on_queue: int  # message ids in the queue's Redis list
    held: dict[str, int]  # worker (broker id) -> messages in its acks set


@dataclass(frozen=True)
class Tally:
    """Every job of a run, counted once the run is over."""

    sent: int
    done: int
    runs: dict[str, int]  # job id -> how many times it started
    emails: dict[str, int]  # address -> welcome emails delivered

    @property
    def lost(self) -> int:
        return self.sent - self.done

    @property
    def ran_twice(self) -> int:
        """Jobs that started more than once."""
        return sum(count > 1 for count in self.runs.values())

    @property
    def emailed_twice(self) -> int:
        """Addresses that got more than one welcome email."""
        return sum(count > 1 for count in self.emails.values())


class Lab:
    """A store, an SMTP sink, a fresh namespace and worker groups of the course's actors.

    ``email_delay`` (s) is how long the sink takes to accept an email: each job's length.
    """

    def __init__(self, redis_url: str, *, email_delay: float,
                 heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
                 maintenance_chance: int = MAINTENANCE_CHANCE) -> None:
        self.redis_url = redis_url
        with _FORK_GUARD:
            self.store = Store.fresh()
        self.sink = SmtpSink(delay=email_delay).start()
        self.config = BrokerConfig.fresh(heartbeat_timeout=heartbeat_timeout,
                                         maintenance_chance=maintenance_chance)
        self.broker = make_broker(redis_url, self.config)
        self.client = redis.Redis.from_url(redis_url)
        self.folder = log_folder()
        settings = Settings(smtp_host=self.sink.host, smtp_port=self.sink.port, smtp_timeout=10.0,
                            store_path=str(self.store.path), redis_url=redis_url)
        self.env = {**os.environ, **settings.to_env(), **self.config.to_env(),
                    "dramatiq_worker_timeout": str(WORKER_TIMEOUT), "PYTHONUNBUFFERED": "1"}
        self.groups: list[WorkerGroup] = []
        self.pids: dict[str, set[int]] = {}  # group name -> its main and worker processes
        self.started_at: dict[str, float] = {}  # group name -> when its command started (Unix time)
        self.ready_at: dict[str, float] = {}  # group name -> when all its workers consumed (Unix time)
        self.jobs: list[Job] = []
        self._senders: list[tuple[threading.Thread, threading.Event]] = []
        self._sending = threading.Event()

    # -- worker groups -----------------------------------------------------------------

    def start_group(self, name: str, *, processes: int = 1, threads: int = 2,
                    shutdown_ms: int = 5_000, wait: bool = True) -> WorkerGroup:
        """Start ``dramatiq shared.modes.dramatiq.actors --queues email ...``; wait until it consumes."""
        group = WorkerGroup(name, (QUEUE,), processes, threads, self.folder, shutdown_ms=shutdown_ms)
        self.started_at[name] = time.time()
        with _FORK_GUARD:  # no lab thread inside sqlite while the child forks (see _FORK_GUARD)
            group.start(self.env)
        self.groups.append(group)
        self.pids[name] = {group.pid}
        if wait:
            self.wait_ready(group)
        return group

    def wait_ready(self, group: WorkerGroup, timeout: float = READY_SECONDS) -> None:
        """Wait until every worker process of ``group`` consumes; note their pids."""
        group.current.wait_until(group.ready, timeout, f"the {group.name} group's workers to be ready")
        self.ready_at[group.name] = time.time()
        self.pids[group.name] |= {p.pid for p in group.worker_processes()}

    @staticmethod
    def now() -> float:
        """Unix time, as the store and the marks of a timeline use it."""
        return time.time()

    def group_of(self, pid: int) -> str | None:
        """The name of the group whose worker process ``pid`` was."""
        return next((name for name, pids in self.pids.items() if pid in pids), None)

    @staticmethod
    def wait_exit(group: WorkerGroup, timeout: float = 30.0) -> int:
        """Wait until the group's main process exited; return its exit code."""
        wait_until(lambda: not group.running, timeout,
                   f"the {group.name} dramatiq group to exit after the signal", interval=0.05)
        code = group.current.returncode
        assert code is not None
        return code

    # -- jobs ----------------------------------------------------------------------------

    def send(self, count: int) -> list[Job]:
        """Queue ``count`` welcome emails, each for its own address; return the jobs."""
        batch = [Job(uuid.uuid4().hex, "welcome_email", f"user{len(self.jobs) + i}@example.com",
                     uuid.uuid4().hex, time.time()) for i in range(count)]
        with _FORK_GUARD:
            self.store.add_jobs(batch)
        self.jobs.extend(batch)
        for job in batch:
            self.broker.enqueue(job_message(job))
        return batch

    def keep_sending(self, every: float) -> None:
        """Queue a job every ``every`` seconds, from a thread, until :meth:`stop_sending`."""
        finished = threading.Event()

        def run() -> None:
            try:
                while not self._sending.wait(every):
                    self.send(1)
            finally:
                finished.set()
        self._sending.clear()
        sender = threading.Thread(target=run, name="shutdown-lab-sender")
        self._senders.append((sender, finished))
        sender.start()

    def stop_sending(self, timeout: float = 10.0) -> None:
        """Stop the senders :meth:`keep_sending` started, and wait for them."""
        self._sending.set()
        for sender, finished in self._senders:
            if not finished.wait(timeout):
                raise TimeoutError(f"the lab's sender did not stop within {timeout:g} s")
            with _FORK_GUARD:  # its exit closes its thread's connection: not during a fork
                sender.join(timeout)
        self._senders.clear()

    def wait_running(self, count: int, timeout: float = 30.0) -> frozenset[str]:
        """Wait until ``count`` jobs run at once (every worker thread busy, say); return their ids."""
        found: frozenset[str] = frozenset()

        def enough() -> bool:
            nonlocal found
            found = frozenset(self.running_ids())
            return len(found) >= count

        wait_until(enough, timeout, f"{count} jobs running at once", problem=self._problem)
        return found

    def wait_done(self, timeout: float = DONE_SECONDS) -> None:
        """Wait until every job sent so far is done."""
        # the store alone (no Redis scan), every 50 ms: five labs poll at once on a small machine
        wait_until(lambda: sum(job.status == "done" for job in self.stored()) >= len(self.jobs),
                   timeout, f"all {len(self.jobs)} jobs to be done", interval=0.05,
                   problem=self._problem)

    def where(self) -> Where:
        """Where the jobs are now: done, running (per the store), on the queue, held by a worker."""
        statuses = Counter(job.status for job in self.stored())
        held = {worker: len(ids) for worker, ids in
                held_by(self.redis_url, self.config.namespace, QUEUE).items()}
        return Where(statuses["done"], statuses["running"],
                     int(self.client.llen(f"{self.config.namespace}:{QUEUE}")), held)

    def running_ids(self) -> set[str]:
        return {job.id for job in self.stored() if job.status == "running"}

    def stored(self) -> list[Any]:
        """Every job's row in the store (read under ``_FORK_GUARD``)."""
        with _FORK_GUARD:
            return self.store.jobs()

    def tally(self) -> Tally:
        jobs = self.stored()
        emails = Counter(m.recipients[0] for m in self.sink.inbox)
        return Tally(len(self.jobs), sum(job.status == "done" for job in jobs),
                     {job.id: job.attempts for job in jobs},
                     {job.email: emails[job.email] for job in self.jobs})

    def heartbeat(self, worker: str) -> float | None:
        """A worker's last heartbeat (Unix time), or None once maintenance forgot it."""
        return last_heartbeat(self.redis_url, self.config.namespace, worker)

    def _problem(self) -> str | None:
        if self.groups and not any(group.running for group in self.groups):
            return "no dramatiq group is running; the last log ends with:\n" + self.groups[-1].current.tail()
        return None

    # -- clean up --------------------------------------------------------------------------

    def ran_by(self) -> dict[str, str | None]:
        """Job id -> the group whose worker process ran it last (from the actor's stored result)."""
        backend = self.broker.get_results_backend()
        found: dict[str, str | None] = {}
        for job in self.jobs:
            try:
                result = backend.get_result(job_message(job))
            except Exception:  # noqa: BLE001 - no result (yet): no group to name
                found[job.id] = None
            else:
                found[job.id] = self.group_of(int(result["pid"]))
        return found

    def longest_wait(self) -> float:
        """The longest a job waited between being sent and its (last) run starting, in seconds."""
        return max((job.started_at - job.enqueued_at for job in self.stored()
                    if job.started_at is not None), default=0.0)

    def bars(self) -> list[tuple[float, float, str | None]]:
        """Each job's last run (start, end, Unix times) and the group that ran it, in sending order."""
        ran_by = self.ran_by()
        return [(job.started_at, job.finished_at, ran_by[job.id]) for job in self.stored()
                if job.started_at is not None and job.finished_at is not None]

    def rollout(self, marks: dict[str, float], old_exit_code: int) -> Rollout:
        """Count a rolling restart, once every job is done."""
        return Rollout(marks, old_exit_code, self.tally(), self.ran_by(), self.bars(), self.longest_wait())

    def close(self) -> None:
        """Stop every group and sender; delete the run's keys, files and sink.

        Every job has been counted by now (or the run failed), so no group gets a graceful exit,
        which costs a second or two (its workers' one-second sleep, its log thread's one-second
        poll). Its worker processes get ``SIGKILL`` first, and its main process reaps them (else
        they would outlive it as zombies of PID 1); then the main process gets ``SIGTERM``, and
        ``SIGKILL`` a moment later.
        """
        self.stop_sending()
        for group in self.groups:
            if group.child is None:
                continue
            if group.running:
                workers = group.worker_processes()
                for worker in workers:
                    with suppress(psutil.NoSuchProcess):
                        worker.kill()
                psutil.wait_procs(workers, timeout=2.0)  # gone once their main process reaped them
            group.current.stop(timeout=0.2)
        delete_namespace(self.redis_url, self.config.namespace)
        self.broker.close()
        self.client.close()
        self.sink.stop()
        with _FORK_GUARD:
            self.store.remove()
        remove_folder(self.folder)

    def leftovers(self) -> int:
        """What outlived :meth:`close`: processes, Redis keys, files, a listening sink. 0 is clean."""
        processes = sum(psutil.pid_exists(pid) for pids in self.pids.values() for pid in pids)
        keys = len(namespace_keys(self.redis_url, self.config.namespace))
        files = self.folder.exists() + self.store.path.exists()
        return processes + keys + files + self.sink.running

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class Interruption:
    """What one shutdown did, from the signal to the last job done by the next group."""

    name: str
    command: str
    main_pid: int
    worker_pids: frozenset[int]
    signal_at: float  # Unix time
    running_at_signal: frozenset[str]  # job ids
    exit_code: int
    exited_at: float
    at_exit: Where  # where the jobs were once the group had exited
    events: list[LogEvent]  # the old group's log lines after the signal
    heartbeats: dict[str, float | None]  # worker -> last heartbeat, read at exit
    restarted_at: float
    rerun_at: dict[str, float]  # job id -> when its second run started (Unix time)
    tally: Tally
    left: int  # what outlived the lab (processes, keys, files): 0 after a clean run
    heartbeat_timeout: int  # ms, the lab's: a dead worker's messages wait at least this long

    @property
    def abandoned(self) -> int:
        """Jobs that were running at the signal and ran again: cut off mid-run."""
        return len(self.running_at_signal & set(self.rerun_at))

    def texts(self, level: str | None = None) -> list[str]:
        """The old group's log messages after the signal (``level``: only those)."""
        return [e.text for e in self.events if level is None or e.level == level]

    def by_process(self) -> dict[int, list[str]]:
        """The old group's log messages after the signal, process by process (main process first)."""
        found: dict[int, list[str]] = {self.main_pid: []}
        for event in self.events:
            found.setdefault(event.pid, []).append(event.text)
        return found

    def marks(self) -> dict[str, float]:
        """Moments of the run, in seconds after the signal (for a timeline)."""
        marks = {"signal": 0.0, "old group exited": self.exited_at - self.signal_at,
                 "new group ready": self.restarted_at - self.signal_at}
        for event in self.events:
            if event.text.startswith(("Stopping worker process", "Killing worker process",
                                      "Worker has been shut down")):
                marks.setdefault(event.text.rstrip("."), event.at - self.signal_at)
        if self.rerun_at:
            marks["first rerun"] = min(self.rerun_at.values()) - self.signal_at
        return marks


def interrupt(redis_url: str, stop: Stop, *, name: str = "", jobs: int = 12,
              email_delay: float = 0.3, processes: int = 1, threads: int = 2,
              shutdown_ms: int = 5_000, heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
              maintenance_chance: int = MAINTENANCE_CHANCE) -> Interruption:
    """Start a group, queue ``jobs``, ``stop`` it once every thread is busy, restart, count.

    The new group is started as soon as the old one exited (a process manager's
    restart), and runs until every job is done.
    """
    with Lab(redis_url, email_delay=email_delay, heartbeat_timeout=heartbeat_timeout,
             maintenance_chance=maintenance_chance) as lab:
        old = lab.start_group("old", processes=processes, threads=threads, shutdown_ms=shutdown_ms)
        lab.send(jobs)
        running = lab.wait_running(processes * threads)
        signal_at = time.time()
        stop(old)
        code = lab.wait_exit(old)
        exited_at = time.time()
        at_exit = lab.where()
        heartbeats = {worker: lab.heartbeat(worker) for worker in at_exit.held}
        events = [e for e in log_events(old.log_text()) if e.at >= signal_at - 0.01]
        lab.start_group("new", processes=processes, threads=threads, shutdown_ms=shutdown_ms)
        restarted_at = time.time()
        lab.wait_done()
        rerun = {job.id: job.started_at for job in lab.stored()
                 if job.attempts > 1 and job.started_at is not None}
        tally = lab.tally()
    left = lab.leftovers()
    workers = frozenset(lab.pids["old"] - {old.pid})
    return Interruption(name, old.command_line(), old.pid, workers, signal_at, running, code,
                        exited_at, at_exit, events, heartbeats, restarted_at, rerun, tally, left,
                        heartbeat_timeout)


@dataclass(frozen=True)
class Rollout:
    """What a rolling restart did: its steps' moments (Unix times), the old group's exit, the count."""

    marks: dict[str, float]
    old_exit_code: int
    tally: Tally
    ran_by: dict[str, str | None]  # job id -> the group that ran it
    bars: list[tuple[float, float, str | None]]  # each job's run and its group, for a figure
    longest_wait: float  # seconds, the longest a job waited from sent to started


def run_parallel(**experiments: Callable[[], Any]) -> dict[str, Any]:
    """Run each experiment in a thread of its own, all at once; return their results by name."""
    with ThreadPoolExecutor(max_workers=len(experiments), thread_name_prefix="shutdown") as pool:
        futures = {name: pool.submit(run) for name, run in experiments.items()}
        return {name: future.result() for name, future in futures.items()}


def plot_shutdowns(runs: dict[str, Interruption]):
    """One lane per shutdown: its moments, in seconds after the signal; the dotted line is the
    lab's ``heartbeat_timeout`` after the last heartbeat of a worker that held messages when it exited."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only where a figure is wanted

    styles = {"signal": ("o", "C3"), "Stopping worker process": ("x", "0.35"),
              "Killing worker process": ("X", "C3"), "Worker has been shut down": ("|", "0.1"),
              "old group exited": ("o", "C1"), "new group ready": ("o", "C2"), "first rerun": ("o", "C0")}
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=90)
    for row, run in enumerate(runs.values()):
        for name, at in sorted(run.marks().items(), key=lambda item: item[1]):
            marker, colour = styles.get(name, ("o", "0.5"))
            on_top = name in ("first rerun", "Killing worker process")  # never hidden by a neighbour
            ax.plot([at], [row], marker, ms=8, mew=2, color=colour, label=name, linestyle="none",
                    zorder=4 if on_top else 3)
        beats = [beat for beat in run.heartbeats.values() if beat is not None]
        if beats:
            expiry = max(beats) + run.heartbeat_timeout / 1000 - run.signal_at
            ax.plot([expiry, expiry], [row - 0.3, row + 0.3], ":", color="0.2",
                    label="heartbeat_timeout passed")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper center", ncol=4,
              bbox_to_anchor=(0.5, -0.28), frameon=False)
    ax.set_yticks(range(len(runs)), list(runs))
    ax.set_ylim(len(runs) - 0.5, -0.5)
    ax.set_xlabel("seconds after the signal")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Each stop from its signal: the workers' log, the old group's exit, the new group, "
                 "the reruns", fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.38)  # fixed: tight_layout costs ~0.3 s
    return fig


def plot_rolling(jobs: list[tuple[float, float, str | None]], marks: dict[str, float]):
    """Each job as a bar from its start to its end, coloured by the group that ran it, with the
    restart's steps as vertical lines; times in seconds from the first of them all."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only where a figure is wanted

    origin = min([start for start, _, _ in jobs] + list(marks.values()))
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=90)
    colours = {"old": "C0", "new": "C2", None: "C3"}
    for row, (start, end, group) in enumerate(jobs):
        ax.plot([start - origin, end - origin], [row, row], lw=3, color=colours.get(group, "C3"),
                solid_capstyle="butt", label=f"ran by the {group} group" if group else "no result")
    for number, (name, at) in enumerate(sorted(marks.items(), key=lambda item: item[1])):
        ax.axvline(at - origin, color="0.3", ls="--", lw=1)
        ax.annotate(name, (at - origin, len(jobs) * (0.95 - 0.18 * number)), xytext=(3, 0),
                    textcoords="offset points", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    ax.set_xlabel("seconds")
    ax.set_ylabel("job, in sending order")
    ax.set_title("A rolling restart: start the new group, then stop the old one", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.16)  # fixed: tight_layout costs ~0.3 s
    return fig
