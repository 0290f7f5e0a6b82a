"""A worker on another machine: everything it touches must be reachable over the network.

The course's store is a SQLite *file*: any process of this machine opens it,
a worker on another machine cannot. :class:`RedisJobStore` keeps what the
workers write (job status, accounts' welcome flag and avatar, timing spans)
on a server instead, here Redis (in production, a database server such as
Postgres), with the part of :class:`shared.store.Store`'s interface that the
status middleware and :func:`shared.job.run_attempt` use.

:class:`RemoteWorkers` starts a ``dramatiq`` worker group
(:mod:`shared.production.remote_worker`) whose every dependency is an
address: the broker's URL, the status store's URL, the mail provider's host
and port. No path to a file: ``DEFER_STORE_PATH`` is empty.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
import redis

from shared.modes.dramatiq.broker import QUEUES, BrokerConfig, delete_namespace, namespace_keys
from shared.modes.dramatiq.workers import WorkerGroup
from shared.processes import wait_until
from shared.settings import Settings
from shared.store import STATUSES, JobStatus, QueuedJob, Span

REMOTE_MODULE = "shared.production.remote_worker"
STATUS_URL_VAR = "DEFER_STATUS_URL"
STATUS_SUFFIX = ".status"

_START = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'finished_at')
return attempts
"""
# ARGV: status, error ('' for none), now, attempt ('' for any)
_END = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[3])
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'error')
else redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
return 1
"""

#: Where Python's own files live: a worker reads code and package metadata there now and then
#: (a late import, ``importlib.metadata`` reading a version), which is no state of its own
INSTALLED = tuple(sorted({sys.prefix, sys.base_prefix}))


class RedisJobStore:
    """Job status, accounts and spans in Redis under one key prefix: a store on a server.

    One hash per job (``<prefix>:job:<id>``) and per account, a list of job
    ids in queue order, a list of spans. Changes that read then write (an
    attempt starts, an attempt ends) run as one Lua script, atomically.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.client = redis.Redis.from_url(url)
        self._start = self.client.register_script(_START)
        self._end = self.client.register_script(_END)

    @classmethod
    def for_run(cls, url: str, config: BrokerConfig) -> RedisJobStore:
        """The store of the run whose Dramatiq namespace is ``config.namespace``."""
        return cls(url, config.namespace + STATUS_SUFFIX)

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _account_key(self, email: str) -> str:
        return f"{self.prefix}:account:{email.lower()}"

    # -- what the web app writes ------------------------------------------------

    def create_account(self, email: str, jobs: Iterable[QueuedJob] = ()) -> None:
        """Record the account and its jobs as queued, in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._account_key(email), mapping={"email": email, "created_at": time.time(),
                                                     "welcomed": 0})
        for job in jobs:
            pipe.hset(self._job_key(job.id), mapping={
                "id": job.id, "kind": job.kind, "email": job.email,
                "request_id": job.request_id, "status": "queued", "attempts": 0,
                "enqueued_at": job.enqueued_at})
            pipe.rpush(f"{self.prefix}:jobs", job.id)
        pipe.execute()

    # -- what the status middleware and run_attempt write -----------------------

    def start_attempt(self, job_id: str) -> int:
        """Mark the job running; return this attempt's number (``KeyError`` if no such job)."""
        attempts = int(self._start(keys=[self._job_key(job_id)], args=[time.time()]))
        if attempts < 0:
            raise KeyError(f"no job {job_id!r} in {self}")
        return attempts

    def end_attempt(self, job_id: str, status: str, error: str | None = None, *,
                    attempt: int | None = None) -> None:
        """As :meth:`shared.store.Store.end_attempt`: only while no later attempt has started."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        self._end(keys=[self._job_key(job_id)],
                  args=[status, error or "", time.time(), "" if attempt is None else attempt])

    def mark_welcomed(self, email: str) -> None:
        self.client.hset(self._account_key(email), "welcomed", 1)

    def set_avatar(self, email: str, png: bytes) -> None:
        self.client.hset(self._account_key(email), "avatar", png)

    def add_span(self, span: Span) -> None:
        self.client.rpush(f"{self.prefix}:spans", json.dumps(vars(span)))

    # -- what anyone reads, from anywhere ---------------------------------------

    def job(self, job_id: str) -> JobStatus | None:
        fields = {_text(k): _text(v) for k, v in self.client.hgetall(self._job_key(job_id)).items()}
        if not fields:
            return None
        return JobStatus(id=fields["id"], kind=fields["kind"], status=fields["status"],
                         attempts=int(fields["attempts"]), error=fields.get("error"),
                         enqueued_at=float(fields["enqueued_at"]),
                         started_at=_number(fields.get("started_at")),
                         finished_at=_number(fields.get("finished_at")),
                         email=fields["email"], request_id=fields["request_id"])

    def jobs(self) -> list[JobStatus]:
        """Every job, in the order they were queued."""
        ids = [_text(raw) for raw in self.client.lrange(f"{self.prefix}:jobs", 0, -1)]
        return [job for job in map(self.job, ids) if job is not None]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        statuses = [job.status for job in self.jobs()]
        return {status: statuses.count(status) for status in STATUSES}

    def welcomed(self, email: str) -> bool:
        return self.client.hget(self._account_key(email), "welcomed") == b"1"

    def avatar(self, email: str) -> bytes | None:
        raw = self.client.hget(self._account_key(email), "avatar")
        return raw.encode() if isinstance(raw, str) else raw

    def spans(self) -> list[Span]:
        return [Span(**json.loads(raw)) for raw in self.client.lrange(f"{self.prefix}:spans", 0, -1)]

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()

    def __repr__(self) -> str:
        return f"<RedisJobStore {self.prefix}>"


def _text(raw: bytes | str) -> str:
    """A Redis reply as text (this client answers bytes)."""
    return raw.decode() if isinstance(raw, bytes) else raw


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


class RemoteGroup(WorkerGroup):
    """A worker group that runs :mod:`shared.production.remote_worker`'s actors."""

    def command(self) -> list[str]:
        command = super().command()
        return [*command[:3], REMOTE_MODULE, *command[4:]]


