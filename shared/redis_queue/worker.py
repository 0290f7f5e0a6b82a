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

from shared.job import BadJob, Job, run_job
from shared.redis_queue.queue import RedisQueue, connect
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
                # A float timeout is fine since Redis 6; redis-py's types say int.
                raw = self.queue.redis.blmove(self.queue.queue, mine,
                                              POLL_SECONDS, "RIGHT", "LEFT")  # type: ignore[arg-type]
                if raw is not None:
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
            self.store.set_status(job.id, "done")  # an earlier attempt already did it
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
    """

    def __init__(self, queue: RedisQueue, name: str, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"the heartbeat TTL must be > 0 seconds, got {ttl!r}")
        self.queue, self.name, self.ttl = queue, name, ttl
        self.redis = connect(queue.url)  # its own connection: the worker's may be blocked
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, daemon=True,
                                        name=f"heartbeat-{name}")

    def beat(self) -> None:
        self.redis.set(self.queue.heartbeat(self.name), os.getpid(), px=int(self.ttl * 1000))

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()  # alive first, registered second: the reaper never sees us without a beat
        self.redis.sadd(self.queue.workers, self.name)
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
