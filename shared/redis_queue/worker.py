"""Two workers. The naive one loses the job it holds when it dies; the reliable one cannot.

The whole difference is where a job sits while it runs. ``BRPOP`` takes it
out of Redis: from then on it exists only in the worker's memory. ``BLMOVE``
moves it, in one atomic step, into a processing list of the worker's own,
and it leaves Redis only when the worker acknowledges it (``LREM``) after
the work is done. A heartbeat key tells the reaper who is still alive.
"""

from __future__ import annotations

import os
import sys
import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.job import BadJob, Job, run_job
from shared.redis_queue.queue import TIMEOUT, RedisQueue
from shared.settings import Settings
from shared.store import Store

POLL_SECONDS = 0.2       # how long one blocking pop waits before checking for a stop
ONCE_SECONDS = 24 * 3600  # how long an idempotency key remembers a job


class Worker:
    """Takes jobs from ``queue`` and runs them, until :meth:`stop`."""

    def __init__(self, queue: RedisQueue, name: str, store: Store, settings: Settings, *,
                 heartbeat_ttl: float = 5.0, idempotent: bool = False) -> None:
        self.queue, self.name, self.store, self.settings = queue, name, store, settings
        self.heartbeat_ttl, self.idempotent = heartbeat_ttl, idempotent
        self.stopping = False

    def run_naive(self) -> None:
        while not self.stopping:
            item = self.queue.redis.brpop([self.queue.queue], timeout=POLL_SECONDS)
            if item is not None:
                self.handle(item[1])  # killed here: the job is gone for good

    def run_reliable(self) -> None:
        mine = self.queue.processing(self.name)
        with Heartbeat(self.queue, self.name, self.heartbeat_ttl):
            while not self.stopping:
                # BLMOVE (Redis >= 6.2) takes a float timeout; redis-py's types say int.
                raw = self.queue.redis.blmove(self.queue.queue, mine,
                                              POLL_SECONDS, "RIGHT", "LEFT")  # type: ignore[arg-type]
                if raw is not None:
                    # Holding a job: be in the set of workers, so the reaper watches this list
                    # even if a lapsed heartbeat had it remove us while we were idle.
                    self.queue.redis.sadd(self.queue.workers, self.name)
                    self.handle(raw)  # killed here: the job waits in `mine` for the reaper
                    # Acknowledge: done with it. (redis-py's types want str; bytes is fine.)
                    self.queue.redis.lrem(mine, 1, raw)  # type: ignore[arg-type]

    def handle(self, raw: bytes | str) -> None:
        """Decode one message (JSON only) and run it once; errors land in the store."""
        try:
            job = Job.from_json(raw)
        except BadJob as exc:
            print(f"{self.name}: rejected a message ({exc})", file=sys.stderr, flush=True)
            return
        if self.idempotent and not self.queue.redis.set(
                self.queue.once(job.id), self.name, nx=True, ex=ONCE_SECONDS):
            # An earlier attempt claimed it: done, or (if its worker died after the
            # claim) never to be done. At most once: lesson 03 names that side.
            self.store.set_status(job.id, "done")
            return
        try:
            run_job(job, self.store, self.settings)
        except Exception:  # noqa: BLE001 - run_job recorded the error in the store
            pass

    def stop(self) -> None:
        """Finish the job in hand, acknowledge it, then return from the loop.

        Safe in a signal handler because it takes no lock. (``Event.set()``
        does: a second SIGTERM arriving while the first handler held that
        lock deadlocked the worker.)
        """
        self.stopping = True


class Heartbeat:
    """Registers a worker and keeps its heartbeat key alive from a thread.

    The key expires ``ttl`` seconds after the last beat, so a worker that
    dies, however it dies, is presumed dead at most ``ttl`` seconds later.

    A beat that fails (Redis restarted, a connection dropped) must not end the
    thread: a worker that lives on without a heartbeat looks dead, and the
    reaper hands the job it is running to another worker. So the thread
    retries, sooner than the next beat is due (``ttl / 16`` doubling up to
    ``ttl / 4``, and never more), says so once in the worker's log, and says
    when it is back. Beats are ``ttl / 4`` apart, so a Redis outage shorter
    than about three quarters of the TTL (less a connect that hangs) never
    lets the key expire.
    Every beat registers the worker again (``SET`` and ``SADD`` in one
    ``MULTI``): if the reaper took it for dead meanwhile, the worker is back
    in the set and will be watched again.
    """

    def __init__(self, queue: RedisQueue, name: str, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"the heartbeat TTL must be > 0 seconds, got {ttl!r}")
        self.queue, self.name, self.ttl = queue, name, ttl
        # Its own connection (the worker's may be blocked in BLMOVE), named so that
        # CLIENT LIST shows it. A beat that takes longer than the TTL is too late anyway.
        wait = min(TIMEOUT, ttl)
        self.redis = redis.Redis.from_url(queue.url, socket_connect_timeout=wait,
                                          socket_timeout=wait, retry=Retry(NoBackoff(), 0),
                                          client_name=f"heartbeat-{name}")
        self.failures = 0  # beats that failed in a row
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, daemon=True,
                                        name=f"heartbeat-{name}")

    def beat(self) -> None:
        """Set the heartbeat key with its TTL and register the worker, in one transaction."""
        with self.redis.pipeline() as pipe:  # MULTI SET SADD EXEC: alive and registered at once
            pipe.set(self.queue.heartbeat(self.name), os.getpid(), px=int(self.ttl * 1000))
            pipe.sadd(self.queue.workers, self.name)
            pipe.execute()

    def _beat_until_stopped(self) -> None:
        pause = self.ttl / 4
        while not self._stop.wait(pause):
            try:
                self.beat()
            except redis.RedisError as exc:
                self.failures += 1
                if self.failures == 1:  # once per outage, not once per retry
                    say(f"{self.name}: heartbeat failed ({type(exc).__name__}: {exc}); "
                        "retrying until Redis answers")
                # Doubling, capped: 2 ** failures alone overflows a float after 1,024 failures.
                pause = self.ttl / 16 * 2 ** min(self.failures - 1, 2)  # ttl/16, ttl/8, ttl/4
                continue
            if self.failures:
                say(f"{self.name}: heartbeat back after {self.failures} failed beat(s); "
                    "registered again")
                self.failures = 0
            pause = self.ttl / 4

    def __enter__(self) -> Heartbeat:
        self.beat()  # alive and registered in one step: the reaper never sees us without a beat
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        mine = self.queue.processing(self.name)  # left with a job in hand (an error): hand it back
        while self.redis.lmove(mine, self.queue.queue, "RIGHT", "RIGHT") is not None:
            pass
        self.redis.srem(self.queue.workers, self.name)
        self.redis.delete(self.queue.heartbeat(self.name))
        self.redis.close()


def say(line: str) -> None:
    """One line to the worker's log (its stderr), flushed at once."""
    print(line, file=sys.stderr, flush=True)
