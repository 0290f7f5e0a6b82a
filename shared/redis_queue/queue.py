"""The queue's keys in Redis, and the one command a producer needs: ``LPUSH``."""

from __future__ import annotations

import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.job import Job

TIMEOUT = 5.0  # seconds for any one Redis command; blocking pops add their own wait


def text(reply: bytes | str) -> str:
    """A Redis reply as text: this client answers bytes (redis-py's types allow either)."""
    return reply.decode() if isinstance(reply, bytes) else reply


def connect(url: str) -> redis.Redis:
    """A client that fails fast: no hidden retries, bounded waits."""
    return redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT + 5,
                                retry=Retry(NoBackoff(), 0))


class RedisQueue:
    """One job queue in Redis: its key names, the producer, and a look inside.

    ``prefix`` keeps queues apart: every app run (and every test) makes its
    own with :meth:`fresh`, and :meth:`delete` removes all its keys.
    """

    def __init__(self, url: str, prefix: str) -> None:
        if not prefix or any(c in prefix for c in " *?[]"):
            raise ValueError(f"prefix must be a plain, non-empty name, got {prefix!r}")
        self.url, self.prefix = url, prefix
        self.redis = connect(url)
        self.queue = f"{prefix}:queue"
        self.workers = f"{prefix}:workers"

    @classmethod
    def fresh(cls, url: str) -> RedisQueue:
        """A queue under a new random prefix, shared with nobody."""
        return cls(url, f"defer:{uuid.uuid4().hex[:8]}")

    def processing(self, worker: str) -> str:
        return f"{self.prefix}:processing:{worker}"

    def heartbeat(self, worker: str) -> str:
        return f"{self.prefix}:heartbeat:{worker}"

    def once(self, job_id: str) -> str:
        return f"{self.prefix}:once:{job_id}"

    # -- the producer ------------------------------------------------------------

    def enqueue(self, job: Job) -> None:
        """Put ``job`` at the back of the line: one ``LPUSH`` of its JSON."""
        self.redis.lpush(self.queue, job.to_json())

    # -- looking inside ------------------------------------------------------------

    def waiting(self) -> int:
        """How many jobs wait in the queue."""
        return self.redis.llen(self.queue)

    def held(self) -> dict[str, int]:
        """How many jobs each registered worker holds in its processing list."""
        names = sorted(text(w) for w in self.redis.smembers(self.workers))
        return {name: self.redis.llen(self.processing(name)) for name in names}

    def alive(self, worker: str) -> bool:
        """Whether ``worker``'s heartbeat key still exists."""
        return bool(self.redis.exists(self.heartbeat(worker)))

    def keys(self) -> list[str]:
        """Every key under this queue's prefix, sorted."""
        return sorted(k.decode() for k in self.redis.scan_iter(match=f"{self.prefix}:*"))

    def delete(self) -> int:
        """Delete every key under this queue's prefix; return how many there were."""
        keys = self.keys()
        if keys:
            self.redis.delete(*keys)
        return len(keys)

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"<RedisQueue {self.prefix}>"
