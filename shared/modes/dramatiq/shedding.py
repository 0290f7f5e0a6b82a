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
outgrows it, never a division by zero. The store is read at most every
``REFRESH_SECONDS``; every signup let in since the last read, or in the
``REFRESH_SECONDS`` before it (its jobs may not have been written when the
store was read), counts as one more job of each kind, so a crowd cannot pour
in unchecked between reads. That counts some jobs twice: it refuses a little
early rather than late.

That guess only counts the jobs queued within the rate window. A row left
``queued`` for good (its message lost in a Redis restart, or a send that
failed after the commit without the outbox) would otherwise make the guess
grow with the clock: one such row an hour old is an hour of work, every
signup is refused, no job is ever queued again, nothing finishes, and the
app never recovers. With no recent completions, older rows are *stale*: left
out of the estimate (and logged once), so the app admits signups again, and
their jobs give the workers' pace back.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from shared.modes.base import QueueFull

log = logging.getLogger(__name__)

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
    #: Unfinished jobs left out of the estimate: with no measured rate, those queued before the
    #: rate window (a lost message's row stays ``queued`` for good; see the module's doc)
    stale: int = 0

    @property
    def counted(self) -> int:
        """The unfinished jobs the estimate counts."""
        return self.unfinished - self.stale

    @property
    def seconds(self) -> float:
        """Seconds of work queued: how long a job queued now would wait, at that rate."""
        return self.counted / self.rate if self.counted else 0.0


def read_backlogs(db: sqlite3.Connection, now: float | None = None) -> list[Backlog]:
    """Every kind's backlog, from the store's jobs table (``now``: a Unix time)."""
    now = time.time() if now is None else now
    since = now - RATE_WINDOW_SECONDS
    unfinished = {kind: (count, oldest, recent, oldest_recent)
                  for kind, count, oldest, recent, oldest_recent in db.execute(
        "SELECT kind, COUNT(*), MIN(enqueued_at), SUM(enqueued_at > ?), "
        "MIN(CASE WHEN enqueued_at > ? THEN enqueued_at END) FROM jobs "
        "WHERE status IN ('queued', 'running') GROUP BY kind", (since, since))}
    for (kind,) in db.execute("SELECT DISTINCT kind FROM jobs WHERE status IN ('done', 'failed') "
                              "AND finished_at > ?", (since,)):
        unfinished.setdefault(kind, (0, now, 0, None))  # none left: the signups let in count
    backlogs = []
    for kind, (count, oldest, recent, oldest_recent) in sorted(unfinished.items()):
        finished = [row[0] for row in db.execute(
            "SELECT finished_at FROM jobs WHERE kind = ? AND status IN ('done', 'failed') "
            "AND finished_at > ? ORDER BY finished_at DESC LIMIT ?",
            (kind, since, RATE_SAMPLE))]
        age = max(now - oldest, 1e-3)
        measured = len(finished) >= MIN_COMPLETIONS
        if measured:
            rate = len(finished) / max(now - min(finished), 1e-3)
            stale = 0
        else:  # the pace since the oldest recent one was queued, one more finish counted
            # none recent: those let in until the next read, at most REFRESH_SECONDS old, will be
            recent_age = max(now - oldest_recent, 1e-3) if recent else REFRESH_SECONDS
            rate = (len(finished) + 1) / recent_age
            stale = count - recent
        backlogs.append(Backlog(kind, count, rate, measured, age, stale))
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
        #: When the signups let in lately were (monotonic): those since a read's start, and one
        #: refresh before it, whose jobs may not have been committed when the store was read
        self._admitted: deque[float] = deque()
        self._stale_logged = False  # the stale rows' warning: once per app

    @property
    def on(self) -> bool:
        return self.max_seconds > 0

    def backlogs(self) -> list[Backlog]:
        """The backlogs as last read (read again if older than ``REFRESH_SECONDS``)."""
        with self._lock:
            return list(self._read())

    def _read(self) -> list[Backlog]:
        """(Called with the lock held.) Reading again forgets the signups let in since."""
        if time.monotonic() - self._read_at >= REFRESH_SECONDS:
            if self._db is None:
                self._db = sqlite3.connect(self._path, timeout=5.0, check_same_thread=False)
            started = time.monotonic()
            self._backlogs = read_backlogs(self._db)
            self._read_at = time.monotonic()
            while self._admitted and self._admitted[0] < started - REFRESH_SECONDS:
                self._admitted.popleft()  # committed by now, surely: in the store's count
            stale = [b for b in self._backlogs if b.stale]
            if stale and not self._stale_logged:
                self._stale_logged = True
                log.warning("load shedding leaves out %s: queued more than %g s ago, and none "
                            "of their kind finished since (lost messages?)",
                            ", ".join(f"{b.stale} {b.kind} jobs" for b in stale),
                            RATE_WINDOW_SECONDS)
        return self._backlogs

    def check(self) -> None:
        """:class:`QueueFull` (503, ``Retry-After``) if some kind has too much work queued."""
        if not self.on:
            return
        with self._lock:
            # as last read, plus one job of each kind for every signup let in lately (since the
            # read, or just before it: its jobs may not have been written yet)
            extra = len(self._admitted)
            backlogs = [replace(b, unfinished=b.unfinished + extra) for b in self._read()]
            worst = max(backlogs, key=lambda backlog: backlog.seconds, default=None)
            if worst is None or worst.seconds <= self.max_seconds:
                self._admitted.append(time.monotonic())
                return
            self.refused += 1
        retry_after = max(1, math.ceil(worst.seconds - self.max_seconds))
        raise QueueFull(f"too much work queued: {worst.counted} {worst.kind} jobs, about "
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
