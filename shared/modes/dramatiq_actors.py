"""``dramatiq``: Dramatiq actors on Redis, run by ``dramatiq`` worker groups (lessons 04-06).

The web app sends one message per job to Redis; the message id is the job
id. Worker processes, started exactly as you would in production
(``dramatiq shared.actors --queues ... -p ... -t ...``), run them and record
their status in the store, where ``GET /jobs/<id>`` reads it.

Welcome emails go ahead of avatars the way lesson 05 recommends: each kind
has its own queue, read by its own worker group, so an email never waits
behind a backlog of avatars. The email actor retries transient errors with
lesson 06's policy (see :mod:`shared.actors`).

The runner supervises the groups. Dramatiq's main process shuts its whole
group down when one worker process dies (say, SIGKILLed by the OOM killer),
so the runner starts that group again and says so, the way systemd or
Kubernetes would. Messages the dead worker had taken come back to the queue
after the broker's heartbeat timeout: none is lost.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
from dramatiq import Message
from dramatiq.results import ResultMissing, ResultTimeout

from shared.modes.dramatiq.broker import (BrokerConfig, delete_namespace, job_message, make_broker,
                                   queue_of, results_backend)
from shared.job import Job
from shared.modes.base import POLL_SECONDS, Closed, Runner
from shared.processes import start_child, stop_tree
from shared.retries.policy import EMAIL_MAX_RETRIES

log = logging.getLogger(__name__)

ACTORS_MODULE = "shared.actors"
SHUTDOWN_MS = 5_000  # how long a worker may finish its jobs when told to stop
MAINTENANCE_CHANCE = 50_000  # per million calls: a dead worker is noticed within a second
READY_LINE = "Worker process is ready for action."
SUPERVISE_SECONDS = 0.1
CRASH_LOOP_SECONDS = 2.0  # a group that dies sooner than this is restarted after a pause


EMAIL_THREADS = 2  # the email group: one process, a couple of threads


class WorkerGroup:
    """One ``dramatiq`` command (a main process and its worker processes) reading some queues."""

    def __init__(self, name: str, queues: tuple[str, ...], processes: int, threads: int,
                 folder: Path) -> None:
        self.name, self.queues, self.processes, self.threads = name, queues, processes, threads
        self.restarts = 0
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self._folder = folder

    def command(self) -> list[str]:
        """The command that starts the group."""
        return [sys.executable, "-m", "dramatiq", ACTORS_MODULE, "--queues", *self.queues,
                "-p", str(self.processes), "-t", str(self.threads),
                "--worker-shutdown-timeout", str(SHUTDOWN_MS)]

    def command_line(self) -> str:
        """The command as you would type it (``dramatiq shared.actors --queues email ...``)."""
        return " ".join(["dramatiq", *self.command()[3:]])

    def start(self, env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        with open(self.log_path(self.restarts), "wb") as output:
            self.process = start_child(self.command(), stdout=output, stderr=subprocess.STDOUT,
                                       env=env)

    def log_path(self, number: int) -> Path:
        return self._folder / f"{self.name}-{number}.log"

    def log_text(self, *, current: bool = False) -> str:
        numbers = [self.restarts] if current else range(self.restarts + 1)
        paths = [self.log_path(n) for n in numbers]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def ready(self) -> bool:
        return self.log_text(current=True).count(READY_LINE) >= self.processes

    def worker_processes(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if _runs_worker(p)]


class DramatiqActors(Runner):
    """Dramatiq on Redis: welcome emails and avatars on their own queues and worker groups."""

    name = "dramatiq"
    needs = frozenset({"redis", "worker"})
    #: avatar worker processes and threads per process, the idle poll cap (ms), how
    #: long a silent worker may hold its messages (ms), and the email's retries
    options = {"workers": 2, "threads": 4, "worker_timeout": 100, "heartbeat_timeout": 5_000,
               "email_max_retries": EMAIL_MAX_RETRIES}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for option, value in self.config.items():
            least = 0 if option == "email_max_retries" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"the dramatiq mode's option {option} must be a whole number "
                                 f">= {least}, got {value!r}")
        self.broker_config = BrokerConfig.fresh(heartbeat_timeout=self.config["heartbeat_timeout"],
                                                maintenance_chance=MAINTENANCE_CHANCE,
                                                email_max_retries=self.config["email_max_retries"])
        self.broker = make_broker(self.settings.redis_url, self.broker_config)
        self.results = results_backend(self.settings.redis_url, self.broker_config)
        #: also called with the line logged when a group is restarted (e.g. ``print``)
        self.announce: Callable[[str], None] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="dramatiq-workers-"))
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self.groups = [
            WorkerGroup("email", (queue_of("welcome_email"),), 1, EMAIL_THREADS, self._folder),
            WorkerGroup("avatars", (queue_of("avatar"),), self.config["workers"],
                        self.config["threads"], self._folder)]
        self._env = {**os.environ, **self.settings.to_env(), **self.broker_config.to_env(),
                     "dramatiq_worker_timeout": str(self.config["worker_timeout"]),
                     "PYTHONUNBUFFERED": "1"}
        for group in self.groups:
            group.start(self._env)
        self._supervisor = threading.Thread(target=self._supervise, name="dramatiq-supervisor",
                                            daemon=True)
        self._supervisor.start()

    def describe(self) -> str:
        return ("Dramatiq on Redis: welcome emails have their own queue and worker group, so "
                "they never wait behind avatars (" +
                " and ".join(f"`{g.command_line().split(' --worker')[0]}`" for g in self.groups) +
                f"); the email retries transient errors up to "
                f"{self.config['email_max_retries']} times; namespace "
                f"{self.broker_config.namespace}")

    # -- jobs ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Send the job's message to its kind's queue in Redis; that kind's group picks it up."""
        self.broker.enqueue(job_message(job))

    def result(self, job_id: str, *, timeout: float = 10.0) -> dict:
        """The value the job's actor returned, from the Results backend in Redis.

        Waits up to ``timeout`` seconds; ``ResultTimeout`` after that, and
        ``ResultFailure`` if the job failed.
        """
        status = self.store.job(job_id)
        if status is None:
            raise KeyError(f"no job with id {job_id!r}")
        message = Message(queue_name=queue_of(status.kind), actor_name=status.kind, args=(),
                          kwargs={}, options={}, message_id=job_id)
        return self.results.get_result(message, block=True, timeout=int(timeout * 1000))

    def wait(self, timeout: float = 30.0, progress: bool = False) -> bool:
        """Wait until every job so far has finished; see :meth:`Runner.wait`.

        A job waiting for its next attempt is not finished. Without
        ``progress`` this never imports the progress bar (tqdm warns on
        stderr in a notebook without ipywidgets).
        """
        if progress:
            return super().wait(timeout, progress)
        deadline = time.monotonic() + timeout
        while True:
            finished, total = self.store.progress_since(self._bookmark)
            if finished == total:
                self._bookmark = self.store.last_seq()
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)

    # -- the worker groups ---------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The process ids of the groups' main processes (one changes when its group restarts)."""
        return [group.process.pid for group in self.groups]

    @property
    def restarts(self) -> int:
        """How many times a group was started again, all groups together."""
        return sum(group.restarts for group in self.groups)

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

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker process of every group is consuming."""
        deadline = time.monotonic() + timeout
        while not all(group.ready() for group in self.groups):
            for group in self.groups:
                if group.process.poll() is not None and not self._restarting():
                    raise RuntimeError(f"the dramatiq {group.name} worker group exited with code "
                                       f"{group.process.returncode}; its log:\n{group.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dramatiq workers were not ready after {timeout:g} s; "
                                   f"their log:\n{self.log_text()}")
            time.sleep(0.05)

    def wait_restarts(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the groups were restarted ``count`` times in all."""
        deadline = time.monotonic() + timeout
        while self.restarts < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g} s for restart number {count} of a "
                                   f"worker group; they were restarted {self.restarts} time(s)")
            time.sleep(0.05)

    def log_text(self, *, current: bool = False) -> str:
        """What the worker groups logged (``current``: only the groups running now)."""
        return "".join(group.log_text(current=current) for group in self.groups)

    def _restarting(self) -> bool:
        return not self._closing.is_set()

    def _supervise(self) -> None:
        """Start a group again whenever it exits, until close()."""
        while not self._closing.wait(SUPERVISE_SECONDS):
            for group in self.groups:
                with self._lock:
                    if self._closing.is_set() or group.process.poll() is None:
                        continue
                    code = group.process.returncode
                    stop_tree(group.process, timeout=2.0)  # reap it, and anything it left
                    lived = time.monotonic() - group.started_at
                    if lived < CRASH_LOOP_SECONDS:  # it cannot even start: do not spin
                        tail = "\n".join(group.log_text(current=True).splitlines()[-10:])
                        self._say(f"dramatiq worker group exited (code {code}) after "
                                  f"{lived:.1f} s; starting it again in {CRASH_LOOP_SECONDS:g} s "
                                  f"(queues: {', '.join(group.queues)}). Its log ends with:\n{tail}")
                        if self._closing.wait(CRASH_LOOP_SECONDS):
                            return
                    else:
                        self._say(f"dramatiq worker group exited (code {code}); starting it "
                                  f"again (queues: {', '.join(group.queues)})")
                    group.restarts += 1
                    group.start(self._env)

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
        self._closing.set()
        self._supervisor.join(timeout=5)
        with self._lock:
            processes = [group.process for group in self.groups]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the main process tells its workers
        for process in processes:
            try:
                process.wait(max(0.5, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            stop_tree(process, timeout=2.0)
        counts = self.store.counts()
        delete_namespace(self.settings.redis_url, self.broker_config.namespace)
        self.broker.close()
        for path in self._folder.glob("*"):
            path.unlink(missing_ok=True)
        self._folder.rmdir()
        return Closed(unfinished=counts["queued"] + counts["running"])


def _runs_worker(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
