"""The two jobs as RQ's users write them: plain functions the ``rq worker`` imports by name.

RQ stores the call (``"shared.compare.rq_jobs.sleep"``, its arguments) pickled in the job's
hash; the work-horse the worker forks imports this module and calls the function. Where to
record the runs travels with the arguments, so no configuration is shared.
"""

from __future__ import annotations

from shared.compare.base import run_job


def noop(redis_url: str, prefix: str, job_id: str) -> None:
    run_job(redis_url, prefix, job_id, "noop", 0.0)


def sleep(redis_url: str, prefix: str, job_id: str, seconds: float) -> None:
    run_job(redis_url, prefix, job_id, "sleep", seconds)
