"""What every candidate offers, how its jobs record their runs, and the kill-9 experiment.

A job records itself in Redis, in the candidate's own keys: ``<prefix>:started`` and
``<prefix>:finished`` are hashes from a job id to how many times its body began and
ended. So "lost", "ran twice" and "stuck" are counted the same way for every tool,
from outside the tool.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil
import redis

from shared.processes import LoggedChild

#: the two jobs every candidate runs: "noop" does nothing, "sleep" waits (I/O-bound work)
KINDS = ("noop", "sleep")


def record(redis_url: str, prefix: str, job_id: str, stage: str) -> None:
    """Called by a job body: one more ``stage`` ("started" or "finished") for ``job_id``."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.hincrby(f"{prefix}:{stage}", job_id, 1)
    finally:
        client.close()


def run_job(redis_url: str, prefix: str, job_id: str, kind: str, seconds: float) -> None:
    """The body of both jobs, the same for every tool."""
    record(redis_url, prefix, job_id, "started")
    if kind == "sleep":
        time.sleep(seconds)
    record(redis_url, prefix, job_id, "finished")


@dataclass(frozen=True)
class Runs:
    """How many times each job's body began and ended."""

    started: dict[str, int] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)


def read_runs(redis_url: str, prefix: str) -> Runs:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return Runs({str(k): int(v) for k, v in client.hgetall(f"{prefix}:started").items()},
                    {str(k): int(v) for k, v in client.hgetall(f"{prefix}:finished").items()})
    finally:
        client.close()


def tree(worker: LoggedChild | None) -> list[psutil.Process]:
    """A running worker command and every process under it (none if it is not running)."""
    if worker is None or not worker.running:
        return []
    root = psutil.Process(worker.pid)
    return [root, *root.children(recursive=True)]


def kill_tree(worker: LoggedChild | None) -> list[int]:
    """SIGKILL a worker command and all its processes at once, as the OOM killer or a dead
    machine would, and reap them; the pids killed."""
    victims = tree(worker)
    for process in victims:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=5)
    if worker is not None:
        worker.stop(timeout=1)
    return [p.pid for p in victims]


@dataclass(frozen=True)
class Leftovers:
    keys: int
    processes: int

    @property
    def total(self) -> int:
        return self.keys + self.processes


class Candidate(Protocol):
    """One task queue, started as its users start it."""

    name: str
    #: what its settings are: "defaults", or the documented reliable settings
    settings: str

    def start(self) -> Candidate:
        """Start the tool's own worker command (a child process) and wait until it takes jobs."""

    def enqueue(self, kind: str, job_id: str) -> None:
        """Send one job of ``kind`` (see :data:`KINDS`), as the tool's users send it."""

    def runs(self) -> Runs:
        """What the jobs recorded so far."""

    def kill_worker(self) -> list[int]:
        """SIGKILL the processes that run jobs, as the OOM killer would; the pids killed."""

    def restart_worker(self) -> None:
        """Start the worker command again, as a process manager would, and wait until ready."""

    def message_bytes(self) -> bytes:
        """The raw bytes one enqueued job is stored as in Redis (what goes over the wire)."""

    def stop(self) -> None:
        """Stop every process and delete every key of this candidate."""

    def leftovers(self) -> Leftovers:
        """Keys and processes of this candidate still there (0 and 0 after stop)."""


@dataclass(frozen=True)
class KillResult:
    """One ``kill -9`` mid-batch: what became of the batch."""

    name: str
    settings: str
    jobs: int
    in_flight: int     # jobs begun and not ended when the worker died (read after the kill)
    #: not finished by the deadline: lost for good, or still waiting for the tool's recovery
    #: (a longer deadline, or the tool's own records, tells which)
    unfinished: int
    duplicated: int    # bodies that began more than once
    stuck: int         # of the unfinished: begun, never ended (cut off by the kill)
    recovered_after: float | None  # seconds from the kill until every job had finished


def kill_mid_batch(candidate: Candidate, *, jobs: int = 12, seconds: float = 1.0,
                   deadline: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> KillResult:
    """Send ``jobs`` sleep jobs, SIGKILL the worker once some are running, restart it, and
    count, within ``deadline`` seconds, what did not finish, what ran twice, and what was
    cut off and never ran again."""
    ids = [f"job-{n}" for n in range(jobs)]
    for job_id in ids:
        candidate.enqueue("sleep", job_id)
    waited = time.monotonic() + deadline
    while not candidate.runs().started:
        if time.monotonic() > waited:
            raise TimeoutError(f"{candidate.name}: no job started within {deadline:g} s")
        sleep(0.02)
    candidate.kill_worker()
    killed_at = time.monotonic()
    runs = candidate.runs()  # read after the kill: nothing can start or finish meanwhile
    in_flight = sum(1 for j in ids if runs.started.get(j, 0) > runs.finished.get(j, 0))
    candidate.restart_worker()
    recovered = None
    while time.monotonic() - killed_at < deadline:
        runs = candidate.runs()
        if all(runs.finished.get(j, 0) >= 1 for j in ids):
            recovered = time.monotonic() - killed_at
            break
        sleep(0.05)
    runs = candidate.runs()
    unfinished = [j for j in ids if runs.finished.get(j, 0) == 0]
    stuck = sum(1 for j in unfinished if runs.started.get(j, 0) > 0)
    twice = sum(1 for j in ids if runs.started.get(j, 0) > 1)
    return KillResult(candidate.name, candidate.settings, jobs, in_flight,
                      unfinished=len(unfinished), duplicated=twice, stuck=stuck,
                      recovered_after=recovered)
