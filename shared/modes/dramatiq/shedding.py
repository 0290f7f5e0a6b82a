"""Load shedding for the dramatiq mode: refuse a signup when its jobs would wait too long.

A durable queue takes every job it is given. Under a steady crowd the web
answers in milliseconds while the workers finish a few dozen jobs a second,
so the backlog grows without bound, and the jobs queued last run minutes
late. :class:`Shedding` bounds it: when some kind's backlog is more than
``max_seconds`` of work, :meth:`Shedding.check` raises
:class:`~shared.modes.base.QueueFull` and the app answers ``503`` with
``Retry-After`` (as lesson 02's bounded queue did).

How much work is queued comes from the store, not from Redis: a job stays
``queued`` or ``running`` there until a worker finishes it, while
``LLEN`` of the queue leaves out the messages the workers have prefetched
and are running. Seconds of work for one kind of job =
``unfinished jobs / recent completion rate`` (Little's law: the time a new
job will spend in the system). While too few jobs finished recently to
measure the rate (a burst on idle workers), the pace since the oldest
unfinished job was queued stands in for it, counting one more job as if it
had just finished: a generous guess, so a flood is refused as soon as it
outgrows it, never a division by zero.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.modes.base import QueueFull

#: Completions younger than this give the rate (seconds); the last few dozen are enough.
RATE_WINDOW_SECONDS = 5.0
RATE_SAMPLE = 50
#: Fewer completions than this in the window: no measured rate yet (see the module's doc).
MIN_COMPLETIONS = 3
#: The estimate is read again at most this often (seconds): one query, not one per signup.
REFRESH_SECONDS = 0.1


@dataclass(frozen=True)
class Backlog:
    """One kind of job's backlog now: how many are unfinished, and how long they are worth."""

    kind: str
    unfinished: int
    rate: float         # jobs finished per second lately (or the guess, see ``measured``)
    measured: bool      # False: too few finished lately; ``rate`` is the generous guess
    oldest_age: float   # seconds since the oldest unfinished job was queued

    @property
    def seconds(self) -> float:
        """Seconds of work queued: how long a job queued now would wait, at that rate."""
        return self.unfinished / self.rate


def read_backlogs(db: sqlite3.Connection, now: float | None = None) -> list[Backlog]:
    """Every kind's backlog, from the store's jobs table (``now``: a Unix time)."""
    now = time.time() if now is None else now
    unfinished = {kind: (count, oldest) for kind, count, oldest in db.execute(
        "SELECT kind, COUNT(*), MIN(enqueued_at) FROM jobs "
        "WHERE status IN ('queued', 'running') GROUP BY kind")}
    backlogs = []
    for kind, (count, oldest) in sorted(unfinished.items()):
        finished = [row[0] for row in db.execute(
            "SELECT finished_at FROM jobs WHERE kind = ? AND status IN ('done', 'failed') "
            "AND finished_at > ? ORDER BY finished_at DESC LIMIT ?",
            (kind, now - RATE_WINDOW_SECONDS, RATE_SAMPLE))]
        age = max(now - oldest, 1e-3)
        measured = len(finished) >= MIN_COMPLETIONS
        if measured:
            rate = len(finished) / max(now - min(finished), 1e-3)
        else:  # the pace since the oldest was queued, one more finish counted
            rate = (len(finished) + 1) / age
        backlogs.append(Backlog(kind, count, rate, measured, age))
    return backlogs


class Shedding:
    """Refuses new jobs while any kind's backlog exceeds ``max_seconds`` of work (0: never)."""

    def __init__(self, store_path: str | Path, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self.refused = 0
        self._path = Path(store_path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._read_at = -math.inf
        self._backlogs: list[Backlog] = []

    @property
    def on(self) -> bool:
        return self.max_seconds > 0

    def backlogs(self) -> list[Backlog]:
        """The backlogs as last read (read again if older than ``REFRESH_SECONDS``)."""
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                if self._db is None:
                    self._db = sqlite3.connect(self._path, timeout=5.0, check_same_thread=False)
                self._backlogs = read_backlogs(self._db)
                self._read_at = time.monotonic()
            return list(self._backlogs)

    def check(self) -> None:
        """:class:`QueueFull` (503, ``Retry-After``) if some kind has too much work queued."""
        if not self.on:
            return
        worst = max(self.backlogs(), key=lambda backlog: backlog.seconds, default=None)
        if worst is None or worst.seconds <= self.max_seconds:
            return
        with self._lock:
            self.refused += 1
        retry_after = max(1, math.ceil(worst.seconds - self.max_seconds))
        raise QueueFull(f"too much work queued: {worst.unfinished} {worst.kind} jobs, about "
                        f"{worst.seconds:.0f} s of work (the bound is {self.max_seconds:g} s)",
                        retry_after)

    def describe(self) -> str:
        if not self.on:
            return "no load shedding"
        return f"a signup whose jobs would wait more than {self.max_seconds:g} s of work answers 503"

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