class RemoteWorkers:
    """A worker group told only addresses, and the status store it writes to.

    ``env`` (:meth:`addresses`) is every ``DEFER_`` variable the group gets;
    nothing else of this notebook's ``DEFER_`` settings reaches it. Stop it
    with :meth:`stop`, which deletes the run's keys.
    """

    def __init__(self, broker_url: str, status_url: str, *, smtp_host: str, smtp_port: int,
                 processes: int = 1, threads: int = 2, avatar_canvas: int = 256) -> None:
        self.config = BrokerConfig.fresh()
        self.broker_url, self.status_url = broker_url, status_url
        self.settings = Settings(smtp_host=smtp_host, smtp_port=smtp_port, redis_url=broker_url,
                                 avatar_canvas=avatar_canvas)
        self.store = RedisJobStore.for_run(status_url, self.config)
        self._folder = Path(tempfile.mkdtemp(prefix="defer-remote-"))
        self.group = RemoteGroup("remote", tuple(sorted(QUEUES.values())), processes, threads,
                                 self._folder)

    def addresses(self) -> dict[str, str]:
        """The ``DEFER_`` variables the group gets: where things are, and the run's names."""
        return {**self.settings.to_env(), **self.config.to_env(), STATUS_URL_VAR: self.status_url}

    def start(self, timeout: float = 30.0) -> RemoteWorkers:
        """Start the group; return once every worker process consumes."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DEFER_")}
        self.group.start({**inherited, **self.addresses(), "dramatiq_worker_timeout": "100",
                          "PYTHONUNBUFFERED": "1"})
        self.group.current.wait_until(self.group.ready, timeout, "the remote worker group")
        return self

    def files_open(self) -> list[str]:
        """Files the group's worker processes have open, their log aside (a store would be one).

        Python's installation is left out (``INSTALLED``): a worker may be reading a module it
        imports late, or a package's metadata, at the moment it is asked."""
        found = []
        for process in self.group.worker_processes():
            try:
                found += [f.path for f in process.open_files()
                          if not Path(f.path).is_relative_to(self._folder)
                          and not f.path.startswith(INSTALLED)]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    def wait_finished(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` jobs are done or failed, read through the status URL."""
        def finished() -> bool:
            counts = self.store.counts()
            return counts["done"] + counts["failed"] >= count

        wait_until(finished, timeout, f"{count} jobs to finish on the remote worker group",
                   problem=self.group.current.problem)

    def begin_stop(self) -> None:
        """Ask the group to stop (it finishes its jobs); :meth:`stop` waits for it."""
        self.group.terminate()

    def processes_left(self) -> int:
        """The group's processes still running (its main process and its workers)."""
        return len(self.group.worker_processes()) + int(self.group.running)

    def keys_left(self) -> int:
        """The run's keys in Redis now: queues, results, status."""
        client = redis.Redis.from_url(self.status_url)
        try:
            status = list(client.scan_iter(match=f"{self.store.prefix}:*", count=500))
        finally:
            client.close()
        return len(namespace_keys(self.broker_url, self.config.namespace)) + len(status)

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the group, delete the run's keys (queues, results, status); return how many."""
        if self.group.child is not None:
            self.group.terminate()
            self.group.stop(timeout)
        deleted = delete_namespace(self.broker_url, self.config.namespace)
        deleted += _delete_prefix(self.store.client, self.store.prefix)
        self.store.close()
        shutil.rmtree(self._folder, ignore_errors=True)
        return deleted


def _delete_prefix(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
    return len(keys)
