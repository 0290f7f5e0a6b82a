"""The two jobs as Celery's users write them: ``celery -A shared.compare.celery_jobs worker``.

The app is configured from the environment (``COMPARE_*``), so the sender and the worker
command agree on the Redis URL, the key prefix (kombu's ``global_keyprefix``) and the
settings under test. :func:`make_app` builds the same app for the sending side.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from shared.compare.base import run_job

#: the reliable settings' Redis transport options: a message a dead worker took comes back
#: once it is ``visibility_timeout`` s old, at the next sweep (every ``unacked_restore_interval``
#: s, scanning on every ``unacked_restore_throttle``-th call). Kombu's defaults: 3600, 10, 10.
#: The sweep puts back any message older than that, a live worker's too: with 5 s, a 7 s job
#: runs twice with no kill at all (measured), so it is for this experiment's 1 s jobs only.
RELIABLE_TRANSPORT = {"visibility_timeout": 5, "unacked_restore_interval": 1,
                      "unacked_restore_throttle": 1}


def make_app(redis_url: str, prefix: str, *, reliable: bool, sleep_seconds: float = 1.0) -> Celery:
    """A Celery app on ``redis_url`` whose every key starts with ``<prefix>:``; no results."""
    transport: dict[str, Any] = {"global_keyprefix": f"{prefix}:"}
    if reliable:
        transport.update(RELIABLE_TRANSPORT)
    app = Celery("compare", broker=redis_url, set_as_current=False)
    app.conf.update(broker_transport_options=transport, task_ignore_result=True,
                    result_backend=None, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=True)
    if reliable:
        app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)

    @app.task(name="noop")
    def noop(job_id: str) -> None:
        run_job(redis_url, prefix, job_id, "noop", 0.0)

    @app.task(name="sleep")
    def sleep(job_id: str) -> None:
        run_job(redis_url, prefix, job_id, "sleep", sleep_seconds)

    return app


app = make_app(os.environ.get("COMPARE_REDIS_URL", "redis://127.0.0.1:6379/0"),
               os.environ.get("COMPARE_PREFIX", "compare-celery"),
               reliable=os.environ.get("COMPARE_RELIABLE", "") == "1",
               sleep_seconds=float(os.environ.get("COMPARE_SLEEP_SECONDS", "1.0")))
