"""``dramatiq``: Dramatiq actors on Redis, run by a ``dramatiq`` worker group (lesson 04).

The web app sends one message per job to Redis; the message id is the job
id. A separate group of worker processes, started exactly as you would in
production (``dramatiq shared.actors -p WORKERS -t THREADS``), runs them and
records their status in the store, where ``GET /jobs/<id>`` reads it.

The runner supervises the group. Dramatiq's main process shuts the whole
group down when one worker process dies (say, SIGKILLed by the OOM killer),
so the runner starts it again and says so, the way systemd or Kubernetes
would. Messages the dead worker had taken come back to the queue after the
broker's heartbeat timeout: none is lost.
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

from shared.dramatiq_setup import (QUEUE, BrokerConfig, delete_namespace, job_message, make_broker,
                                   results_backend)
from shared.job import Job
from shared.modes.base import POLL_SECONDS, Closed, Runner
from shared.processes import start_child, stop_tree

log = logging.getLogger(__name__)

ACTORS_MODULE = "shared.actors"
SHUTDOWN_MS = 5_000  # how long a worker may finish its jobs when told to stop
MAINTENANCE_CHANCE = 50_000  # per million calls: a dead worker is noticed within a second
READY_LINE = "Worker process is ready for action."
SUPERVISE_SECONDS = 0.1
CRASH_LOOP_SECONDS = 2.0  # a group that dies sooner than this is restarted after a pause


class DramatiqActors(Runner):
    """Dramatiq on Redis: messages to a `dramatiq shared.actors` worker group."""

    name = "dramatiq"
    needs = frozenset({"redis", "worker"})
    #: worker processes, threads per process, the idle poll cap (ms) and how
    #: long a silent worker may hold its messages (ms)
    options = {"workers": 2, "threads": 4, "worker_timeout": 100, "heartbeat_timeout": 5_000}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for option, value in self.config.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"the dramatiq mode's option {option} must be a whole number "
                                 f">= 1, got {value!r}")
        self.broker_config = BrokerConfig.fresh(heartbeat_timeout=self.config["heartbeat_timeout"],
                                                maintenance_chance=MAINTENANCE_CHANCE)
        self.broker = make_broker(self.settings.redis_url, self.broker_config)
        self.results = results_backend(self.settings.redis_url, self.broker_config)
        self.restarts = 0
        #: also called with the line logged when the group is restarted (e.g. ``print``)
        self.announce: Callable[[str], None] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="dramatiq-workers-"))
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._process = self._start_group()
        self._supervisor = threading.Thread(target=self._supervise, name="dramatiq-supervisor",
                                            daemon=True)
        self._supervisor.start()

    def describe(self) -> str:
        return (f"Dramatiq on Redis: `dramatiq {ACTORS_MODULE} -p {self.config['workers']} "
                f"-t {self.config['threads']}` (worker group pid {self.pid}), "
                f"namespace {self.broker_config.namespace}")

    # -- jobs ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Send the job's message to Redis; a worker process picks it up."""
        self.broker.enqueue(job_message(job))

    def result(self, job_id: str, *, timeout: float = 10.0) -> dict:
        """The value the job's actor returned, from the Results backend in Redis.

        Waits up to ``timeout`` seconds; ``ResultTimeout`` after that, and
        ``ResultFailure`` if the job failed.
        """
        status = self.store.job(job_id)
        if status is None:
            raise KeyError(f"no job with id {job_id!r}")
        message = Message(queue_name=QUEUE, actor_name=status.kind, args=(), kwargs={},
                          options={}, message_id=job_id)
        return self.results.get_result(message, block=True, timeout=int(timeout * 1000))

    def wait(self, timeout: float = 30.0, progress: bool = False) -> bool:
        """Wait until every job so far has finished; see :meth:`Runner.wait`.

        Without ``progress`` this never imports the progress bar (tqdm warns
        on stderr in a notebook without ipywidgets).
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

    # -- the worker group ----------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id of the group's main process (it changes on a restart)."""
        return self._process.pid

    def command(self) -> list[str]:
        """The command that starts the worker group."""
        return [sys.executable, "-m", "dramatiq", ACTORS_MODULE,
                "-p", str(self.config["workers"]), "-t", str(self.config["threads"]),
                "--worker-shutdown-timeout", str(SHUTDOWN_MS)]

    def command_line(self) -> str:
        """The command as you would type it (``dramatiq shared.actors -p 2 -t 4 ...``)."""
        return " ".join(["dramatiq", *self.command()[3:]])

    def worker_processes(self) -> list[psutil.Process]:
        """The group's worker processes (not its main process), oldest first."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        return sorted((p for p in children if _runs_worker(p)), key=lambda p: p.create_time())

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
        """Wait until every worker process of the current group is consuming."""
        deadline = time.monotonic() + timeout
        while self.log_text(current=True).count(READY_LINE) < self.config["workers"]:
            if self._process.poll() is not None and not self._restarting():
                raise RuntimeError(f"the dramatiq worker group exited with code "
                                   f"{self._process.returncode}; its log:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dramatiq workers were not ready after {timeout:g} s; "
                                   f"their log:\n{self.log_text()}")
            time.sleep(0.05)

    def wait_restarts(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the group was restarted ``count`` times in all."""
        deadline = time.monotonic() + timeout
        while self.restarts < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g} s for restart number {count} of the "
                                   f"worker group; it was restarted {self.restarts} time(s)")
            time.sleep(0.05)

    def log_text(self, *, current: bool = False) -> str:
        """What the worker groups logged (``current``: only the group running now)."""
        paths = [self._log_path(self.restarts)] if current else \
            [self._log_path(n) for n in range(self.restarts + 1)]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def _log_path(self, number: int) -> Path:
        return self._folder / f"group-{number}.log"

    def _start_group(self) -> subprocess.Popen:
        env = {**os.environ, **self.settings.to_env(), **self.broker_config.to_env(),
               "dramatiq_worker_timeout": str(self.config["worker_timeout"]),
               "PYTHONUNBUFFERED": "1"}
        self._started_at = time.monotonic()
        with open(self._log_path(self.restarts), "wb") as output:
            return start_child(self.command(), stdout=output, stderr=subprocess.STDOUT, env=env)

    def _log_tail(self, lines: int = 10) -> str:
        return "\n".join(self.log_text(current=True).splitlines()[-lines:])

    def _restarting(self) -> bool:
        return not self._closing.is_set()

    def _supervise(self) -> None:
        """Start the group again whenever it exits, until close()."""
        while not self._closing.wait(SUPERVISE_SECONDS):
            with self._lock:
                if self._closing.is_set() or self._process.poll() is None:
                    continue
                code = self._process.returncode
                stop_tree(self._process, timeout=2.0)  # reap it, and anything it left
                lived = time.monotonic() - self._started_at
                if lived < CRASH_LOOP_SECONDS:  # it cannot even start: do not spin
                    self._say(f"dramatiq worker group exited (code {code}) after "
                              f"{lived:.1f} s; starting it again in {CRASH_LOOP_SECONDS:g} s. "
                              f"Its log ends with:\n{self._log_tail()}")
                    if self._closing.wait(CRASH_LOOP_SECONDS):
                        return
                else:
                    self._say(f"dramatiq worker group exited (code {code}); starting it again")
                self.restarts += 1
                self._process = self._start_group()

    def _say(self, line: str) -> None:
        """Tell whoever listens: the ``shared.modes`` log (``make serve`` prints it),
        and ``announce`` if set (a notebook sets ``print``)."""
        log.info(line)
        if self.announce is not None:
            self.announce(line)

    # -- stopping ------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> Closed:
        """Let the queued jobs finish (up to ``timeout`` s), stop the group, delete the run's keys."""
        deadline = time.monotonic() + timeout
        self.wait(timeout)
        self._closing.set()
        self._supervisor.join(timeout=5)
        with self._lock:
            process = self._process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the main process tells its workers
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
