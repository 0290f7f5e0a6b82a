"""Dramatiq worker groups, started as in production and restarted when they die.

A :class:`WorkerGroup` is one ``dramatiq shared.modes.dramatiq.actors
--queues ... -p ... -t ...`` command: a main process that forks worker
processes, each with its threads. It runs as a
:class:`shared.processes.LoggedChild`, so it dies with this process and
its output goes to a log.

Dramatiq's main process shuts its whole group down when one worker process
dies (say, SIGKILLed by the OOM killer), and leaves restarting to whatever
started it: systemd, Kubernetes, supervisord. :class:`Supervisor` plays that
part: it starts a group again whenever it exits, and says so. Messages the
dead worker had taken come back to the queue after the broker's heartbeat
timeout: none is lost.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Callable

import psutil

from shared.modes.dramatiq.niceness import lower_priority
from shared.processes import LoggedChild, alive, wait_until

ACTORS_MODULE = "shared.modes.dramatiq.actors"
SHUTDOWN_MS = 5_000  # how long a worker may finish its jobs when told to stop
READY_LINE = "Worker process is ready for action."
SUPERVISE_SECONDS = 0.1
#: A group that dies sooner than this, before its workers were ready, is restarted after a
#: pause: it cannot start, and restarting it at once would spin
CRASH_LOOP_SECONDS = 2.0


class WorkerGroup:
    """One ``dramatiq`` command (a main process and its worker processes) reading some queues.

    Each start (the first, and every restart) has a log of its own in ``folder``.
    ``shutdown_ms`` is ``--worker-shutdown-timeout``: how long each worker process,
    told to stop, waits for its running jobs before it exits without them.
    """

    def __init__(self, name: str, queues: tuple[str, ...], processes: int, threads: int,
                 folder: Path, *, shutdown_ms: int = SHUTDOWN_MS) -> None:
        self.name, self.queues, self.processes, self.threads = name, queues, processes, threads
        self.shutdown_ms = shutdown_ms
        self.restarts = 0
        self.nice = 0  # CPU priority of every start, 0 to 19 (lesson 07: lower_priority)
        self.started_at = 0.0
        self.child: LoggedChild | None = None
        self._folder = folder
        self._runs: list[LoggedChild] = []

    def command(self) -> list[str]:
        """The command that starts the group."""
        return [sys.executable, "-m", "dramatiq", ACTORS_MODULE, "--queues", *self.queues,
                "-p", str(self.processes), "-t", str(self.threads),
                "--worker-shutdown-timeout", str(self.shutdown_ms)]

    def command_line(self) -> str:
        """The command as you would type it
        (``dramatiq shared.modes.dramatiq.actors --queues email -p 1 -t 2 ...``)."""
        return " ".join(["dramatiq", *self.command()[3:]])

    def start(self, env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.child = LoggedChild(self.command(), name=f"dramatiq-{self.name}-{len(self._runs)}",
                                 env=env, folder=self._folder)
        lower_priority(self.child.pid, self.nice)  # before it forks its workers: they inherit it
        self._runs.append(self.child)

    @property
    def current(self) -> LoggedChild:
        """The current run's main process (``RuntimeError`` before :meth:`start`)."""
        if self.child is None:
            raise RuntimeError(f"the {self.name} worker group has not been started")
        return self.child

    @property
    def pid(self) -> int:
        """The main process's id (it changes when the group restarts)."""
        return self.current.pid

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    def log_text(self, *, current: bool = False) -> str:
        """What the group logged: every run so far, or only the ``current`` one."""
        runs = self._runs[-1:] if current else self._runs
        return "".join(run.log_text() for run in runs)

    def ready(self) -> bool:
        """Every worker process of the current run is consuming."""
        return self.log_text(current=True).count(READY_LINE) >= self.processes

    def worker_processes(self) -> list[psutil.Process]:
        """The running worker processes of the current run.

        Dramatiq's CLI forks them from its main process on Python < 3.14, but from
        3.14 it starts them through a forkserver (``dramatiq/cli.py``), so they are
        grandchildren there: take every descendant that has no children of its own
        (the forkserver has the workers), leaving out multiprocessing's helpers.
        """
        try:
            descendants = [p for p in psutil.Process(self.pid).children(recursive=True) if alive(p)]
        except psutil.NoSuchProcess:
            return []
        parents = {_ppid(p) for p in descendants}
        return [p for p in descendants if p.pid not in parents and not _helper(p)]

    def describe(self) -> str:
        """``dramatiq ... --queues email -p 1 -t 2`` (pid 41, workers 43)."""
        workers = ", ".join(str(p.pid) for p in self.worker_processes()) or "starting"
        return f"`{self.command_line()}` (pid {self.pid}, workers {workers})"

    def terminate(self) -> None:
        """Ask the main process to stop; it tells its workers to finish their jobs."""
        if self.running:
            self.current.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a terminated group, then stop whatever is left."""
        try:
            self.current.process.wait(max(0.5, timeout))
        except subprocess.TimeoutExpired:
            pass
        self.current.stop(timeout=2.0)


class Supervisor:
    """Starts worker groups, and starts each again whenever it exits, until :meth:`stop`.

    ``say`` is called with a line whenever a group is restarted.
    """

    def __init__(self, groups: list[WorkerGroup], env: dict[str, str],
                 say: Callable[[str], None]) -> None:
        self.groups, self._env, self._say = groups, env, say
        self._closing = threading.Event()
        self._lock = threading.Lock()
        for group in groups:
            group.start(env)
        self._thread = threading.Thread(target=self._supervise, name="dramatiq-supervisor",
                                        daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        """The environment every group's processes are started with (a copy)."""
        return dict(self._env)

    @property
    def restarts(self) -> int:
        """How many times a group was started again, all groups together."""
        return sum(group.restarts for group in self.groups)

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker process of every group is consuming."""
        try:
            wait_until(lambda: all(group.ready() for group in self.groups), timeout,
                       "every dramatiq worker process to be ready", problem=self._problem)
        except TimeoutError as exc:
            logs = "\n".join(f"{g.name}: {g.current.tail(10)}" for g in self.groups if not g.ready())
            raise TimeoutError(f"{exc}; the logs of the groups not ready end with:\n{logs}") from None

    def wait_restarts(self, count: int, timeout: float) -> None:
        """Wait until the groups were restarted ``count`` times in all."""
        wait_until(lambda: self.restarts >= count, timeout,
                   f"restart number {count} of a dramatiq worker group")

    def stop(self, timeout: float) -> None:
        """Stop supervising; ask every group to stop, wait up to ``timeout`` s, then force."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._thread.join(timeout=5)
        with self._lock:
            for group in self.groups:
                group.terminate()
            for group in self.groups:
                group.stop(deadline - time.monotonic())

    def _problem(self) -> str | None:
        """Why waiting for the groups is hopeless: one exited while nobody restarts it."""
        if not self._closing.is_set():
            return None
        for group in self.groups:
            if not group.running:
                return f"the dramatiq {group.name} worker group exited; its log:\n{group.log_text()}"
        return None

    def _supervise(self) -> None:
        while not self._closing.wait(SUPERVISE_SECONDS):
            for group in self.groups:
                with self._lock:
                    if self._closing.is_set() or group.running:
                        continue
                    code = group.current.returncode
                    was_ready = group.ready()  # it served, then died: restart it at once
                    group.current.stop(timeout=2.0)  # reap it, and anything it left
                    lived = time.monotonic() - group.started_at
                    queues = ", ".join(group.queues)
                    if lived < CRASH_LOOP_SECONDS and not was_ready:  # it cannot even start
                        self._say(f"dramatiq worker group exited (code {code}) after "
                                  f"{lived:.1f} s; starting it again in {CRASH_LOOP_SECONDS:g} s "
                                  f"(queues: {queues}). Its log ends with:\n{group.current.tail(10)}")
                        if self._closing.wait(CRASH_LOOP_SECONDS):
                            return
                    else:
                        self._say(f"dramatiq worker group exited (code {code}); starting it "
                                  f"again (queues: {queues})")
                    group.start(self._env)
                    group.restarts += 1  # after the start: a waiter then sees the new pid


def log_folder() -> Path:
    """A fresh folder for the groups' logs; remove it with :func:`remove_folder`."""
    return Path(tempfile.mkdtemp(prefix="dramatiq-workers-"))


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _ppid(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.NoSuchProcess:
        return None


def _helper(process: psutil.Process) -> bool:
    """multiprocessing's resource tracker, not a worker (a forkserver has the workers as children,
    and those are forked from it, with its command line: so that alone cannot tell them apart)."""
    try:
        command = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "multiprocessing.resource_tracker" in command


