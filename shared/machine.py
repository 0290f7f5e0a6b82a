"""How busy the machine was while a cell measured: trust the numbers, or treat them as rough.

A timing taken while other programs compete for the CPU comes out slower, and
a speed-up ratio can come out anywhere. :func:`watch_machine` records, around
a measurement, how much CPU time the whole machine spent, how much of it was
this process's own (its threads and its child processes), and the load
average. When the block ends it prints one line with a verdict::

    with watch_machine():
        points = measure(...)

    machine while measuring (2 cores, 3.20 s): other programs took 3% of the CPU,
    this notebook 85%; load average 0.4 per core: quiet enough to trust these numbers

(one line when printed). The verdict rests on what *other* programs took
during the block: the load average cannot tell the notebook's own work from
theirs, and it lags a minute behind.

This is the measurement layer: the app and its modes never import it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

from shared.fmt import fmt_duration, fmt_share

QUIET = "quiet enough to trust these numbers"
BUSY = "busy: other programs competed for the CPU, so treat these numbers as rough"
#: Other programs' share of the machine's CPU time from which a measurement is called busy.
#: One other program spinning on one core of two takes 50%; a desktop idling, a few percent.
BUSY_SHARE = 0.2


@dataclass(frozen=True)
class Snapshot:
    """CPU counters at one moment, in seconds (``own_children``: live children, by pid)."""

    wall: float        # time.perf_counter()
    machine_busy: float  # CPU seconds the whole machine spent not idle, all cores together
    machine_total: float  # CPU seconds the whole machine counted, idle included
    own: float         # this process and the children it has reaped
    own_children: dict[int, float] = field(default_factory=dict)
    load: float = 0.0  # 1-minute load average


@dataclass(frozen=True)
class Reading:
    """What the machine did between two snapshots."""

    cores: int
    seconds: float
    own_share: float     # share of the machine's CPU time this process (and children) took
    others_share: float  # share other programs took
    load_per_core: float  # load average at the end, over the number of cores

    @classmethod
    def between(cls, start: Snapshot, end: Snapshot, cores: int) -> Reading:
        if cores < 1:
            raise ValueError(f"cores must be a whole number >= 1, got {cores!r}")
        total = end.machine_total - start.machine_total
        busy = end.machine_busy - start.machine_busy
        own = end.own - start.own
        for pid, cpu in end.own_children.items():
            own += cpu - start.own_children.get(pid, 0.0)
        for pid, cpu in start.own_children.items():
            if pid not in end.own_children:  # reaped since: its whole life is in ``own`` now
                own -= cpu
        own = max(0.0, own)
        if total <= 0:  # too short for the kernel's counters to move
            own_share = others_share = 0.0
        else:
            own_share = min(1.0, own / total)
            others_share = min(1.0, max(0.0, busy - own) / total)
        return cls(cores, max(0.0, end.wall - start.wall), own_share, others_share,
                   end.load / cores)

    @property
    def busy(self) -> bool:
        """True when other programs took enough CPU to distort the measurement."""
        return self.others_share >= BUSY_SHARE

    @property
    def verdict(self) -> str:
        return BUSY if self.busy else QUIET

    def __str__(self) -> str:
        return (f"machine while measuring ({self.cores} cores, {fmt_duration(self.seconds)}): "
                f"other programs took {fmt_share(self.others_share, 1.0)} of the CPU, "
                f"this notebook {fmt_share(self.own_share, 1.0)}; "
                f"load average {self.load_per_core:.1f} per core: {self.verdict}")


class MachineWatch:
    """Context manager: snapshots on entry and exit; prints the :class:`Reading` unless told not to."""

    def __init__(self, *, report: bool = True) -> None:
        self.report = report
        self.cores = os.cpu_count() or 1
        self.reading: Reading | None = None
        self._start: Snapshot | None = None

    def __enter__(self) -> MachineWatch:
        self._start = snapshot()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._start is None:
            return
        self.reading = Reading.between(self._start, snapshot(), self.cores)
        if self.report and exc_type is None:
            print(self.reading)


def watch_machine(*, report: bool = True) -> MachineWatch:
    """Watch how busy the machine is during a ``with`` block; print one line at its end."""
    return MachineWatch(report=report)


def snapshot() -> Snapshot:
    """Read the CPU counters now (Linux and macOS)."""
    times = psutil.cpu_times()
    counted = times._asdict()
    # Linux counts guest time inside user time already; leave it out of the sum.
    total = sum(value for name, value in counted.items() if name not in ("guest", "guest_nice"))
    idle = counted.get("idle", 0.0) + counted.get("iowait", 0.0)
    mine = os.times()
    children: dict[int, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            cpu = child.cpu_times()
        except psutil.Error:  # it ended meanwhile
            continue
        children[child.pid] = cpu.user + cpu.system
    load = psutil.getloadavg()[0]
    return Snapshot(time.perf_counter(), total - idle, total,
                    mine.user + mine.system + mine.children_user + mine.children_system,
                    children, load)
