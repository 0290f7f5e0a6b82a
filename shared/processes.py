"""Start child processes that die with their parent, and stop whole trees.

Tools for code that starts servers, workers or graders:

- :func:`start_child` starts a command in a process group of its own and,
  on Linux, asks the kernel to signal it when its parent dies, so even a
  SIGKILLed Jupyter kernel orphans nothing.
- :func:`stop_tree` stops a child, its process group and every descendant
  it started: SIGTERM first, SIGKILL after a timeout, then reaps.
- :func:`become_subreaper` and :func:`kill_descendants` let a process that
  only supervises (a grader) adopt what its descendants leave behind, even
  double-forked daemons in new sessions, and kill it all.

- :class:`LoggedChild` is one such child with its output in a log file:
  every worker and server starter in the course uses it.
- :func:`wait_until` is the one deadline loop: it polls a condition and, when
  time runs out, says what it was waiting for.

Linux-only kernel features (``prctl``) degrade to nothing elsewhere; the
psutil-based killing works on every platform psutil supports.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import psutil

__all__ = ["LoggedChild", "alive", "become_subreaper", "kill_descendants", "start_child", "stop_tree",
           "wait_until"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_SECONDS = 0.02

Stream = int | IO[Any] | None


def start_child(
    command: list[str],
    *,
    stdout: Stream = None,
    stderr: Stream = None,
    stdin: Stream = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    new_group: bool = True,
    die_signal: signal.Signals | int | None = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``command`` as a child that cannot outlive this process.

    ``new_group`` starts it in a new session (its own process group), so
    :func:`stop_tree` can signal the group and a Ctrl-C in a terminal does
    not reach it. On Linux the kernel sends ``die_signal`` to the child when
    this process dies (``None``: do not ask).

    The kernel sends that signal when the *thread* that started the child
    exits, not the process. So the child is started from the main thread, or
    else from one long-lived launcher thread; never from, say, a web request
    thread that ends a moment later and would take the child with it.
    """

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            close_fds=True,
            start_new_session=new_group,
            preexec_fn=_die_with_parent(die_signal),
        )

    if threading.current_thread() is threading.main_thread():
        child = launch()
    else:
        child = _launcher.submit(launch).result()
    if new_group:
        child._leads_group = True  # type: ignore[attr-defined]  # read by stop_tree
    return child


