"""Celery as a lesson 08 candidate: ``celery worker`` with the prefork pool of N processes.

Matched concurrency: one worker (the consumer) with ``--pool prefork --concurrency N``, the
pool its users get by default. Every key starts with the candidate's own prefix (kombu's
``global_keyprefix`` transport option), and results are off, so no other key is made.

On Redis, kombu emulates acks: a message the worker fetched waits in the ``unacked`` hash
(``kombu/transport/redis.py``, ``QoS.append``) until acked, and a sweep puts back those older
than ``visibility_timeout`` (``QoS.restore_visible``; 1 hour by default). By default Celery
acks a job as a pool process takes it (``celery/worker/request.py``, ``Request.on_accepted``),
so jobs running at a kill are gone; the prefetched ones come back after an hour. The reliable
settings (:data:`shared.compare.celery_jobs.RELIABLE_TRANSPORT`) ack late and shorten the wait.
"""

from __future__ import annotations

import os
import sys
import uuid

import psutil
import redis
from celery import Celery  # type: ignore[import-untyped]

from shared.compare.base import Leftovers, Runs, kill_tree, read_runs, tree
from shared.compare.celery_jobs import RELIABLE_TRANSPORT, make_app
from shared.processes import LoggedChild

#: what ``celery worker`` logs once it consumes (``celery/apps/worker.py``, ``on_consumer_ready``)
READY_WORDS = " ready."
QUEUE = "celery"
WIRE_QUEUE = "wire"


class CeleryCandidate:
    name = "Celery"

    def __init__(self, redis_url: str, *, concurrency: int = 4, reliable: bool = False,
                 sleep_seconds: float = 1.0) -> None:
        self.redis_url, self.concurrency, self.reliable = redis_url, concurrency, reliable
        self.prefix = f"compare-celery-{uuid.uuid4().hex[:8]}"
        options = ", ".join(f"{k}={v}" for k, v in RELIABLE_TRANSPORT.items())
        self.settings = (f"task_acks_late, task_reject_on_worker_lost, {options}"
                         if reliable else "defaults")
        self.env = {**os.environ, "COMPARE_REDIS_URL": redis_url, "COMPARE_PREFIX": self.prefix,
                    "COMPARE_SLEEP_SECONDS": str(sleep_seconds),
                    "COMPARE_RELIABLE": "1" if reliable else ""}
        self.worker: LoggedChild | None = None
        self._pids: set[int] = set()
        self._sender: Celery | None = None
        self._starts = 0

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "shared.compare.celery_jobs", "worker",
                "--pool", "prefork", "--concurrency", str(self.concurrency), "--loglevel", "INFO",
                "-n", f"{self.prefix}-{self._starts}@%h"]

    def start(self) -> CeleryCandidate:
        self._starts += 1
        worker = self.worker = LoggedChild(self._command(), name="celery", env=self.env)
        worker.wait_until(lambda: READY_WORDS in worker.log_text(), 30,
                          "the celery worker to be ready")
        self._pids |= {p.pid for p in self._processes()}
        return self

    def _app(self) -> Celery:
        """The sending side: an app of its own with the same broker settings (as a web app has)."""
        if self._sender is None:
            self._sender = make_app(self.redis_url, self.prefix, reliable=self.reliable)
        return self._sender

    def enqueue(self, kind: str, job_id: str) -> None:
        """What ``sleep.delay(job_id)`` sends, by the task's name."""
        self._app().send_task(kind, args=(job_id,), queue=QUEUE)

    def runs(self) -> Runs:
        return read_runs(self.redis_url, self.prefix)

    def _processes(self) -> list[psutil.Process]:
        return tree(self.worker)

    def kill_worker(self) -> list[int]:
        """SIGKILL the consumer and its pool processes at once."""
        return kill_tree(self.worker)

    def restart_worker(self) -> None:
        self.start()

    def message_bytes(self) -> bytes:
        """The list entry ``noop.delay("wire")`` pushes (a kombu envelope: JSON, body base64),
        sent to a queue no worker reads, so it stays there to be read."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            self._app().send_task("noop", args=("wire",), queue=WIRE_QUEUE)
            [body] = client.lrange(f"{self.prefix}:{WIRE_QUEUE}", 0, 0)
            return body if isinstance(body, bytes) else b""
        finally:
            client.close()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=10)
        if self._sender is not None:
            self._sender.close()
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def leftovers(self) -> Leftovers:
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = sum(1 for _ in client.scan_iter(match=f"{self.prefix}*", count=500))
        finally:
            client.close()
        alive = sum(1 for pid in self._pids if _alive(pid))
        return Leftovers(keys, alive)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
