"""Run one design on real Dramatiq workers and measure the reset email's wait.

:func:`run_design` sends a newsletter backlog to Redis, starts one ``dramatiq``
command per worker group, sends one password-reset email once the workers
have finished ``reset_after`` copies, waits for every email, stops the
workers and removes the run's Redis keys. Every run has its own key
namespace, so runs in parallel (tests, notebooks) never share a queue.

The backlog goes out *before* the workers start, so a worker's first fetch
always sees the whole backlog: what it holds, and so the order it runs
things in, does not depend on how fast this machine is.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from dramatiq.brokers.redis import RedisBroker

from shared.modes.dramatiq.broker import delete_namespace, make_broker, namespace_keys
from shared.priorities.actors import (DESIGN_VAR, GROUP_VAR, NAMESPACE_VAR, NEWSLETTER, RESET,
                                     broker_config, declare_actors, fetched_key, log_key)
from shared.priorities.design import Design, WorkerGroup
from shared.processes import LoggedChild, wait_until
from shared.redis_server import redis_url
from shared.settings import Settings

__all__ = ["Job", "Outcome", "WorkersFailed", "run_design"]

#: How long an idle consumer sleeps between polls of Redis, at most (ms).
#: Dramatiq's default is 1000; the lesson lowers it so pickup delay stays small.
WORKER_TIMEOUT_MS = 100
POLL_SECONDS = 0.01
LOG_TAIL_LINES = 12
READER = "reader{}@example.com"
RESET_ADDRESS = "ada@example.com"


class WorkersFailed(RuntimeError):
    """The workers did not do their part in time; the message says what was seen."""


@dataclass(frozen=True)
class Job:
    """One email as measured: when it was sent, taken out of Redis by a worker,
    started and finished (perf_counter)."""

    kind: str  # RESET or NEWSLETTER
    number: int  # newsletter copy number from 1; 0 for the reset email
    sent: float
    fetched: float  # when a worker's consumer took it out of Redis: from then on it is *held*
    started: float
    finished: float
    worker: str  # "pid/thread" of the worker thread that ran it
    group: int  # which worker group of the design ran it, from 0
    error: str = ""

    @property
    def wait(self) -> float:
        """Seconds from ``send()`` until a worker thread started it."""
        return self.started - self.sent

    @property
    def in_redis(self) -> float:
        """Seconds it waited in Redis, before a worker fetched it."""
        return self.fetched - self.sent

    @property
    def held(self) -> float:
        """Seconds a worker held it (fetched, not yet started)."""
        return self.started - self.fetched


@dataclass(frozen=True)
class Outcome:
    """What one run of a design measured."""

    design: Design
    newsletter_size: int
    jobs: tuple[Job, ...]  # in the order they started
    started: float  # perf_counter when the first message was sent
    ended: float  # perf_counter when the last email was finished
    keys_left: int = 0  # the run's Redis keys a SCAN found after it cleaned up

    @property
    def reset(self) -> Job:
        return next(job for job in self.jobs if job.kind == RESET)

    @property
    def reset_wait(self) -> float:
        """Seconds the reset email waited before a worker started it."""
        return self.reset.wait

    @property
    def newsletter(self) -> list[Job]:
        return [job for job in self.jobs if job.kind == NEWSLETTER]

    @property
    def newsletter_seconds(self) -> float:
        """Seconds from the first email started until the last newsletter copy was out."""
        return max(job.finished for job in self.newsletter) - self.jobs[0].started

    @property
    def waiting_when_reset_sent(self) -> list[Job]:
        """Newsletter copies not yet started when the reset email was sent."""
        return [job for job in self.newsletter if job.started > self.reset.sent]

    @property
    def ran_before_reset(self) -> list[Job]:
        """Of those, the copies that still started before the reset email."""
        return [job for job in self.waiting_when_reset_sent if job.started < self.reset.started]

    @property
    def share_waited_for(self) -> float:
        """Share of the copies waiting when the reset was sent that it waited for (0..1)."""
        waiting = self.waiting_when_reset_sent
        return len(self.ran_before_reset) / len(waiting) if waiting else 0.0

    @property
    def held_when_reset_fetched(self) -> list[Job]:
        """Newsletter copies a worker of the reset's group held, not yet started,
        when the reset email was fetched: the most it could overtake."""
        reset = self.reset
        return [job for job in self.newsletter if job.group == reset.group
                and job.fetched <= reset.fetched < job.started]

    def most_held(self, group: int) -> int:
        """The most messages worker group ``group`` (from 0) held at one moment:
        fetched from Redis and not yet finished (running ones included)."""
        events = sorted([(job.fetched, 1) for job in self.jobs if job.group == group]
                        + [(job.finished, -1) for job in self.jobs if job.group == group])
        held = most = 0
        for _, change in events:
            held += change
            most = max(most, held)
        return most

    @property
    def order(self) -> list[str]:
        """Who started, in order: ``"R"`` for the reset email, ``"N7"`` for copy 7."""
        return ["R" if job.kind == RESET else f"N{job.number}" for job in self.jobs]

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if job.error]

    def busy_share(self, group: int) -> float:
        """Share of its thread time worker group ``group`` (from 0) spent sending email,
        from the first email started to the last one finished."""
        mine = [job for job in self.jobs if job.group == group]
        capacity = (self.ended - self.jobs[0].started) * self.design.workers[group].threads
        return sum(job.finished - job.started for job in mine) / capacity if capacity else 0.0


def run_design(design: Design, *, newsletter: int, smtp_host: str, smtp_port: int,
               reset_after: int = 1, timeout: float = 60.0, redis: str | None = None,
               cli: bool = False) -> Outcome:
    """Run ``design`` once on real workers and measure every email.

    ``newsletter`` copies are sent first, before any worker runs. Once the
    workers finished ``reset_after`` of them (0: at once, before the workers
    start), one reset email is sent. Returns when every email is out, all
    within ``timeout`` seconds, else raises :class:`WorkersFailed` saying
    what was seen. Workers and Redis keys are gone when it returns or raises.
    ``cli=True`` starts each group with the ``dramatiq`` command rather than
    ``python -m shared.priorities.worker`` (same Worker, slower to stop).
    """
    if isinstance(newsletter, bool) or not isinstance(newsletter, int) or newsletter < 1:
        raise ValueError(f"newsletter is a number of copies >= 1, got {newsletter!r}")
    if not 0 <= reset_after <= newsletter:
        raise ValueError(f"reset_after must be from 0 to newsletter ({newsletter}), "
                         f"got {reset_after!r}")
    url = redis or redis_url()
    namespace = f"lesson05-{uuid.uuid4().hex[:12]}"
    settings = Settings(smtp_host=smtp_host, smtp_port=smtp_port, smtp_timeout=5.0,
                        redis_url=url)
    deadline = time.monotonic() + timeout
    broker = make_broker(url, broker_config(namespace))
    actors = declare_actors(broker, design, settings)
    sent: dict[tuple[str, int], float] = {}
    try:
        with ExitStack() as stack:
            first = time.perf_counter()
            for number in range(1, newsletter + 1):
                sent[NEWSLETTER, number] = time.perf_counter()
                actors.newsletter.send(READER.format(number), number)
            if reset_after == 0:
                sent[RESET, 0] = time.perf_counter()
                actors.reset_email.send(RESET_ADDRESS)
            env = _worker_env(settings, namespace, design)
            workers = [stack.enter_context(_worker(group, {**env, GROUP_VAR: str(number)}, cli))
                       for number, group in enumerate(design.workers)]
            stack.callback(_signal_all, workers)  # every group starts stopping at once
            if reset_after:  # every group polls Redis before the reset is sent: none still booting
                _wait_consuming(broker, namespace, workers, deadline)
                _wait_for(broker, namespace, reset_after, workers, deadline,
                          f"{reset_after} newsletter cop{'y' if reset_after == 1 else 'ies'}")
                sent[RESET, 0] = time.perf_counter()
                actors.reset_email.send(RESET_ADDRESS)
            _wait_for(broker, namespace, newsletter + 1, workers, deadline,
                      f"all {newsletter + 1} emails")
        entries = [json.loads(raw) for raw in broker.client.lrange(log_key(namespace), 0, -1)]
        fetched = {(e["kind"], e["number"]): e["fetched"] for e in
                   map(json.loads, broker.client.lrange(fetched_key(namespace), 0, -1))}
    finally:
        broker.close()
        delete_namespace(url, namespace)
    keys_left = len(namespace_keys(url, namespace))  # a real SCAN, after the cleanup
    jobs = sorted((Job(kind=e["kind"], number=e["number"], sent=sent[e["kind"], e["number"]],
                       fetched=fetched.get((e["kind"], e["number"]), e["started"]),
                       started=e["started"], finished=e["finished"], worker=e["worker"],
                       group=int(e["group"]), error=e["error"]) for e in entries),
                  key=lambda job: job.started)
    outcome = Outcome(design=design, newsletter_size=newsletter, jobs=tuple(jobs),
                      started=first, ended=max(job.finished for job in jobs), keys_left=keys_left)
    return outcome


class _Worker(LoggedChild):
    """The one worker process of a worker group, its output in a log file."""

    def __init__(self, group: WorkerGroup, command: list[str], env: dict[str, str]) -> None:
        super().__init__(command, env=env,
                         name=f"the worker group `{' '.join(group.command_flags())}`")
        self.group = group

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return super().tail(lines)


def _worker_env(settings: Settings, namespace: str, design: Design) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), NAMESPACE_VAR: namespace,
            DESIGN_VAR: design.to_json(), "dramatiq_worker_timeout": str(WORKER_TIMEOUT_MS),
            "PYTHONUNBUFFERED": "1"}


@contextmanager
def _worker(group: WorkerGroup, env: dict[str, str], cli: bool) -> Iterator[_Worker]:
    """One worker process for ``group``, stopped (whole process group) on exit."""
    if cli:
        command = [sys.executable, "-m", "dramatiq", "shared.priorities.worker",
                   *group.command_flags()]
    else:
        command = [sys.executable, "-m", "shared.priorities.worker",
                   "--threads", str(group.threads), "--queues", *group.queues]
    env = {**env, "dramatiq_queue_prefetch": str(group.effective_prefetch)}
    worker = _Worker(group, command, env)
    try:
        yield worker
    finally:
        worker.stop(timeout=10.0)


def _signal_all(workers: list[_Worker]) -> None:
    for worker in workers:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _wait_consuming(broker: RedisBroker, namespace: str, workers: list[_Worker],
                    deadline: float) -> None:
    """Until every worker process has called Redis (its consumers fetch): each broker
    leaves its id in the namespace's heartbeat set on every call (``dispatch.lua``)."""
    key = f"{namespace}:__heartbeats__"

    def consuming() -> bool:
        ids = {member.decode() for member in broker.client.zrange(key, 0, -1)}
        return len(ids - {broker.broker_id}) >= len(workers)

    def problem() -> str | None:
        return next((p for p in (w.problem() for w in workers) if p), None)

    wait_until(consuming, max(0.0, deadline - time.monotonic()),
               f"all {len(workers)} worker group(s) to poll Redis", problem=problem)


def _wait_for(broker: RedisBroker, namespace: str, count: int, workers: list[_Worker],
              deadline: float, what: str) -> None:
    key = log_key(namespace)
    try:
        wait_until(lambda: broker.client.llen(key) >= count, max(0.0, deadline - time.monotonic()),
                   what, interval=POLL_SECONDS,
                   problem=lambda: next(filter(None, (w.problem() for w in workers)), None))
    except TimeoutError:
        done = broker.client.llen(key)
        tails = "\n".join(f"--- group {n}: {w.tail()}" for n, w in enumerate(workers, 1))
        raise WorkersFailed(
            f"gave up waiting for {what}: only {done} email(s) were sent in time. "
            f"Does every queue have a worker? Worker logs:\n{tails}") from None
    except RuntimeError as exc:  # a worker exited: wait_until says which, and its log
        raise WorkersFailed(str(exc)) from None
