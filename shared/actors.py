"""The course's Dramatiq actors, for worker processes: ``dramatiq shared.actors``.

Importing this module builds the broker from the environment the web app
gave the worker group (:meth:`shared.settings.Settings.to_env` and
:meth:`shared.dramatiq_setup.BrokerConfig.to_env`), then declares one actor
per kind of job. Each actor runs the job with :func:`shared.job.run_job`,
which records its status and timing in the store, and returns a small
summary that the ``Results`` middleware keeps in Redis.

Only worker processes import this module; the web app sends its messages
with :func:`shared.dramatiq_setup.job_message` and never needs the actors.
"""

from __future__ import annotations

import json
import os
import time

import dramatiq

from shared.dramatiq_setup import BrokerConfig, make_broker
from shared.job import Job, run_job
from shared.settings import Settings
from shared.status_middleware import StoreStatus
from shared.store import Store

settings = Settings.from_env()
if not settings.store_path:
    raise RuntimeError("DEFER_STORE_PATH is not set: start workers through the dramatiq "
                       "mode (create_app('dramatiq') or make serve MODE=dramatiq)")
store = Store(settings.store_path)
broker = make_broker(settings.redis_url, BrokerConfig.from_env(), middleware=[StoreStatus(store)])
dramatiq.set_broker(broker)

# Lesson 06 is about retries; here a failed job fails once, and says why.
JOB_OPTIONS = {"max_retries": 0, "store_results": True}


def _run(job_fields: dict) -> dict:
    job = Job.from_json(json.dumps(job_fields))
    start = time.perf_counter()
    run_job(job, store, settings)
    return {"job": job.id, "kind": job.kind, "pid": os.getpid(),
            "seconds": round(time.perf_counter() - start, 4)}


@dramatiq.actor(**JOB_OPTIONS)
def welcome_email(job: dict) -> dict:
    """Send the welcome email of ``job`` (a :class:`shared.job.Job` as a dict)."""
    return _run(job)


@dramatiq.actor(**JOB_OPTIONS)
def avatar(job: dict) -> dict:
    """Render and store the avatar of ``job``."""
    return _run(job)
