"""The app's database: accounts, avatars, job status and timing spans, in SQLite.

Any process can open the same file, so a worker in another process records
its job's status and result exactly as a thread of the web app does. This is
the split a real deployment has: a database every process reaches (here
SQLite; Postgres in production), and a queue that only carries messages.

Each thread gets its own connection, closed when that thread ends (a thread
per job or per request would otherwise leave one open connection, and its
page cache, behind for every thread that ever ran). The file uses
write-ahead logging, so readers never wait for a writer, and writers wait
(up to ``BUSY_SECONDS``) for each other instead of failing.
"""

from __future__ import annotations

import atexit
import shutil
import os
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BUSY_SECONDS = 10.0
STATUSES = ("queued", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    email      TEXT PRIMARY KEY COLLATE NOCASE,
    created_at REAL NOT NULL,
    welcomed   INTEGER NOT NULL DEFAULT 0,
    avatar     BLOB
);
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    email       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'queued',
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    enqueued_at REAL NOT NULL,
    started_at  REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        TEXT NOT NULL UNIQUE,
    claimed_by    TEXT,
    claimed_until REAL,
    sent_at       REAL
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS spans (
    job_id     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    start      REAL NOT NULL,
    end        REAL NOT NULL,
    error      TEXT
);
"""


class QueuedJob(Protocol):
    """What the store records of a new job: :class:`shared.job.Job` has all of it.

    The store depends on this shape, not on ``shared.job``, which imports the store to
    record what a job did: the dependency goes one way only.
    """

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def enqueued_at(self) -> float: ...


class AccountExists(Exception):
    """Someone already signed up with this address."""


@dataclass(frozen=True)
class Account:
    email: str
    created_at: float
    welcomed: bool
    has_avatar: bool


@dataclass(frozen=True)
class JobStatus:
    """A job as ``GET /jobs/<id>`` shows it. Times are Unix timestamps."""

    id: str
    kind: str
    status: str
    attempts: int
    error: str | None
    enqueued_at: float
    started_at: float | None
    finished_at: float | None
    email: str = ""
    request_id: str = ""

    def public(self) -> dict:
        """The fields a client may see (not the address, not the request id)."""
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "attempts": self.attempts, "error": self.error,
                "enqueued_at": self.enqueued_at, "started_at": self.started_at,
                "finished_at": self.finished_at}

    @property
    def seconds(self) -> float | None:
        """How long its last attempt ran, once it has finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class Span:
    """One attempt of one job, for timelines.

    ``start`` and ``end`` are ``time.perf_counter()`` readings. On Linux and
    macOS that clock is the same in every process of the machine, so spans
    written by workers line up with the load generator's records.
    """

    job_id: str
    request_id: str
    name: str
    attempt: int
    start: float
    end: float
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.error is None


