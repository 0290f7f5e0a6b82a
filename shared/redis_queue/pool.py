"""Worker processes: start them, kill one, stop them all.

Each worker is a real ``python -m shared.redis_queue`` process, a
:class:`shared.processes.LoggedChild`: it dies with the process that started
it (even a SIGKILLed Jupyter kernel), so nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from shared.processes import LoggedChild
from shared.redis_queue.queue import RedisQueue
from shared.settings import Settings

STYLES = ("naive", "reliable")


class WorkerProcess(LoggedChild):
    """One worker process: ``name`` is its name in the queue (``w1``), ``log`` its output."""

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<worker {self.name} pid {self.pid} {state}>"


class WorkerPool:
    """The worker processes of one queue, all of one ``style``."""

    def __init__(self, queue: RedisQueue, settings: Settings, *, style: str = "reliable",
                 heartbeat_ttl: float = 5.0, idempotent: bool = False) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
        if not settings.store_path or not settings.redis_url:
            raise ValueError("the workers need settings with a store_path and a redis_url")
        if not heartbeat_ttl > 0:
            raise ValueError(f"heartbeat_ttl must be > 0 seconds, got {heartbeat_ttl!r}")
        self.queue, self.settings, self.style = queue, settings, style
        self.heartbeat_ttl, self.idempotent = heartbeat_ttl, idempotent
        self.workers: list[WorkerProcess] = []
        self._folder = Path(tempfile.mkdtemp(prefix="defer-workers-"))
        self._started = 0

    def start(self, n: int = 1, *, timeout: float = 30.0) -> list[WorkerProcess]:
        """Start ``n`` more workers. Reliable ones are ready (beating) on return."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a whole number >= 1, got {n!r}")
        new = [self._start_one() for _ in range(n)]
        if self.style == "reliable":
            self._wait_ready(new, timeout)
        return new

    def _start_one(self) -> WorkerProcess:
        self._started += 1
        name = f"w{self._started}"
        command = [sys.executable, "-m", "shared.redis_queue", "--prefix", self.queue.prefix,
                   "--name", name, "--style", self.style,
                   "--heartbeat-ttl", str(self.heartbeat_ttl)]
        if self.idempotent:
            command.append("--idempotent")
        worker = WorkerProcess(command, name=name, folder=self._folder,
                               env={**os.environ, **self.settings.to_env()})
        self.workers.append(worker)
        return worker

    def _wait_ready(self, workers: list[WorkerProcess], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:  # gives up at once, with its log, if the worker exits
                worker.wait_until(partial(self.queue.alive, worker.name),
                                  max(0.0, deadline - time.monotonic()), "its first heartbeat")
            except TimeoutError:
                raise TimeoutError(f"worker {worker.name} sent no heartbeat within {timeout:g} s: "
                                   f"{self.log_tail(worker)}") from None

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running]

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.running]

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL ``worker``, as a crash or the OOM killer would, and reap it."""
        if worker.running:
            os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every worker (each finishes its job in hand), SIGKILL after ``timeout``."""
        for worker in self.running:
            worker.process.terminate()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            try:  # one SIGTERM each, then patience
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            worker.stop(timeout=1.0)  # what is left, or what it started

    def remove(self) -> None:
        """Stop every worker and delete their logs."""
        self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)

    def log_tail(self, worker: WorkerProcess, lines: int = 5) -> str:
        """The last ``lines`` lines of ``worker``'s log, on one line."""
        text = worker.log_text().strip().splitlines()
        return " | ".join(text[-lines:]) or "(its log is empty)"

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<WorkerPool {self.style} {len(self.running)} running of {len(self.workers)}>"
