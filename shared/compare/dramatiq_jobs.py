"""The two jobs as Dramatiq's users write them: ``dramatiq shared.compare.dramatiq_jobs``.

The broker is set from the environment (``COMPARE_*``), so the sender and the worker
command agree on the Redis URL, the key namespace and the settings under test.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared.compare.base import run_job

REDIS_URL = os.environ.get("COMPARE_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("COMPARE_PREFIX", "compare-dramatiq")
SLEEP_SECONDS = float(os.environ.get("COMPARE_SLEEP_SECONDS", "1.0"))
#: "" for Dramatiq's defaults; else heartbeat_timeout in ms, with maintenance on every fetch
HEARTBEAT_MS = os.environ.get("COMPARE_HEARTBEAT_MS", "")

options: dict = {"url": REDIS_URL, "namespace": PREFIX}
if HEARTBEAT_MS:
    options.update(heartbeat_timeout=int(HEARTBEAT_MS), maintenance_chance=1_000_000)
broker = RedisBroker(**options)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="jobs", max_retries=0)
def noop(job_id: str) -> None:
    run_job(REDIS_URL, PREFIX, job_id, "noop", 0.0)


@dramatiq.actor(queue_name="jobs", max_retries=0)
def sleep(job_id: str) -> None:
    run_job(REDIS_URL, PREFIX, job_id, "sleep", SLEEP_SECONDS)
