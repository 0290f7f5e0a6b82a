"""Run background workers at a lower CPU priority than the web process.

``nice`` alone is not enough on Linux with autogroups on
(``/proc/sys/kernel/sched_autogroup_enabled`` = 1, the default of many
distributions): the kernel first shares the CPU fairly between *sessions*,
and a process's nice value only counts against the other processes of its
own session. The worker groups run in a session of their own, so
:func:`lower_priority` also lowers that session's share, through
``/proc/<pid>/autogroup`` (``man 7 sched``). Raising a priority back needs
root; lowering it does not.
"""

from __future__ import annotations

from pathlib import Path

import psutil

AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def autogroups_on() -> bool:
    """Whether this kernel shares the CPU between sessions first (Linux only)."""
    try:
        return AUTOGROUP.read_text().strip() == "1"
    except OSError:
        return False


def lower_priority(pid: int, nice: int) -> None:
    """Give process ``pid``, its children to come, and its session's autogroup ``nice``."""
    if nice <= 0:
        return
    try:
        process = psutil.Process(pid)
        process.nice(nice)  # inherited by the worker processes it forks
        for child in process.children(recursive=True):  # any forked already
            child.nice(nice)
    except psutil.NoSuchProcess:
        return  # it died at once: its supervisor will say so, and start it again
    if autogroups_on():
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def priority_of(pid: int) -> tuple[int, int | None]:
    """Process ``pid``'s nice value, and its autogroup's (None without autogroups)."""
    nice = psutil.Process(pid).nice()
    if not autogroups_on():
        return nice, None
    return nice, int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])

