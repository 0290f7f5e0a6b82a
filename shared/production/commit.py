"""Lesson 07, section 1: a job sent before its commit, after it, or through an outbox.

:class:`CommitLab` owns every part of one experiment: a Redis it can stop and
start again on the same port (an outage), an SMTP sink, the app's SQLite
store, and one in-process Dramatiq worker (:class:`shared.retries.lab.RetryLab`)
whose actors the lesson declares. It hides only the plumbing: where the send
sits against the commit is written in the lesson.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dramatiq.worker
from dramatiq.middleware import Middleware

from shared.modes.dramatiq.broker import namespace_keys
from shared.net import free_port
from shared.redis_server import EmbeddedRedis
from shared.retries.lab import Attempt, RetryLab
from shared.smtp_sink import SmtpSink
from shared.store import BUSY_SECONDS, Store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: What became of one signup's welcome email, in the figure's order.
OUTCOMES = ("mailed once", "mailed twice or more", "job failed: no such account", "never sent")
OUTCOME_COLOURS = ("tab:green", "tab:orange", "tab:red", "tab:gray")

#: seconds a worker's consumer waits after a lost connection before it reconnects
#: (Dramatiq's ``dramatiq_restart_delay``, 3 s by default, read when ``dramatiq.worker`` is
#: imported): the lab shortens it while it runs, so an outage of a second costs no more
RESTART_DELAY = 0.05


class NoSuchAccount(LookupError):
    """The job looked up its account and found none (yet)."""


@dataclass(frozen=True)
class Leftovers:
    """What a closed lab left behind: all zero when it cleaned up."""

    redis_keys: int
    servers: int
    connections: int
    threads: int

    @property
    def total(self) -> int:
        return self.redis_keys + self.servers + self.connections + self.threads


class _Sent(Middleware):
    """Remembers every message Redis took (a send that raised never gets here).

    ``ids``: every message id. ``runnable``: how many enqueues put a message where a
    worker takes it, copies included; a retry's enqueue onto the delay queue is not
    one of them, its later move from there to the queue is.
    """

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.runnable = 0
        self._lock = threading.Lock()

    def after_enqueue(self, broker, message, delay):
        with self._lock:
            self.ids.add(message.message_id)
            if delay is None:
                self.runnable += 1


class CommitLab:
    """A Redis, an SMTP sink, the app's store and an in-process worker, owned by one experiment."""

    def __init__(self, *, worker_threads: int = 4) -> None:
        self.redis = EmbeddedRedis(free_port())
        self.sink = SmtpSink(delay=0.0)
        self.store = Store.fresh()
        self.worker_threads = worker_threads
        self.lab: RetryLab | None = None
        self._connections: list[sqlite3.Connection] = []
        self._threads: list[threading.Thread] = []
        self._sent = _Sent()
        self._saved_delay = dramatiq.worker.CONSUMER_RESTART_DELAY_SECS

    def start(self) -> CommitLab:
        """Start Redis and the SMTP sink and build the lab (declare actors, then :meth:`run`)."""
        self.redis.start()
        self.sink.start()
        self.lab = RetryLab(url=self.redis.url, worker_threads=self.worker_threads)
        self.lab.broker.add_middleware(self._sent)
        dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = RESTART_DELAY
        return self

    @property
    def worker(self) -> RetryLab:
        if self.lab is None:
            raise RuntimeError("start the CommitLab first")
        return self.lab

    def actor(self, fn=None, **options):
        """``@lab.actor(max_retries=0)``, or ``lab.actor(fn, actor_name=...)``: an actor on
        this lab's broker."""
        return self.worker.actor(fn, **options)

    def run(self) -> CommitLab:
        """Start the worker, after every actor is declared."""
        self.worker.start()
        return self

    def connect(self) -> sqlite3.Connection:
        """A plain connection to the app's database, for a transaction you write yourself."""
        db = sqlite3.connect(self.store.path, timeout=BUSY_SECONDS, isolation_level=None,
                             check_same_thread=False)
        self._connections.append(db)
        return db

    def thread(self, target, *args) -> threading.Thread:
        """Start ``target(*args)`` in a thread that :meth:`close` joins."""
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def wait(self, timeout: float = 10.0, what: str = "every job sent to finish") -> None:
        """Wait until every message Redis took has run (done, or failed for good).

        Counts copies: a message sent twice with one message id runs twice, and
        each retry is a message Redis took again.
        """
        def finished() -> bool:
            attempts = self.worker.attempts()
            ended = {a.message_id for a in attempts if a.outcome != "retry"}
            return self._sent.ids <= ended and len(attempts) >= self._sent.runnable

        self.worker.wait_until(finished, timeout, what)

    @contextmanager
    def redis_down(self) -> Iterator[None]:
        """Redis is down inside the block, then a new, empty one starts on the same port.

        The worker first empties the queue: this Redis keeps nothing across a
        restart, so a message lost here is one that was never sent.
        """
        self.wait(what="the queue to drain before the outage")
        self.redis.stop()
        try:
            yield
        finally:
            self.redis.start()

    # -- counting ------------------------------------------------------------

    def no_account(self, attempts: list[Attempt] | None = None) -> int:
        """How many attempts (all so far, or those given) found no account."""
        return sum(1 for a in (self.worker.attempts() if attempts is None else attempts)
                   if (a.error or "").startswith(NoSuchAccount.__name__))

    def mailed(self) -> Counter[str]:
        """Address -> how many welcome emails the SMTP sink received for it."""
        return Counter(r for message in self.sink.inbox for r in message.recipients)

    def outcomes(self, emails: list[str]) -> dict[str, int]:
        """How many of ``emails`` ended in each of :data:`OUTCOMES`."""
        mailed = self.mailed()
        failed = {a.args[0] for a in self.worker.attempts()
                  if (a.error or "").startswith(NoSuchAccount.__name__) and a.args}
        counts = dict.fromkeys(OUTCOMES, 0)
        for email in emails:
            if mailed[email] == 1:
                counts["mailed once"] += 1
            elif mailed[email] > 1:
                counts["mailed twice or more"] += 1
            elif email in failed:
                counts["job failed: no such account"] += 1
            else:
                counts["never sent"] += 1
        return counts

    def accounts(self) -> list[str]:
        """Every committed account's address, oldest first."""
        rows = self.store._db().execute("SELECT email FROM accounts ORDER BY created_at")
        return [row[0] for row in rows.fetchall()]

    # -- stopping ------------------------------------------------------------

    def close(self) -> Leftovers:
        """Stop everything this lab started; say what is left (all zero)."""
        for thread in self._threads:
            thread.join(10.0)
        for db in self._connections:
            db.close()
        keys = 0
        if self.lab is not None:
            if not self.redis.running:
                self.redis.start()
            self.lab.close()
            keys = len(namespace_keys(self.redis.url, self.lab.namespace))
        dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = self._saved_delay
        self.sink.stop()
        self.redis.stop()
        self.store.remove()
        return Leftovers(redis_keys=keys, servers=int(self.redis.running) + int(self.sink.running),
                         connections=self.store.open_connections,
                         threads=sum(t.is_alive() for t in self._threads))

    def __enter__(self) -> CommitLab:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


def plot_outcomes(runs: dict[str, dict[str, int]]) -> Figure:
    """One horizontal bar per run, split by what became of each signup's email."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only the figure needs it
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(9, 3.2))
    names = list(runs)[::-1]
    left: list[int] = [0] * len(names)
    for outcome, colour in zip(OUTCOMES, OUTCOME_COLOURS, strict=True):
        widths = [runs[name][outcome] for name in names]
        ax.barh(names, widths, left=left, color=colour, label=outcome)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("committed signups")
    ax.set_xlim(0, max(left, default=0) or 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(OUTCOMES), frameon=False)
    ax.set_title("What became of each committed signup's welcome email")
    fig.tight_layout()
    return fig
