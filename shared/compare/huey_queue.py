"""Huey as a lesson 08 candidate: ``huey_consumer`` with N worker threads.

Matched concurrency: one consumer with ``-w N -k thread``; threads are Huey's default worker
type (``huey/consumer_options.py``, ``config_defaults``) and the jobs wait on I/O. Every key
Huey makes ends with the candidate's own huey name (``huey/storage.py``,
``RedisStorage.__init__``: ``huey.redis.<name>``, ``huey.schedule.<name>``, ...), the jobs
record their runs under ``<name>:...``, and results are off.

Huey has no acknowledgement. A worker takes a message with ``BRPOP`` (``RedisStorage.dequeue``;
``blocking=True`` by default, so the ``-d``/``-m``/``-b`` polling backoff of ``Worker.sleep`` in
``huey/consumer.py`` only applies with ``blocking=False``); from then on the message lives only
in the worker's memory. A SIGKILL loses every task that was running, and the rest wait in the
list for the restarted consumer. The "reliable" settings are the most Huey documents: task
retries and a ``SIGNAL_INTERRUPTED`` handler that re-enqueues (see
:mod:`shared.compare.huey_jobs`); neither runs when the process is SIGKILLed.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import psutil
import redis

from shared.compare.base import Leftovers, Runs, kill_tree, read_runs, tree
from shared.compare.huey_jobs import RELIABLE_TASK, make_huey
from shared.processes import LoggedChild

#: what ``huey_consumer`` logs as it starts its workers (``huey/consumer.py``, ``Consumer.start``)
READY_WORDS = "The following commands are available"


class HueyCandidate:
    name = "Huey"

    def __init__(self, redis_url: str, *, concurrency: int = 4, reliable: bool = False,
                 sleep_seconds: float = 1.0, blocking: bool = True,
                 consumer_options: tuple[str, ...] = ()) -> None:
        self.redis_url, self.concurrency, self.reliable = redis_url, concurrency, reliable
        # huey keeps only [A-Za-z0-9_] of a name (RedisStorage.clean_name)
        self.prefix = f"compare_huey_{uuid.uuid4().hex[:8]}"
        options = ", ".join(f"{k}={v}" for k, v in RELIABLE_TASK.items())
        self.settings = (f"task {options}, SIGNAL_INTERRUPTED re-enqueues (no ack exists)"
                         if reliable else "defaults")
        self.sleep_seconds, self.blocking = sleep_seconds, blocking
        self.env = {**os.environ, "COMPARE_REDIS_URL": redis_url, "COMPARE_PREFIX": self.prefix,
                    "COMPARE_SLEEP_SECONDS": str(sleep_seconds),
                    "COMPARE_RELIABLE": "1" if reliable else "",
                    "COMPARE_HUEY_BLOCKING": "1" if blocking else "0"}
        #: more huey_consumer options, e.g. ("-d", "0.05", "-m", "1") for the polling backoff
        self.consumer_options = consumer_options
        self.worker: LoggedChild | None = None
        self._pids: set[int] = set()
        self._sender: tuple[Any, dict[str, Any]] | None = None

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "huey.bin.huey_consumer", "shared.compare.huey_jobs.huey",
                "-w", str(self.concurrency), "-k", "thread", *self.consumer_options]

    def start(self) -> HueyCandidate:
        worker = self.worker = LoggedChild(self._command(), name="huey", env=self.env)
        worker.wait_until(lambda: READY_WORDS in worker.log_text(), 30,
                          "huey_consumer to start its workers")
        self._pids |= {p.pid for p in self._processes()}
        return self

    def _tasks(self) -> dict[str, Any]:
        """The sending side: a Huey of its own with the same name and tasks (as a web app has)."""
        if self._sender is None:
            self._sender = make_huey(self.redis_url, self.prefix, reliable=self.reliable,
                                     sleep_seconds=self.sleep_seconds, blocking=self.blocking)
        return self._sender[1]

    def enqueue(self, kind: str, job_id: str) -> None:
        """``sleep(job_id)``: calling a task enqueues it."""
        self._tasks()[kind](job_id)

    def runs(self) -> Runs:
        return read_runs(self.redis_url, self.prefix)

    def _processes(self) -> list[psutil.Process]:
        return tree(self.worker)

    def kill_worker(self) -> list[int]:
        """SIGKILL the consumer (its worker threads die with it)."""
        return kill_tree(self.worker)

    def restart_worker(self) -> None:
        self.start()

    def message_bytes(self) -> bytes:
        """The list entry ``noop("wire")`` pushes, sent by a Huey named ``<name>_wire`` that no
        consumer reads, so it stays there to be read."""
        wire, tasks = make_huey(self.redis_url, f"{self.prefix}_wire", reliable=self.reliable)
        client = redis.Redis.from_url(self.redis_url)
        try:
            tasks["noop"]("wire")
            [body] = client.lrange(f"huey.redis.{self.prefix}_wire", 0, 0)
            return body if isinstance(body, bytes) else b""
        finally:
            client.close()
            wire.storage.pool.disconnect()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=10)
        if self._sender is not None:
            self._sender[0].storage.pool.disconnect()
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"*{self.prefix}*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def leftovers(self) -> Leftovers:
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = sum(1 for _ in client.scan_iter(match=f"*{self.prefix}*", count=500))
        finally:
            client.close()
        alive = sum(1 for pid in self._pids if _alive(pid))
        return Leftovers(keys, alive)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
