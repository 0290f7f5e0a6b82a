"""A lesson's demos: a fresh queue, store and mail sink, and crashes at chosen moments.

A real crash comes at a random moment. A lesson needs the same story every
time, so these helpers pick the moment: while the mail provider holds a
message (the job is half done), or right after it accepted one (the work is
done, the acknowledgement is not).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from shared.job import Job, new_jobs
from shared.processes import wait_until
from shared.redis_queue.pool import WorkerPool, WorkerProcess
from shared.redis_queue.queue import RedisQueue, text
from shared.settings import Settings
from shared.smtp_sink import SmtpSink
from shared.store import Store

POLL_SECONDS = 0.01


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> object:
    """Poll ``predicate`` until it is true and return that value; ``TimeoutError`` naming
    ``what`` otherwise."""
    value: object = None

    def holds() -> object:
        nonlocal value
        value = predicate()
        return value

    wait_until(holds, timeout, what, interval=POLL_SECONDS)
    return value


def kill_mid_job(worker: WorkerProcess, store: Store, timeout: float = 30.0) -> float:
    """SIGKILL ``worker`` as soon as a job is running (the sink should be holding its email).

    Returns the Unix time of the kill.
    """
    wait_for("a job to start running", lambda: store.counts()["running"] > 0, timeout)
    os.kill(worker.pid, signal.SIGKILL)
    killed = time.time()
    worker.process.wait(10)
    return killed


@dataclass
class Crash:
    """One job's crash and redelivery, in Unix times read from the store, Redis and the clock.

    ``started``: its first attempt began (the store); ``killed``: the SIGKILL;
    ``expires``: the dead worker's heartbeat key expires (its PTTL read from Redis
    right after the kill); ``reaped``: the reaper moved it back; ``rerun`` and
    ``finished``: the second attempt (the store).
    """

    job_id: str
    worker: str
    started: float
    killed: float
    expires: float
    reaped: float | None = None
    rerun: float | None = None
    finished: float | None = None

    @classmethod
    def after_kill(cls, queue: RedisQueue, store: Store, worker: str, killed: float) -> Crash:
        """What is known right after ``worker`` was killed at ``killed``: the job it held."""
        ttl_ms = queue.redis.pttl(queue.heartbeat(worker))
        now = time.time()
        [raw] = queue.redis.lrange(queue.processing(worker), 0, -1)
        job_id = Job.from_json(raw).id
        status = store.job(job_id)
        assert status is not None and status.started_at is not None
        return cls(job_id, worker, status.started_at, killed, now + max(0, ttl_ms) / 1000)

    def finish(self, store: Store) -> Crash:
        """Fill in the second attempt from the store, once the job is done."""
        status = store.job(self.job_id)
        assert status is not None
        self.rerun, self.finished = status.started_at, status.finished_at
        return self


def persistence(r: redis.Redis) -> dict[str, str] | str:
    """The server's persistence settings (``appendonly``, ``appendfsync``, ``save``), or why
    it would not say (managed services often refuse ``CONFIG``)."""
    try:
        found: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "save"):
            found.update({text(k or ""): text(v or "") for k, v in r.config_get(name).items()})
        return found
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"


def what_a_restart_keeps(settings: dict[str, str] | str) -> str:
    """In words: what a restart of a Redis with these settings keeps of the queue."""
    if isinstance(settings, str):
        return (f"this Redis would not say ({settings}): ask its operator whether it "
                "persists, and how often")
    if settings.get("appendonly") == "yes":  # on start, Redis loads this file, not the snapshot
        every = settings.get("appendfsync", "?")
        loss = ("no acknowledged write" if every == "always" else
                # redis.conf (7.0): with everysec "Redis can lose just one second of writes".
                "about the last second of writes"
                if every == "everysec" else
                "whatever the operating system had not yet written to disk")
        return (f"the jobs in its append-only file (appendonly yes, appendfsync {every}): "
                f"a crash of the machine loses {loss}")
    if settings.get("save"):
        return (f"its last snapshot (save {settings['save']!r}): every job queued since that "
                "snapshot is lost, and every job finished since comes back and runs again")
    return "nothing: every queued job, and every job a worker held, is gone"


def kill_on_delivery(sink: SmtpSink, worker: WorkerProcess) -> None:
    """SIGKILL ``worker`` the moment the sink accepts its next message.

    The message is delivered; the worker never hears "250 OK", so it never
    acknowledges the job: the crash that makes a job run twice.
    """
    def kill_once(message) -> None:
        sink.on_delivery = None
        os.kill(worker.pid, signal.SIGKILL)

    sink.on_delivery = kill_once


def lost(store: Store, queue: RedisQueue) -> int:
    """Jobs that are not finished, yet are neither waiting nor held by a worker in Redis.

    Meaningful once every live worker is idle: nobody will ever run them.
    """
    counts = store.counts()
    unfinished = counts["queued"] + counts["running"]
    return max(0, unfinished - queue.waiting() - sum(queue.held().values()))


class Demo:
    """A fresh queue, store and slow mail sink, and the worker pools started on them.

    :meth:`close` stops every worker, deletes every Redis key of the queue,
    removes the store and stops the sink.
    """

    def __init__(self, url: str, *, email_delay: float) -> None:
        self.queue = RedisQueue.fresh(url)
        self.store = Store.fresh()
        self.sink = SmtpSink(delay=email_delay).start()
        self.settings = Settings(smtp_host=self.sink.host, smtp_port=self.sink.port,
                                 store_path=str(self.store.path), redis_url=url)
        self.pools: list[WorkerPool] = []

    def pool(self, style: str = "reliable", **options) -> WorkerPool:
        """A pool of workers of ``style`` on this demo's queue (none started yet)."""
        pool = WorkerPool(self.queue, self.settings, style=style, **options)
        self.pools.append(pool)
        return pool

    def enqueue_emails(self, addresses: Iterable[str]) -> list[Job]:
        """Create an account per address, and enqueue its welcome email job."""
        jobs = []
        for address in addresses:
            [job] = new_jobs(address, f"demo-{address}", ("welcome_email",))
            self.store.create_account(address, [job])
            self.queue.enqueue(job)
            jobs.append(job)
        return jobs

    def lost(self) -> int:
        return lost(self.store, self.queue)

    def inbox(self) -> list[str]:
        """Who got an email, one entry per message, sorted."""
        return sorted(r for message in self.sink.inbox for r in message.recipients)

    def close(self) -> int:
        """Stop everything; return how many Redis keys of this queue are left (0)."""
        for pool in self.pools:
            pool.remove()
        self.queue.delete()
        left = len(self.queue.keys())
        self.queue.close()
        self.store.remove()
        self.sink.stop()
        return left
