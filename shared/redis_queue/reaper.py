"""The reaper: a dead worker's jobs go back to the queue.

A worker that dies (SIGKILL, out of memory, a pulled plug) leaves the job
it held in its processing list. Its heartbeat key then expires. Whoever
runs :func:`reap` (here the app's runner; in Dramatiq every worker) moves
those jobs back to the front of the queue, where another worker takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.redis_queue.queue import RedisQueue, text


@dataclass(frozen=True)
class Recovered:
    """What :func:`reap` did about one dead worker."""

    worker: str
    jobs: int


def reap(queue: RedisQueue) -> list[Recovered]:
    """Requeue the jobs of every registered worker whose heartbeat expired."""
    recovered = []
    for name in sorted(text(w) for w in queue.redis.smembers(queue.workers)):
        if queue.alive(name):
            continue
        moved = 0  # LMOVE is atomic: each job is in exactly one list at any moment
        while queue.redis.lmove(queue.processing(name), queue.queue, "RIGHT", "RIGHT") is not None:
            moved += 1
        queue.redis.srem(queue.workers, name)
        recovered.append(Recovered(name, moved))
    return recovered
