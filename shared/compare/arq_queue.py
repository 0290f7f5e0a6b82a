"""arq as a lesson 08 candidate: ``arq shared.compare.arq_jobs.WorkerSettings``, one process.

Matched concurrency: one worker process running ``max_jobs = concurrency`` coroutines at
once on one event loop (arq has no threads or child processes).

A job stays in the queue (a sorted set) until it ends; a worker that starts it sets
``arq:in-progress:<id>`` with a lifetime of ``job_timeout + 10 s`` (``Worker.__init__``:
``in_progress_timeout_s``; ``Worker.start_jobs``), and no worker starts a job whose
in-progress key exists. So a SIGKILLed worker's jobs run again, but only once that key
expires: 310 s with the default ``job_timeout`` of 300 s. Each start counts a try
(``arq:retry:<id>``, ``Worker.run_job``); past ``max_tries`` (5) the job fails for good.
The reliable settings lower ``job_timeout`` so the wait is short; ``max_tries=1`` (an
option here) makes a cut-off job fail instead of running again: at most once.

Job ids are the caller's, prefixed with this candidate's own prefix, so every key it
makes (``arq:job:``, ``arq:in-progress:``, ``arq:retry:``, ``arq:result:`` + id, and
the queue ``<prefix>:queue``) is its own and :meth:`ArqCandidate.stop` deletes exactly those.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import psutil
import redis
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import (in_progress_key_prefix, job_key_prefix, result_key_prefix,
                           retry_key_prefix)

from shared.compare.base import Leftovers, Runs, kill_tree, read_runs, tree
from shared.processes import LoggedChild

#: logged by the worker right before its first poll (``arq.connections.log_redis_info``)
READY_TEXT = "redis_version="
#: the reliable settings: a killed job runs again after this + 10 s (arq's fixed margin)
RELIABLE_JOB_TIMEOUT_S = 3
ARQ_PREFIXES = (job_key_prefix, in_progress_key_prefix, retry_key_prefix, result_key_prefix)


class ArqCandidate:
    name = "arq"

    def __init__(self, redis_url: str, *, concurrency: int = 4, reliable: bool = False,
                 sleep_seconds: float = 1.0, poll_delay: float | None = None,
                 max_tries: int | None = None) -> None:
        self.redis_url, self.concurrency, self.reliable = redis_url, concurrency, reliable
        self.prefix = f"compare-arq-{uuid.uuid4().hex[:8]}"
        self.queue = f"{self.prefix}:queue"
        tries = 5 if max_tries is None else max_tries
        self.settings = (f"job_timeout={RELIABLE_JOB_TIMEOUT_S} s (in-progress key "
                         f"{RELIABLE_JOB_TIMEOUT_S + 10} s), max_tries={tries}" if reliable
                         else "defaults" if max_tries is None else f"max_tries={tries}")
        self.env = {**os.environ, "COMPARE_REDIS_URL": redis_url, "COMPARE_PREFIX": self.prefix,
                    "COMPARE_SLEEP_SECONDS": str(sleep_seconds),
                    "COMPARE_CONCURRENCY": str(concurrency),
                    "COMPARE_JOB_TIMEOUT": str(RELIABLE_JOB_TIMEOUT_S) if reliable else "",
                    "COMPARE_POLL_DELAY": "" if poll_delay is None else str(poll_delay),
                    "COMPARE_MAX_TRIES": "" if max_tries is None else str(max_tries)}
        self.worker: LoggedChild | None = None
        self._pids: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ArqRedis | None = None

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "arq", "shared.compare.arq_jobs.WorkerSettings"]

    def start(self) -> ArqCandidate:
        self.worker = LoggedChild(self._command(), name="arq", env=self.env)
        self.worker.wait_until(lambda: READY_TEXT in self.worker.log_text(), 30,  # type: ignore[union-attr]
                               "the arq worker to be ready")
        self._pids.add(self.worker.pid)
        return self

    def _sender(self) -> tuple[asyncio.AbstractEventLoop, ArqRedis]:
        """The sending side: arq's own pool, on a private event loop (the protocol is sync)."""
        if self._loop is None or self._pool is None:
            self._loop = asyncio.new_event_loop()
            self._pool = self._loop.run_until_complete(create_pool(
                RedisSettings.from_dsn(self.redis_url), default_queue_name=self.queue))
        return self._loop, self._pool

    def _arq_id(self, job_id: str) -> str:
        return f"{self.prefix}-{job_id}"

    def enqueue(self, kind: str, job_id: str) -> None:
        """``await pool.enqueue_job(kind, job_id, _job_id=...)``, as arq's users send a job."""
        loop, pool = self._sender()
        job = loop.run_until_complete(pool.enqueue_job(kind, job_id, _job_id=self._arq_id(job_id)))
        if job is None:
            raise RuntimeError(f"arq refused job {job_id!r}: one with its id exists")

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
            body = client.get(job_key_prefix + self._arq_id("wire"))
            return body if isinstance(body, bytes) else b""
        finally:
            client.close()

    def _patterns(self) -> list[str]:
        return [f"{self.prefix}*"] + [f"{p}{self.prefix}-*" for p in ARQ_PREFIXES]

    def _keys(self, client: redis.Redis) -> list[bytes]:
        return [k for pattern in self._patterns() for k in client.scan_iter(match=pattern, count=500)]

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=10)
        if self._loop is not None:
            if self._pool is not None:
                self._loop.run_until_complete(self._pool.aclose())
            self._loop.close()
            self._loop = self._pool = None
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = self._keys(client)
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def leftovers(self) -> Leftovers:
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = len(self._keys(client))
        finally:
            client.close()
        return Leftovers(keys, sum(1 for pid in self._pids if _alive(pid)))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
