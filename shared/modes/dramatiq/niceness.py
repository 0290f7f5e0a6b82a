"""Run background workers at a lower CPU priority than the web process.

``nice`` alone is not enough on Linux with autogroups on
(``/proc/sys/kernel/sched_autogroup_enabled`` = 1, the default of many
distributions): the kernel first shares the CPU fairly between *sessions*,
and a process's nice value only counts against the other processes of its
own session. The worker groups run in a session of their own, so
:func:`lower_priority` also lowers that session's share, through
``/proc/<pid>/autogroup`` (``man 7 sched``). Raising a priority back needs
root; lowering it does not.

On Linux the nice value belongs to each *thread* (``man 2 setpriority``,
BUGS: "under the current Linux/NPTL implementation of POSIX threads, the
nice value is a per-thread attribute"), and ``setpriority(PRIO_PROCESS,
pid)`` changes only the thread whose id is ``pid``: a process's main
thread. A thread started later inherits it; threads already running keep
theirs. So :func:`lower_priority` sets every thread listed in
``/proc/<pid>/task``, and :func:`priority_of` reports the least nice one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def autogroups_on() -> bool:
    """Whether this kernel shares the CPU between sessions first (Linux only)."""
    try:
        return AUTOGROUP.read_text().strip() == "1"
    except OSError:
        return False


def _threads(pid: int) -> list[int]:
    """Thread ids of process ``pid`` (Linux: ``/proc/<pid>/task``; elsewhere the process alone)."""
    try:
        return sorted(int(tid.name) for tid in Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:  # gone, or no /proc (macOS): the process's own priority
        psutil.Process(pid)  # NoSuchProcess if it is gone
        return [pid]


def _lower_threads(pid: int, nice: int) -> None:
    """Every thread of ``pid`` to ``nice`` (a thread that ended meanwhile is skipped)."""
    for tid in _threads(pid):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:
            continue


def lower_priority(pid: int, nice: int) -> None:
    """Give process ``pid`` (every thread), its children (forked or to come), and its
    session's autogroup ``nice``."""
    if nice <= 0:
        return
    try:
        _lower_threads(pid, nice)  # inherited by the worker processes it forks
        for child in psutil.Process(pid).children(recursive=True):  # any forked already
            try:
                _lower_threads(child.pid, nice)
            except psutil.NoSuchProcess:
                continue
    except (psutil.NoSuchProcess, ProcessLookupError):
        return  # it died at once: its supervisor will say so, and start it again
    if autogroups_on():
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        except OSError as error:  # gone meanwhile, or a kernel that refuses it
            log.warning("could not lower the autogroup of process %d to nice %d (%s): its "
                        "nice value only counts within its own session", pid, nice, error)


def priority_of(pid: int) -> tuple[int, int | None]:
    """Process ``pid``'s nice value (its least nice thread's), and its autogroup's (None
    without autogroups)."""
    nices = []
    for tid in _threads(pid):
        try:
            nices.append(os.getpriority(os.PRIO_PROCESS, tid))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    nice = min(nices, default=psutil.Process(pid).nice())
    if not autogroups_on():
        return nice, None
    return nice, int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
