"""The two jobs as arq's users write them: ``arq shared.compare.arq_jobs.WorkerSettings``.

Both jobs are coroutines; the sleep job awaits ``asyncio.sleep``, so one worker process
runs ``max_jobs`` of them at once on one event loop. They record their runs in the same
Redis hashes as every candidate (:mod:`shared.compare.base`), through the worker's own
async Redis pool (``ctx["redis"]``).

Everything is set from the environment (``COMPARE_*``), so the sender and the worker
command agree on the Redis URL, the queue (a sorted set of this candidate's own), the
concurrency and the settings under test.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arq.connections import RedisSettings

REDIS_URL = os.environ.get("COMPARE_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("COMPARE_PREFIX", "compare-arq")
QUEUE = f"{PREFIX}:queue"
SLEEP_SECONDS = float(os.environ.get("COMPARE_SLEEP_SECONDS", "1.0"))
CONCURRENCY = int(os.environ.get("COMPARE_CONCURRENCY", "4"))
#: "" for arq's defaults; else job_timeout in seconds (a killed job runs again after it + 10 s)
JOB_TIMEOUT = os.environ.get("COMPARE_JOB_TIMEOUT", "")
POLL_DELAY = os.environ.get("COMPARE_POLL_DELAY", "")
#: "" for arq's default of 5; 1 makes a job that was cut off fail instead of running again
MAX_TRIES = os.environ.get("COMPARE_MAX_TRIES", "")


async def _record(ctx: dict[str, Any], job_id: str, stage: str) -> None:
    await ctx["redis"].hincrby(f"{PREFIX}:{stage}", job_id, 1)


async def noop(ctx: dict[str, Any], job_id: str) -> None:
    await _record(ctx, job_id, "started")
    await _record(ctx, job_id, "finished")


async def sleep(ctx: dict[str, Any], job_id: str) -> None:
    await _record(ctx, job_id, "started")
    await asyncio.sleep(SLEEP_SECONDS)
    await _record(ctx, job_id, "finished")


class WorkerSettings:
    """Read by ``arq``'s command line: each attribute named like a ``Worker`` argument."""

    functions = [noop, sleep]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    queue_name = QUEUE
    max_jobs = CONCURRENCY
    if JOB_TIMEOUT:
        job_timeout = float(JOB_TIMEOUT)
    if POLL_DELAY:
        poll_delay = float(POLL_DELAY)
    if MAX_TRIES:
        max_tries = int(MAX_TRIES)
