"""RQ as a lesson 08 candidate: N ``rq worker`` processes, each forking a work-horse per job.

Matched concurrency: N worker processes on one queue, as a process manager (supervisord's
``numprocs``, systemd) runs them; each worker runs one job at a time in a forked work-horse
(``rq/worker/worker_classes.py``, ``Worker.execute_job``/``fork_work_horse``). RQ 3.0 also has
``rq worker-pool -n N`` (``rq/worker_pool.py``), but it takes none of the worker options the
reliable settings need (``rq/cli/workers.py``, ``worker_pool``; ``run_worker`` builds each
``Worker`` without them) and it respawns a killed worker itself within a second
(``WorkerPool.check_workers``), so it is not used here.

Keys: RQ's keys all start with ``rq:``. Each candidate has a queue, worker names and job ids of
its own (all containing :attr:`RqCandidate.tag`), so its keys are the ``rq:*`` keys naming the
tag, plus its members of RQ's two global sets ``rq:queues`` and ``rq:workers``.

What a kill does. A worker takes one job at a time (``Queue.dequeue_any``: BLMOVE into
``rq:queue:<q>:intermediate``), so the jobs not yet taken wait in the queue for the next
worker. A job cut off by a kill of the worker and its horse stays STARTED in the
StartedJobRegistry (``rq:wip:<q>``), scored by its heartbeat's expiry: ``min(job_timeout,
job_monitoring_interval) + 60`` s (``BaseWorker.get_heartbeat_ttl``; 90 s by default, never
under 60). A worker cleans the registries at start and then every ``maintenance_interval``
(10 min by default; ``BaseWorker.should_run_maintenance_tasks``), and only between dequeues,
which block up to ``worker_ttl - 15`` s (``dequeue_timeout``). The cleanup
(``StartedJobRegistry.cleanup``, ``rq/registry.py``) calls the job abandoned
(``AbandonedJobError``) and requeues it if it has retries left, else moves it to the
FailedJobRegistry. So by default a cut-off job is never run again; the reliable settings
(:data:`RELIABLE_WORKER_OPTIONS`, ``Retry(max=3)``) run it again after about a minute.

A gap: a job the worker registered as started (``prepare_execution``) whose horse had not yet
marked it STARTED (``prepare_job_execution``) when the kill came is skipped by that cleanup and
its registry entry dropped; it is left in the intermediate queue, whose cleanup
(``IntermediateQueue.cleanup``) fails or retries it only a minute after first noticing it.

Measured here (12 one-second jobs, 4 workers, kill -9 of every worker and horse): defaults,
the 8 waiting in the queue done by the restarted workers, the 4 cut off STARTED until the
cleanup failed them (AbandonedJobError) 814 s after the kill (the 10 min maintenance waits for
a 405 s dequeue to time out), never run again; reliable, every job done about 60 s after
the kill, the 4 cut off ran twice.
"""

from __future__ import annotations

import functools
import signal
import sys
import uuid
from pathlib import Path

import psutil
import redis
from rq import Queue, Retry

from shared.compare import rq_jobs
from shared.compare.base import Leftovers, Runs, read_runs
from shared.processes import LoggedChild

#: the reliable settings' worker options: heartbeat every second (so a job's registry entry
#: expires 61 s after its last heartbeat), registry cleanup every second, and dequeue waits of
#: at most 1 s (``worker_ttl - 15``) so the cleanup runs while idle. RQ's defaults: 30, 600, 420.
RELIABLE_WORKER_OPTIONS = ("--job-monitoring-interval", "1", "--maintenance-interval", "1",
                           "--worker-ttl", "16")
RELIABLE_RETRIES = 3
ROOT = Path(__file__).resolve().parents[2]


