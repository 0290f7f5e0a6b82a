"""A durable job queue on Redis, written by hand so that Dramatiq is not magic.

Everything lives under one key prefix per app run (``defer:3f9a1c2e``). The
prefix is new each run, so a restarted app never reads an old run's jobs:
they stay in Redis, unread, until someone deletes them.

- ``<prefix>:queue``: a list of JSON jobs. The producer ``LPUSH``es on the
  left; workers take from the right, oldest first.
- ``<prefix>:processing:<worker>``: the jobs one worker holds. A reliable
  worker ``BLMOVE``s a job here, runs it, then acknowledges it with ``LREM``.
- ``<prefix>:heartbeat:<worker>``: a key with a short TTL that a live worker
  keeps setting. When it expires, the worker is presumed dead.
- ``<prefix>:workers``: the set of workers that registered.
- ``<prefix>:once:<job id>``: an idempotency key (``SET ... NX EX``).

Modules: :mod:`~shared.redis_queue.queue` (keys, producer),
:mod:`~shared.redis_queue.worker` (the naive and the reliable loop, the
heartbeat), :mod:`~shared.redis_queue.reaper` (dead workers' jobs back to the
queue), :mod:`~shared.redis_queue.pool` (worker processes),
:mod:`~shared.redis_queue.pickle_demo` (why jobs travel as JSON), and for
lesson 03: :mod:`~shared.redis_queue.demo` (crashes at chosen moments) and
:mod:`~shared.redis_queue.measure` (enqueue cost, scaling with workers),
:mod:`~shared.redis_queue.figures` (the queue's diagram, a crash's time line).
Run a worker with ``python -m shared.redis_queue --help``.
"""

from shared.redis_queue.queue import RedisQueue
from shared.redis_queue.reaper import Recovered, reap

__all__ = ["RedisQueue", "Recovered", "reap"]
