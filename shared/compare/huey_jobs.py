"""The two jobs as Huey's users write them: ``huey_consumer shared.compare.huey_jobs.huey``.

The Huey instance is configured from the environment (``COMPARE_*``), so the sender and the
consumer command agree on the Redis URL, the huey name (every key Huey makes ends with it:
``huey.redis.<name>``, ``huey.schedule.<name>``, ...) and the settings under test.
:func:`make_huey` builds the same instance for the sending side.

Huey has no acknowledgement: ``RedisStorage.dequeue`` takes a message with ``BRPOP`` (a pop,
``huey/storage.py``), so once a worker holds it, Redis no longer does. The most Huey offers
for a worker that dies is what :data:`RELIABLE_TASK` and :func:`requeue_interrupted` use:
retries (``huey/api.py``, ``Huey._execute``: re-enqueued only after the task *raised*) and
``SIGNAL_INTERRUPTED`` (sent by ``Consumer.run`` through ``Huey.notify_interrupted_tasks``
for the tasks still running when the consumer *exits*; a SIGKILL runs no Python at all).
"""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey  # type: ignore[import-untyped]
from huey.signals import SIGNAL_INTERRUPTED  # type: ignore[import-untyped]

from shared.compare.base import run_job

#: the reliable settings' task options: retry a task that raised, twice, 1 s apart
RELIABLE_TASK = {"retries": 2, "retry_delay": 1}


def make_huey(redis_url: str, name: str, *, reliable: bool, sleep_seconds: float = 1.0,
              blocking: bool = True) -> tuple[Any, dict[str, Any]]:
    """A RedisHuey named ``name`` (keys ``huey.*.<name>``), no results; and its two tasks.

    Its jobs record their runs under ``<name>:started`` and ``<name>:finished``. ``blocking``
    is RedisStorage's own option (default True: ``BRPOP`` with a 1 s timeout; False: ``RPOP``,
    and the consumer sleeps between empty polls, ``-d`` 0.1 s growing ``-b`` 1.15x up to ``-m``
    10 s, ``huey/consumer.py``, ``Worker.loop`` and ``Worker.sleep``)."""
    huey = RedisHuey(name, url=redis_url, results=False, blocking=blocking)
    options = RELIABLE_TASK if reliable else {}

    @huey.task(**options)
    def noop(job_id: str) -> None:
        run_job(redis_url, name, job_id, "noop", 0.0)

    @huey.task(**options)
    def sleep(job_id: str) -> None:
        run_job(redis_url, name, job_id, "sleep", sleep_seconds)

    if reliable:
        huey.signal(SIGNAL_INTERRUPTED)(requeue_interrupted(huey))
    return huey, {"noop": noop, "sleep": sleep}


def requeue_interrupted(huey: Any) -> Any:
    """A ``SIGNAL_INTERRUPTED`` handler that puts the cut-off task back on the queue."""
    def requeue(signal: str, task: Any) -> None:
        huey.enqueue(task)
    return requeue


huey, TASKS = make_huey(os.environ.get("COMPARE_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        os.environ.get("COMPARE_PREFIX", "compare_huey"),
                        reliable=os.environ.get("COMPARE_RELIABLE", "") == "1",
                        sleep_seconds=float(os.environ.get("COMPARE_SLEEP_SECONDS", "1.0")),
                        blocking=os.environ.get("COMPARE_HUEY_BLOCKING", "1") == "1")
