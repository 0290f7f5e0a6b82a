"""The actors, for worker processes: ``dramatiq shared.modes.dramatiq.actors``.

Importing this module builds the broker from the environment the web app
gave the worker group (:meth:`shared.settings.Settings.to_env` and
:meth:`shared.modes.dramatiq.broker.BrokerConfig.to_env`), then declares one
actor per kind of job, each on its own queue
(:data:`shared.modes.dramatiq.broker.QUEUES`), so a group started with
``--queues email`` runs only welcome emails.

An actor only runs the work (:func:`shared.job.run_attempt`, which records
the attempt's timing) and returns a small summary that the ``Results``
middleware keeps in Redis. Every status the store shows is written by
:class:`shared.modes.dramatiq.status.StoreStatus`. Whether a failed email is
tried again is said once, by the email actor's ``retry_when``
(:func:`shared.retry_policy.retry_transient`: transient errors only, at most
``email_max_retries`` times); the avatar is never retried.

Only worker processes import this module; the web app sends its messages
with :func:`shared.modes.dramatiq.broker.job_message` and never needs the actors.
"""

from __future__ import annotations

import json
import os
import time

import dramatiq
from dramatiq.middleware import Retries

from shared.job import Job, run_attempt
from shared.modes.dramatiq.broker import BrokerConfig, make_broker, queue_of
from shared.modes.dramatiq.metrics import add_metrics
from shared.modes.dramatiq.status import StoreStatus
from shared.retry_policy import retry_transient
from shared.settings import Settings
from shared.store import Store

settings = Settings.from_env()
if not settings.store_path:
    raise RuntimeError("DEFER_STORE_PATH is not set: start workers through the dramatiq "
                       "mode (create_app('dramatiq') or make serve MODE=dramatiq)")
store = Store(settings.store_path)
config = BrokerConfig.from_env()
status = StoreStatus(store)
broker = make_broker(settings.redis_url, config)
broker.add_middleware(status, before=Retries)  # its after-hooks run once Retries has decided
add_metrics(broker)  # Prometheus, when the mode turned metrics on (lesson 07)
dramatiq.set_broker(broker)


def _run(job_fields: dict) -> dict:
    job = Job.from_json(json.dumps(job_fields))
    start = time.perf_counter()
    run_attempt(job, store, settings, status.attempt())
    return {"job": job.id, "kind": job.kind, "pid": os.getpid(),
            "seconds": round(time.perf_counter() - start, 4)}


@dramatiq.actor(queue_name=queue_of("welcome_email"), store_results=True,
                retry_when=retry_transient(config.email_max_retries),
                min_backoff=config.email_min_backoff, max_backoff=config.email_max_backoff)
def welcome_email(job: dict) -> dict:
    """Send the welcome email of ``job`` (a :class:`shared.job.Job` as a dict); retried."""
    return _run(job)


@dramatiq.actor(queue_name=queue_of("avatar"), store_results=True, max_retries=0)
def avatar(job: dict) -> dict:
    """Render and store the avatar of ``job``; a failed avatar fails once, and says why."""
    return _run(job)
