"""``dramatiq``: Dramatiq actors on Redis, run by ``dramatiq`` worker groups (lessons 04-06).

The web app sends one message per job to Redis; the message id is the job
id. Two worker groups, started exactly as you would in production
(:mod:`.workers`), run them: welcome emails have their own queue and group,
so an email never waits behind a backlog of avatars (lesson 05). The status
middleware (:mod:`.status`) records every status in the store, where
``GET /jobs/<id>`` reads it.

The email retries transient errors (lesson 06's policy,
:mod:`shared.retry_policy`) up to ``max_retries`` times, waiting
``min_backoff`` to ``max_backoff`` ms between attempts; a message Dramatiq
gives up on lands in the dead letters, where :meth:`DramatiqMode.dead_letters`
lists it and :meth:`DramatiqMode.requeue` sends it again (:mod:`.dead_letters`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import psutil
from dramatiq import Message

from shared.job import Job
from shared.modes.base import POLL_SECONDS, Closed, Runner
from shared.modes.dramatiq import dead_letters as letters
from shared.modes.dramatiq import metrics
from shared.modes.dramatiq.broker import (QUEUES, BrokerConfig, delete_namespace, job_message,
                                          make_broker, queue_of)
from shared.modes.dramatiq.outbox import OutboxRelay
from shared.modes.dramatiq.shedding import Shedding
from shared.modes.dramatiq.status import StoreStatus
from shared.modes.dramatiq.workers import Supervisor, log_folder, remove_folder
from shared.retry_policy import EMAIL_MAX_BACKOFF, EMAIL_MAX_RETRIES, EMAIL_MIN_BACKOFF

log = logging.getLogger(__name__)

MAINTENANCE_CHANCE = 50_000  # per million calls, 1 in 20: an idle consumer of the queue (one call per nap,
# 75 ms on average at the mode's 100 ms cap) draws it after about 20 naps, ~1.5 s on average, once the
# dead worker's heartbeat is older than heartbeat_timeout; a busy queue's consumers draw it sooner
EMAIL_THREADS = 2  # the email group: one process, a couple of threads
READY_SECONDS = 30.0


class DramatiqMode(Runner):
    """Dramatiq on Redis: welcome emails and avatars on their own queues and worker groups."""

    name = "dramatiq"
    needs = frozenset({"redis", "worker"})
    #: avatar worker processes and threads per process; the idle poll cap (ms); how long a
    #: silent worker may hold its messages (ms); the email's retries and their backoff (ms)
    options = {"workers": 2, "threads": 4, "worker_timeout": 100, "heartbeat_timeout": 5_000,
               "max_retries": EMAIL_MAX_RETRIES,
               "min_backoff": EMAIL_MIN_BACKOFF, "max_backoff": EMAIL_MAX_BACKOFF,
               "outbox": 0,
               "metrics": 0,  # metrics: 1 = Prometheus on 127.0.0.1, one port per group (lesson 07)
               # lesson 07: refuse signups past this many seconds of queued work (0: never),
               # and the worker groups' CPU priority (0: the web's, up to 19: the lowest)
               "max_backlog_seconds": 0, "nice": 0}
    _least = {"max_retries": 0, "outbox": 0, "metrics": 0, "max_backlog_seconds": 0,
              "nice": 0}  # every other option: at least 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._check_config()
        c = self.config
        self.broker_config = BrokerConfig.fresh(
            heartbeat_timeout=c["heartbeat_timeout"], maintenance_chance=MAINTENANCE_CHANCE,
            email_max_retries=c["max_retries"], email_min_backoff=c["min_backoff"],
            email_max_backoff=c["max_backoff"])
        self.broker = make_broker(self.settings.redis_url, self.broker_config)
        self.results = self.broker.get_results_backend()  # the one make_broker attached
        self.status_writer = StoreStatus(self.store)
        #: also called with the line logged when a group is restarted (e.g. ``print``)
        self.announce: Callable[[str], None] | None = None
        self._requeued: set[str] = set()
        self._folder = log_folder()
        group = metrics.group_factory(c["metrics"], self._folder)  # lesson 07
        self.groups = [
            group("email", (queue_of("welcome_email"),), 1, EMAIL_THREADS, self._folder),
            group("avatars", (queue_of("avatar"),), c["workers"], c["threads"],
                        self._folder)]
        env = {**os.environ, **self.settings.to_env(), **self.broker_config.to_env(),
               "dramatiq_worker_timeout": str(c["worker_timeout"]), "PYTHONUNBUFFERED": "1"}
        self.shedding = Shedding(self.store.path, c["max_backlog_seconds"])  # lesson 07
        for each in self.groups:
            each.nice = c["nice"]  # lesson 07: applied when the group starts, and restarts
        self.supervisor = Supervisor(self.groups, env, self._say)
        #: outbox=1 (lesson 07): a signup writes its jobs to the outbox in its own transaction,
        #: and this relay sends them, so a signup never waits for, nor is lost to, a down Redis
        self.relay = (OutboxRelay(self.store, self.submit).start() if c["outbox"] else None)

    @property
    def uses_outbox(self) -> bool:
        """Whether the app writes a signup's jobs to the outbox (the relay sends them)."""
        return self.relay is not None

    def _check_config(self) -> None:
        for option, value in self.config.items():
            least = self._least.get(option, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"the dramatiq mode's option {option} must be a whole number "
                                 f">= {least}, got {value!r}")
        if self.config["outbox"] > 1:
            raise ValueError(f"the dramatiq mode's option outbox must be 0 or 1, "
                             f"got {self.config['outbox']!r}")
        if self.config["nice"] > 19:
            raise ValueError(f"the dramatiq mode's option nice must be 0 to 19, "
                             f"got {self.config['nice']!r}")
        if self.config["max_backoff"] < self.config["min_backoff"]:
            raise ValueError(f"the dramatiq mode's option max_backoff ({self.config['max_backoff']}"
                             f" ms) must be >= min_backoff ({self.config['min_backoff']} ms)")

    def describe(self) -> str:
        """The banner line: both groups' commands and process ids (waits for them to be ready)."""
        try:
            self.wait_ready(READY_SECONDS)
        except (TimeoutError, RuntimeError):
            pass  # describe what there is
        c = self.config
        return ("Dramatiq on Redis: welcome emails have their own queue and worker group, so "
                "they never wait behind avatars: " +
                " and ".join(group.describe() for group in self.groups) +
                f"; the email retries transient errors up to {c['max_retries']} times "
                f"(backoff {c['min_backoff']}-{c['max_backoff']} ms); "
                f"{self.shedding.describe()}; "
                + (f"worker groups at nice {c['nice']}; " if c["nice"] else "") +
                f"namespace {self.broker_config.namespace}" +
                ("; outbox on: a relay sends each signup's jobs after its commit"
                 if self.relay is not None else ""))

    # -- jobs ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Send the job's message to its kind's queue in Redis; that kind's group picks it up."""
        self.broker.enqueue(job_message(job))

    def admit(self) -> None:
        """Load shedding (lesson 07, :mod:`.shedding`): ``QueueFull`` while the backlog is past
        its bound. The app asks before it writes the signup, so a refused signup commits nothing
        (with the outbox on, the relay could otherwise send a refused signup's jobs)."""
        self.shedding.check()

    def submit_all(self, jobs: list[Job]) -> None:
        """Send a signup's jobs; with the outbox on, they are in the outbox: wake the relay."""
        if self.relay is not None:
            self.relay.wake()
        else:
            super().submit_all(jobs)

    def result(self, job_id: str, *, timeout: float = 10.0) -> dict:
        """The value the job's actor returned, from the Results backend in Redis.

        Waits up to ``timeout`` seconds; ``ResultTimeout`` after that, and
        ``ResultFailure`` if the job failed.
        """
        status = self.store.job(job_id)
        if status is None:
            raise KeyError(f"no job with id {job_id!r}")
        message: Message[Any] = Message(queue_name=queue_of(status.kind), actor_name=status.kind, args=(),
                          kwargs={}, options={}, message_id=job_id)
        return self.results.get_result(message, block=True, timeout=int(timeout * 1000))

    def wait(self, timeout: float = 30.0, progress: bool = False) -> bool:
        """Wait until every job so far, and every requeued one, has finished; see
        :meth:`Runner.wait`.

        A job waiting for its next attempt is not finished. Without
        ``progress`` this never imports the progress bar (tqdm warns on
        stderr in a notebook without ipywidgets).
        """
        deadline = time.monotonic() + timeout
        if progress and not super().wait(timeout, progress):
            return False
        while True:
            newest, checked = self.store.last_seq(), set(self._requeued)  # before the check
            finished, total = self.store.progress_since(self._bookmark)
            requeued = [job for job in map(self.store.job, sorted(checked))
                        if job is not None and job.status in ("queued", "running")]
            if finished == total and not requeued:
                self._bookmark = newest  # a job added during the check is still ahead
                self._requeued -= checked
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)

    # -- dead letters --------------------------------------------------------

    def dead_letters(self) -> list[letters.DeadLetter]:
        """The jobs' messages Dramatiq gave up on, from every queue, oldest death first."""
        found = [letter for queue in QUEUES.values()
                 for letter in letters.dead_letters(self.broker, queue)]
        return sorted(found, key=lambda letter: letter.died_at)

    def requeue(self, letter: letters.DeadLetter) -> str:
        """Send a dead job again with fresh retries (fix its cause first); returns the job id.

        Once the message is back on its queue the job turns from ``failed`` to
        ``queued``, unless a worker has started it meanwhile (whose ``running``
        or ``done`` then stands). :class:`~shared.modes.dramatiq.dead_letters.NotADeadLetter`
        if it was requeued already: then its status is left as it was.
        """
        job_id = letter.message_id
        before = self.store.job(job_id)
        letters.requeue(self.broker, letter)
        if before is not None:
            self.store.mark_requeued(job_id, before.attempts)
        self._requeued.add(job_id)
        return job_id

    # -- the worker groups ---------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The process ids of the groups' main processes (one changes when its group restarts)."""
        return [group.pid for group in self.groups]

    @property
    def restarts(self) -> int:
        """How many times a group was started again, all groups together."""
        return self.supervisor.restarts

    @property
    def metrics_urls(self) -> dict[str, str]:
        """Each group's Prometheus address when the ``metrics`` option is on (lesson 07), else {}."""
        return metrics.metrics_urls(self.groups)

    def command_lines(self) -> list[str]:
        """The commands as you would type them, one per group."""
        return [group.command_line() for group in self.groups]

    def worker_processes(self) -> list[psutil.Process]:
        """The groups' worker processes (not their main processes), oldest first."""
        return sorted((p for g in self.groups for p in g.worker_processes()),
                      key=lambda p: p.create_time())

    def wait_busy_worker(self, port: int, timeout: float = 10.0) -> psutil.Process:
        """A worker process with a connection open to ``port`` (say, mid-email), once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            for process in self.worker_processes():
                try:
                    if any(c.raddr and c.raddr.port == port for c in process.net_connections()):
                        return process
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker process talked to port {port} within {timeout:g} s")
            time.sleep(0.01)

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        """Wait until every worker process of every group is consuming."""
        self.supervisor.wait_ready(timeout)

    def wait_restarts(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the groups were restarted ``count`` times in all."""
        self.supervisor.wait_restarts(count, timeout)

    def log_text(self, *, current: bool = False) -> str:
        """What the worker groups logged (``current``: only the groups running now)."""
        return "".join(group.log_text(current=current) for group in self.groups)

    def _say(self, line: str) -> None:
        """Tell whoever listens: the ``shared.modes`` log (``make serve`` prints it),
        and ``announce`` if set (a notebook sets ``print``)."""
        log.info(line)
        if self.announce is not None:
            self.announce(line)

    # -- stopping ------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> Closed:
        """Let the queued jobs finish (up to ``timeout`` s), stop the groups, delete the run's keys."""
        deadline = time.monotonic() + timeout
        self.wait(timeout)
        if self.relay is not None:
            self.relay.stop(max(0.5, deadline - time.monotonic()))
        self.supervisor.stop(max(0.5, deadline - time.monotonic()))
        counts = self.store.counts()
        delete_namespace(self.settings.redis_url, self.broker_config.namespace)
        self.broker.close()
        self.shedding.close()
        remove_folder(self._folder)
        return Closed(unfinished=counts["queued"] + counts["running"])