def wait_until(predicate: Callable[[], object], timeout: float, what: str, *,
               interval: float = POLL_SECONDS,
               problem: Callable[[], str | None] | None = None) -> None:
    """Poll ``predicate`` until it returns something true, for at most ``timeout`` s.

    Raises :class:`TimeoutError` naming ``what`` it waited for. ``problem``,
    if given, is asked on every poll for a reason to give up early (a child
    that exited, say): a non-empty answer raises :class:`RuntimeError` with it.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if problem is not None and (reason := problem()):
            raise RuntimeError(f"while waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class LoggedChild:
    """A child process (see :func:`start_child`) whose output goes to a log file.

    The log lives in a temporary folder of its own, removed by :meth:`stop`.
    ``name`` appears in every message, so a failure says which child it was.
    """

    def __init__(self, command: list[str], *, name: str, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None,
                 folder: Path | None = None) -> None:
        self.command, self.name = command, name
        self._own_folder = folder is None
        self.folder = folder if folder is not None else Path(
            tempfile.mkdtemp(prefix=f"defer-{_safe(name)}-"))
        self.log = self.folder / f"{_safe(name)}.log"
        with open(self.log, "wb") as output:
            self.process = start_child(command, stdout=output, stderr=subprocess.STDOUT,
                                       env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 8) -> str:
        """The last ``lines`` lines of the log, or a note that it is empty."""
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"

    def problem(self) -> str | None:
        """Why this child cannot be doing its work (it exited), or None."""
        if self.running:
            return None
        return f"{self.name} exited with code {self.returncode}; its log ends with:\n{self.tail()}"

    def wait_until(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """:func:`wait_until`, giving up at once (with the log's tail) if the child exits."""
        try:
            wait_until(predicate, timeout, f"{what} ({self.name})", problem=self.problem)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; its log ends with:\n{self.tail()}") from None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child and everything it started; remove its log folder if we made it."""
        stop_tree(self.process, timeout=timeout)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LoggedChild:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<{self.name} pid {self.pid} {state}>"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "child"


def stop_tree(process: subprocess.Popen[Any] | int, timeout: float = 5.0) -> None:
    """Stop ``process``, its process group and all its descendants.

    SIGTERM to all of them, up to ``timeout`` seconds for them to go, then
    SIGKILL for what is left, and reap ``process`` if it is our child. Safe
    to call twice, and for a process that is already gone.
    """
    pid = process if isinstance(process, int) else process.pid
    if pid in (os.getpid(), 0) or pid < 0:
        raise ValueError(f"stop_tree({pid}) would stop this process or its group")
    reaped = isinstance(process, subprocess.Popen) and process.poll() is not None
    if reaped:  # its pid may be reused: trust only what start_child recorded
        group = pid if getattr(process, "_leads_group", False) and pid != _our_group() else None
    else:
        group = _group_of(pid)
    targets = _members(group) + ([] if reaped else _tree(pid))
    _signal_all(targets, group, signal.SIGTERM)
    left = _wait_gone(targets, process, time.monotonic() + timeout)
    if left:
        _signal_all(left + _members(group), group, signal.SIGKILL)
        _wait_gone(left, process, time.monotonic() + max(timeout, 1.0))
    _reap(process)


def become_subreaper() -> bool:
    """Adopt the orphans of this process's descendants (Linux only).

    An orphan is then reparented to this process instead of to init, so
    :func:`kill_descendants` can find and reap it, even a double-forked
    daemon in a new session. Returns whether it worked. Meant for a process
    that only supervises: a Jupyter kernel must not do this, it would adopt
    orphans that have nothing to do with it.
    """
    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def kill_descendants(timeout: float = 1.0) -> int:
    """SIGKILL every descendant of this process, reap them, return how many.

    Children of a dying process are reparented to us (as a subreaper), so
    this looks again until none is left or ``timeout`` seconds passed.
    Every descendant means every one: call it only from a process whose
    children are all disposable (a grader, a supervisor), after waiting for
    those whose exit status you need (this reaps every zombie child).
    """
    me = psutil.Process()
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        live = [p for p in _descendants(me) if alive(p)]
        for found in live:
            try:
                found.send_signal(signal.SIGKILL)
                killed.add(found.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        _reap_children()
        if not live or time.monotonic() > deadline:
            return len(killed)
        time.sleep(POLL_SECONDS)


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and its descendants, as found right now."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    return [root, *_descendants(root)]


def _group_of(pid: int) -> int | None:
    """The process group the running ``pid`` leads, if it is not ours; else None."""
    if not hasattr(os, "getpgid") or pid == _our_group():
        return None
    try:
        return pid if os.getpgid(pid) == pid else None
    except (ProcessLookupError, PermissionError):
        return None


def _our_group() -> int | None:
    return os.getpgrp() if hasattr(os, "getpgrp") else None


def _members(group: int | None) -> list[psutil.Process]:
    """The running members of process group ``group``."""
    if group is None:
        return []
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group:
                members.append(process)
        except (ProcessLookupError, PermissionError):
            pass
    return members


def _signal_all(processes: list[psutil.Process], group: int | None, signum: int) -> None:
    if group is not None:
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            pass
    for process in processes:
        try:
            process.send_signal(signum)  # psutil checks the pid was not reused
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def alive(process: psutil.Process) -> bool:
    """Running, that is: neither gone nor a zombie."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(processes: list[psutil.Process], root: subprocess.Popen[Any] | int,
               deadline: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` runs, or the deadline; return those left."""
    while True:
        if isinstance(root, subprocess.Popen):
            root.poll()  # reaps our child, so it does not linger as a zombie
        left = [p for p in processes if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(POLL_SECONDS)


def _reap(process: subprocess.Popen[Any] | int) -> None:
    if isinstance(process, subprocess.Popen):
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        os.waitpid(process, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass  # not our child, or already reaped


def _reap_children() -> None:
    """Reap every zombie child of this process (adopted orphans included)."""
    if not hasattr(os, "waitpid"):
        return
    try:
        children = psutil.Process().children()
    except psutil.NoSuchProcess:
        return
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError, OSError):
            pass


def _die_with_parent(die_signal: signal.Signals | int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to signal the child when its parent dies."""
    prctl = _prctl() if die_signal is not None else None
    if prctl is None or die_signal is None:
        return None
    signum, parent = int(die_signal), os.getpid()

    def preexec() -> None:  # runs in the child, between fork and exec: keep it tiny
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="child-launcher")