class RqCandidate:
    name = "RQ"

    def __init__(self, redis_url: str, *, concurrency: int = 4, reliable: bool = False,
                 sleep_seconds: float = 1.0) -> None:
        self.redis_url, self.concurrency, self.reliable = redis_url, concurrency, reliable
        self.sleep_seconds = sleep_seconds
        self.tag = f"compare-rq-{uuid.uuid4().hex[:8]}"
        self.settings = (f"Retry(max={RELIABLE_RETRIES}), rq worker "
                         + " ".join(RELIABLE_WORKER_OPTIONS) if reliable else "defaults")
        self.client = redis.Redis.from_url(redis_url)
        self.queue = Queue(self.tag, connection=self.client)
        self.workers: list[LoggedChild] = []
        self.worker_names: set[str] = set()
        self._pids: set[int] = set()
        self._starts = 0

    def _command(self, worker_name: str) -> list[str]:
        options = RELIABLE_WORKER_OPTIONS if self.reliable else ()
        return [sys.executable, "-m", "rq.cli", "worker", "--url", self.redis_url,
                "--name", worker_name, *options, self.tag]

    def start(self) -> RqCandidate:
        self._starts += 1
        names = [f"{self.tag}-{self._starts}-{n}" for n in range(self.concurrency)]
        self.workers = [LoggedChild(self._command(name), name=f"rq-{name}", cwd=ROOT)
                        for name in names]
        self.worker_names |= set(names)
        for name, worker in zip(names, self.workers, strict=True):
            worker.wait_until(functools.partial(self._listening, name), 30,
                              "the rq worker to register and listen")
            self._pids.add(worker.pid)
        return self

    def _listening(self, worker_name: str) -> bool:
        """Registered in Redis (``BaseWorker.register_birth``) and taking jobs."""
        return self.client.hget(f"rq:worker:{worker_name}", "state") in (b"idle", b"busy")

    def enqueue(self, kind: str, job_id: str) -> None:
        """``queue.enqueue(sleep, ...)``: RQ pickles the function's dotted name and arguments."""
        retry = Retry(max=RELIABLE_RETRIES) if self.reliable else None
        rq_id = f"{self.tag}-{job_id}"
        if kind == "noop":
            self.queue.enqueue(rq_jobs.noop, self.redis_url, self.tag, job_id, job_id=rq_id,
                               retry=retry)
        else:
            self.queue.enqueue(rq_jobs.sleep, self.redis_url, self.tag, job_id,
                               self.sleep_seconds, job_id=rq_id, retry=retry)

    def runs(self) -> Runs:
        return read_runs(self.redis_url, self.tag)

    def _processes(self) -> list[psutil.Process]:
        found = []
        for worker in self.workers:
            if worker.running:
                root = psutil.Process(worker.pid)
                found += [root, *root.children(recursive=True)]
        return found

    def kill_worker(self) -> list[int]:
        """SIGKILL every worker and its work-horse at once."""
        victims = self._processes()
        for process in victims:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=5)
        for worker in self.workers:
            worker.stop(timeout=1)
        return [p.pid for p in victims]

    def restart_worker(self) -> None:
        self.start()

    def message_bytes(self) -> bytes:
        """The ``data`` field of the job hash ``noop`` makes, sent to a queue no worker reads.
        (The queue's list holds only the job id; the call itself is in ``rq:job:<id>``.)"""
        wire = Queue(f"{self.tag}-wire", connection=self.client)
        job = wire.enqueue(rq_jobs.noop, self.redis_url, self.tag, "wire", job_id=f"{self.tag}-wire")
        data = self.client.hget(job.key, "data")
        return data if isinstance(data, bytes) else b""

    def _keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=f"*{self.tag}*", count=1000))

    def _members(self) -> tuple[list[bytes], list[bytes]]:
        tag = self.tag.encode()
        queues = [q for q in self.client.smembers("rq:queues") if isinstance(q, bytes) and tag in q]
        workers = [w for w in self.client.smembers("rq:workers") if isinstance(w, bytes) and tag in w]
        return queues, workers

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=10)
        queues, workers = self._members()
        if queues:
            self.client.srem("rq:queues", *queues)
        if workers:
            self.client.srem("rq:workers", *workers)
        keys = self._keys()
        if keys:
            self.client.delete(*keys)

    def leftovers(self) -> Leftovers:
        queues, workers = self._members()
        alive = sum(1 for pid in self._pids if _alive(pid))
        return Leftovers(len(self._keys()) + len(queues) + len(workers), alive)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
