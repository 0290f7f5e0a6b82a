"""Dramatiq as a lesson 08 candidate: ``dramatiq`` with one process of N threads.

Matched concurrency: one worker process with ``concurrency`` threads (``-p 1 -t N``).
A message stays in the worker's ``__acks__`` set until its job ends, so a SIGKILLed
worker's messages come back, but only once its heartbeat is older than
``heartbeat_timeout`` (60 s by default) and a fetch draws maintenance
(``dramatiq/brokers/redis/dispatch.lua``). The reliable settings shorten that wait.
"""

from __future__ import annotations

import os
import sys
import uuid

import psutil
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from shared.compare.base import Leftovers, Runs, kill_tree, read_runs, tree
from shared.processes import LoggedChild

READY_LINE = "Worker process is ready for action."
RELIABLE_HEARTBEAT_MS = 2_000


class DramatiqCandidate:
    name = "Dramatiq"

    def __init__(self, redis_url: str, *, concurrency: int = 4, reliable: bool = False,
                 sleep_seconds: float = 1.0) -> None:
        self.redis_url, self.concurrency, self.reliable = redis_url, concurrency, reliable
        self.prefix = f"compare-dramatiq-{uuid.uuid4().hex[:8]}"
        self.settings = (f"heartbeat_timeout={RELIABLE_HEARTBEAT_MS} ms, maintenance on every "
                         "fetch" if reliable else "defaults")
        self.env = {**os.environ, "COMPARE_REDIS_URL": redis_url, "COMPARE_PREFIX": self.prefix,
                    "COMPARE_SLEEP_SECONDS": str(sleep_seconds),
                    "COMPARE_HEARTBEAT_MS": str(RELIABLE_HEARTBEAT_MS) if reliable else ""}
        self.worker: LoggedChild | None = None
        self._pids: set[int] = set()
        self._sender: RedisBroker | None = None

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "dramatiq", "shared.compare.dramatiq_jobs",
                "-p", "1", "-t", str(self.concurrency), "--queues", "jobs"]

    def start(self) -> DramatiqCandidate:
        self.worker = LoggedChild(self._command(), name="dramatiq", env=self.env)
        self.worker.wait_until(lambda: READY_LINE in self.worker.log_text(), 30,  # type: ignore[union-attr]
                               "the dramatiq worker to be ready")
        self._pids |= {p.pid for p in self._processes()}
        return self

    def _broker(self) -> RedisBroker:
        """The sending side: a broker of its own on the same namespace (as a web app has)."""
        if self._sender is None:
            self._sender = RedisBroker(url=self.redis_url, namespace=self.prefix)
            self._sender.declare_queue("jobs")
        return self._sender

    def enqueue(self, kind: str, job_id: str) -> None:
        """What ``sleep.send(job_id)`` does, without importing the worker's module here."""
        self._broker().enqueue(Message(queue_name="jobs", actor_name=kind, args=(job_id,),
                                       kwargs={}, options={}))

    def runs(self) -> Runs:
        return read_runs(self.redis_url, self.prefix)

    def _processes(self) -> list[psutil.Process]:
        return tree(self.worker)

    def kill_worker(self) -> list[int]:
        return kill_tree(self.worker)

    def restart_worker(self) -> None:
        self.start()

    def message_bytes(self) -> bytes:
        client = redis.Redis.from_url(self.redis_url)
        try:
            self.enqueue("noop", "wire")
            [message_id] = client.lrange(f"{self.prefix}:jobs", -1, -1)
            body = client.hget(f"{self.prefix}:jobs.msgs", message_id)
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
        alive = sum(1 for pid in self._pids if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        return Leftovers(keys, alive)

