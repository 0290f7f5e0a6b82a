"""``redis-queue``: jobs wait in Redis, and worker processes run them (lesson 03).

The web process only ``LPUSH``es each job (about one Redis round trip) and
answers 202. Worker processes, started here with the app, take jobs with
``BLMOVE`` and acknowledge them when done. A supervisor thread in the web
process runs the reaper: when a worker dies, its heartbeat expires and its
jobs go back to the queue; the supervisor also starts a replacement worker.
Its messages go to the ``shared.modes.redis_queue`` logger (``make serve``
prints them).

What survives what: a worker's death, yes (its processing list and the
reaper). This app's own restart, no: the key prefix is new each run (the
banner prints it), so a new app never reads what an old one left in Redis;
a clean stop first lets the queued jobs finish, then deletes its keys.
A restart of Redis keeps only what Redis persists (the embedded server
persists nothing).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress

from shared.job import Job
from shared.modes.base import Closed, Runner
from shared.processes import wait_until
from shared.redis_queue.pool import WorkerPool
from shared.redis_queue.queue import RedisQueue
from shared.redis_queue.reaper import reap

log = logging.getLogger(__name__)

#: More deaths than this within a minute: stop replacing workers (they crash on start).
MAX_DEATHS_PER_MINUTE = 5


class RedisQueueRunner(Runner):
    """Worker processes take jobs from a Redis list; a dead worker's jobs go back."""

    name = "redis-queue"
    needs = frozenset({"redis", "worker"})
    options = {"workers": 2, "heartbeat_ttl": 5.0, "idempotent": False}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        workers, ttl = self.config["workers"], self.config["heartbeat_ttl"]
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"the redis-queue mode needs workers >= 1, got {workers!r}")
        if not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ValueError(f"the redis-queue mode needs heartbeat_ttl > 0 seconds, got {ttl!r}")
        self.queue = RedisQueue.fresh(self.settings.redis_url)
        self.pool = WorkerPool(self.queue, self.settings, heartbeat_ttl=float(ttl),
                               idempotent=bool(self.config["idempotent"]))
        self._stopping = threading.Event()
        try:
            self.pool.start(workers)
        except BaseException:
            self._remove()
            raise
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="redis-queue-supervisor")
        self._supervisor.start()

    @property
    def recovery_seconds(self) -> float:
        """At most this long after a worker dies, its jobs are back in the queue."""
        return self.pool.heartbeat_ttl + self._interval

    @property
    def _interval(self) -> float:
        return min(1.0, self.pool.heartbeat_ttl / 4)

    def describe(self) -> str:
        pids = ", ".join(f"{w.name} pid {w.pid}" for w in self.pool.running)
        return (f"{len(self.pool.running)} worker processes ({pids}) take jobs from the Redis "
                f"list {self.queue.queue}; a killed worker's jobs go back to the queue within "
                f"{self.recovery_seconds:g} s; the prefix {self.queue.prefix} is new each run, so "
                "a restarted app does not read an old run's jobs")

    def submit(self, job: Job) -> None:
        self.queue.enqueue(job)

    def _supervise(self) -> None:
        """Replace dead workers and requeue their jobs, until close()."""
        died: dict[str, float] = {}
        while not self._stopping.wait(self._interval):
            try:
                for worker in [w for w in self.pool.workers if not w.running
                               and w.name not in died]:
                    died[worker.name] = time.monotonic()
                    recent = [t for t in died.values() if time.monotonic() - t < 60]
                    if len(recent) > MAX_DEATHS_PER_MINUTE:
                        log.error("worker %s (pid %d) died (exit code %s); %d deaths within a "
                                  "minute, so no replacement: see its log, %s", worker.name,
                                  worker.pid, worker.process.returncode, len(recent),
                                  self.pool.log_tail(worker))
                        continue
                    new = self.pool.start(1)[0]
                    log.info("worker %s (pid %d) died (exit code %s); started %s (pid %d)",
                             worker.name, worker.pid, worker.process.returncode, new.name,
                             new.pid)
                for recovered in reap(self.queue):
                    since = died.get(recovered.worker)
                    after = (f" {time.monotonic() - since:.1f} s after it was found dead" if since
                             else "")
                    log.info("recovered %d job(s) of dead worker %s%s: back in the queue",
                             recovered.jobs, recovered.worker, after)
            except Exception:  # noqa: BLE001 - keep supervising; say what went wrong
                log.exception("the redis-queue supervisor hit an error")

    def close(self, timeout: float = 10.0) -> Closed:
        """Let the workers finish what is queued (up to ``timeout``), stop them, delete the keys."""
        with suppress(TimeoutError):  # what is still unfinished is counted below
            wait_until(lambda: not self._unfinished(), timeout, "the queued jobs to finish")
        self._stopping.set()
        self._supervisor.join()
        self._remove()
        return Closed(unfinished=self._unfinished())

    def _unfinished(self) -> int:
        counts = self.store.counts()
        return counts["queued"] + counts["running"]

    def _remove(self) -> None:
        self.pool.remove()
        self.queue.delete()
        self.queue.close()