class Store:
    """One SQLite file, shared by every thread and process of one running app."""

    def __init__(self, path: str | Path, *, owns_file: bool = False) -> None:
        self.path = Path(path)
        self._owns_file = owns_file
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.RLock()
        self._closed = False
        self._db().executescript(SCHEMA)

    @classmethod
    def fresh(cls) -> Store:
        """A new, empty store in a temporary folder, removed by :meth:`remove`
        (or at interpreter exit). Re-running a lesson never meets its last run."""
        folder = Path(tempfile.mkdtemp(prefix="defer-store-"))
        store = cls(folder / "store.sqlite3", owns_file=True)
        atexit.register(store.remove)
        return store

    # -- connections ---------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the store {self.path} is closed")
        holder = getattr(self._local, "holder", None)
        if holder is None:
            db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
            holder = _Holder(db)
            with self._lock:
                self._connections.append(db)
            # A thread's thread-local data goes when the thread ends, and the holder with
            # it: then this closes the thread's connection. The callback holds no reference
            # to the store, so it never keeps a store alive.
            weakref.finalize(holder, _release, self._lock, self._connections, db, os.getpid())
            self._local.holder = holder
        return holder.db

    def _write(self) -> _Transaction:
        return _Transaction(self._db())

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        with self._lock:
            self._closed = True
            connections = list(self._connections)
            self._connections.clear()
        for db in connections:
            try:
                db.close()
            except sqlite3.Error:
                pass

    @property
    def open_connections(self) -> int:
        """How many connections are open now: one per thread that used the store and still runs."""
        with self._lock:
            return len(self._connections)

    def remove(self) -> None:
        """Close, and delete the file if :meth:`fresh` made it. Idempotent."""
        atexit.unregister(self.remove)
        self.close()
        if self._owns_file:
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<Store {self.path.name}>"

    # -- accounts ------------------------------------------------------------

    def create_account(self, email: str, jobs: Iterable[QueuedJob] = (), *,
                       outbox: bool = False) -> None:
        """Create the account and queue its jobs in one transaction.

        ``outbox``: also write one outbox row per job, in the same transaction,
        for a relay to send (:meth:`claim_unsent`). Raises
        :class:`AccountExists` when the address (any case) is taken.
        """
        jobs = list(jobs)
        with self._write() as db:
            try:
                db.execute("INSERT INTO accounts (email, created_at) VALUES (?, ?)",
                           (email, time.time()))
            except sqlite3.IntegrityError:
                raise AccountExists(email) from None
            self._insert_jobs(db, jobs)
            if outbox:
                db.executemany("INSERT INTO outbox (job_id) VALUES (?)", [(j.id,) for j in jobs])

    def forget_signup(self, email: str, job_ids: Iterable[str]) -> None:
        """Undo a signup whose jobs were refused: delete the account and those jobs."""
        with self._write() as db:
            db.execute("DELETE FROM accounts WHERE email = ?", (email,))
            ids = [(job_id,) for job_id in job_ids]
            db.executemany("DELETE FROM jobs WHERE id = ?", ids)
            db.executemany("DELETE FROM outbox WHERE job_id = ?", ids)

    def account(self, email: str) -> Account | None:
        row = self._db().execute(
            "SELECT email, created_at, welcomed, avatar IS NOT NULL FROM accounts WHERE email = ?",
            (email,)).fetchone()
        return None if row is None else Account(row[0], row[1], bool(row[2]), bool(row[3]))

    def mark_welcomed(self, email: str) -> None:
        with self._write() as db:
            db.execute("UPDATE accounts SET welcomed = 1 WHERE email = ?", (email,))

    def set_avatar(self, email: str, png: bytes) -> None:
        with self._write() as db:
            db.execute("UPDATE accounts SET avatar = ? WHERE email = ?", (png, email))

    def avatar(self, email: str) -> bytes | None:
        row = self._db().execute("SELECT avatar FROM accounts WHERE email = ?",
                                 (email,)).fetchone()
        return None if row is None else row[0]

    # -- jobs ----------------------------------------------------------------

    def add_jobs(self, jobs: Iterable[QueuedJob]) -> None:
        """Record jobs as queued (for jobs of an account created elsewhere)."""
        with self._write() as db:
            self._insert_jobs(db, jobs)

    def set_enqueued_at(self, stamps: Iterable[tuple[str, float]]) -> None:
        """Record when jobs entered their queue: ``(job id, Unix time)`` pairs.

        A job row starts with the time the signup made the job; a queue that
        knows the moment each job went in line (the thread-queue mode) writes
        it here, so that ordering jobs by ``enqueued_at`` is queue order.
        """
        with self._write() as db:
            db.executemany("UPDATE jobs SET enqueued_at = ? WHERE id = ?",
                           [(when, job_id) for job_id, when in stamps])

    @staticmethod
    def _insert_jobs(db: sqlite3.Connection, jobs: Iterable[QueuedJob]) -> None:
        db.executemany(
            "INSERT INTO jobs (id, kind, email, request_id, enqueued_at) VALUES (?, ?, ?, ?, ?)",
            [(j.id, j.kind, j.email, j.request_id, j.enqueued_at) for j in jobs])

    def job(self, job_id: str) -> JobStatus | None:
        row = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                                 (job_id,)).fetchone()
        return None if row is None else JobStatus(*row)

    def jobs(self) -> list[JobStatus]:
        """Every job, in the order they were queued."""
        rows = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY seq").fetchall()
        return [JobStatus(*row) for row in rows]

    def start_attempt(self, job_id: str) -> int:
        """Mark the job running; return this attempt's number (1 for the first)."""
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                       "started_at = ?, finished_at = NULL WHERE id = ?", (time.time(), job_id))
            row = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id!r} in {self}")
        return row[0]

    def finish_attempt(self, job_id: str, span: Span, *, will_retry: bool = False) -> None:
        """Record an attempt's span and the job's new status.

        A failed attempt leaves the job ``failed``, or ``queued`` again (with
        its error kept) when it ``will_retry``.
        """
        if span.ok:
            status = "done"
        else:
            status = "queued" if will_retry else "failed"
        with self._write() as db:
            _end_attempt(db, job_id, status, span.error)
            _insert_span(db, span)

    def end_attempt(self, job_id: str, status: str, error: str | None = None, *,
                    attempt: int | None = None) -> None:
        """Record how the job's current attempt ended: ``done``, ``queued`` (a retry
        follows; ``error`` is why this one failed) or ``failed`` (with why).

        Given its ``attempt`` number, only while no later attempt has started: a
        retry that began on another thread first keeps its own status.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self._write() as db:
            if attempt is None:
                _end_attempt(db, job_id, status, error)
            else:
                db.execute("UPDATE jobs SET status = ?, error = ?, finished_at = ? "
                           "WHERE id = ? AND attempts = ?",
                           (status, error, time.time(), job_id, attempt))

    def mark_requeued(self, job_id: str, attempts: int) -> bool:
        """``failed`` -> ``queued`` for a job sent again, unless a worker has started it
        since (its attempts grew past ``attempts``); True if it changed."""
        with self._write() as db:
            changed = db.execute("UPDATE jobs SET status = 'queued' "
                                 "WHERE id = ? AND status = 'failed' AND attempts = ?",
                                 (job_id, attempts)).rowcount
        return changed > 0

    def add_span(self, span: Span) -> None:
        """Record one attempt's timing, leaving the job's status alone."""
        with self._write() as db:
            _insert_span(db, span)

    def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        """Force a job's status, e.g. ``failed`` with why, for a job that never ran."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self._write() as db:
            db.execute("UPDATE jobs SET status = ?, error = COALESCE(?, error) WHERE id = ?",
                       (status, error, job_id))

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        counted = dict(self._db().execute(
            "SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {status: counted.get(status, 0) for status in STATUSES}

    def last_seq(self) -> int:
        """A bookmark: the sequence number of the newest job so far (0: none)."""
        row = self._db().execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
        return row[0]

    def progress_since(self, seq: int) -> tuple[int, int]:
        """(finished, total) among the jobs queued after bookmark ``seq``."""
        row = self._db().execute(
            "SELECT COALESCE(SUM(status IN ('done', 'failed')), 0), COUNT(*) "
            "FROM jobs WHERE seq > ?", (seq,)).fetchone()
        return row[0], row[1]

    # -- the outbox ----------------------------------------------------------

    def claim_unsent(self, relay: str, *, limit: int = 100,
                     lease_seconds: float = 30.0) -> list[JobStatus]:
        """Claim up to ``limit`` unsent outbox jobs for ``relay``, oldest first.

        One write transaction: two relays never claim the same row at once. A
        claim lasts ``lease_seconds``; after that (its relay died, or is too
        slow) any relay may claim the row again. A relay always gets back its
        own claims, with a fresh lease.
        """
        if self.unsent() == 0:
            return []  # a read: an idle relay never takes the write lock
        now = time.time()
        with self._write() as db:
            db.execute("UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE seq IN ("
                       "SELECT seq FROM outbox WHERE sent_at IS NULL AND (claimed_by = ? OR "
                       "claimed_until IS NULL OR claimed_until < ?) ORDER BY seq LIMIT ?)",
                       (relay, now + lease_seconds, relay, now, limit))
            rows = db.execute(
                f"SELECT {_JOB_COLUMNS.replace('id,', 'jobs.id,', 1)} FROM outbox "
                "JOIN jobs ON jobs.id = outbox.job_id WHERE outbox.claimed_by = ? "
                "AND outbox.sent_at IS NULL ORDER BY outbox.seq", (relay,)).fetchall()
        return [JobStatus(*row) for row in rows]

    def mark_sent(self, job_id: str, relay: str) -> bool:
        """``relay`` sent this job's message: the outbox row is done, if ``relay`` still holds it.

        False when the row is no longer ``relay``'s claim: its lease ran out and
        another relay claimed the row (and may send it again), or marked it sent.
        """
        with self._write() as db:
            marked = db.execute("UPDATE outbox SET sent_at = ? WHERE job_id = ? "
                                "AND claimed_by = ? AND sent_at IS NULL",
                                (time.time(), job_id, relay))
            return marked.rowcount == 1

    def unsent(self) -> int:
        """How many outbox rows wait for the relay."""
        return self._db().execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]

    # -- spans ---------------------------------------------------------------

    def spans(self) -> list[Span]:
        """Every recorded attempt, oldest first."""
        rows = self._db().execute("SELECT * FROM spans ORDER BY start").fetchall()
        return [Span(*row) for row in rows]


_JOB_COLUMNS = ("id, kind, status, attempts, error, enqueued_at, started_at, finished_at, "
                "email, request_id")


def _end_attempt(db: sqlite3.Connection, job_id: str, status: str, error: str | None) -> None:
    db.execute("UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
               (status, error, time.time(), job_id))


def _insert_span(db: sqlite3.Connection, span: Span) -> None:
    db.execute("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?)",
               (span.job_id, span.request_id, span.name, span.attempt, span.start, span.end,
                span.error))


class _Holder:
    """One thread's connection, in that thread's thread-local data."""

    __slots__ = ("db", "__weakref__")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db


def _release(lock: threading.RLock, connections: list[sqlite3.Connection],
             db: sqlite3.Connection, pid: int) -> None:
    """Close a connection whose thread ended, unless :meth:`Store.close` closed it already.

    Not in a forked child (``subprocess`` with a ``preexec_fn``): there the fork dropped every
    other thread's thread-local data, which runs this callback, while the lock or SQLite's own
    mutex may have been held by a thread that does not exist in the child. Taking either would
    hang the child before its ``exec``, and the parent's ``Popen`` with it.
    """
    if os.getpid() != pid:
        return
    with lock:
        try:
            connections.remove(db)
        except ValueError:
            return
    try:
        db.close()
    except sqlite3.Error:
        pass


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
