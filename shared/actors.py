"""The course's Dramatiq actors, for worker processes: ``dramatiq shared.actors``.

Importing this module builds the broker from the environment the web app
gave the worker group (:meth:`shared.settings.Settings.to_env` and
:meth:`shared.modes.dramatiq.broker.BrokerConfig.to_env`), then declares one actor
per kind of job, each on its own queue (:data:`shared.modes.dramatiq.broker.QUEUES`),
so a worker group started with ``--queues email`` runs only welcome emails.
Each actor runs the job with :func:`shared.job.run_job`, which records its
status and timing in the store, and returns a small summary that the
``Results`` middleware keeps in Redis.

The welcome email follows lesson 06's retry policy
(:data:`shared.retries.policy.EMAIL_RETRY_POLICY`): a transient error leaves
the job ``queued`` with its error while it waits for the next attempt; when
Dramatiq gives up, :class:`shared.status_middleware.StoreStatus` marks it
``failed`` with the reason.

Only worker processes import this module; the web app sends its messages
with :func:`shared.modes.dramatiq.broker.job_message` and never needs the actors.
"""

from __future__ import annotations

import json
import os
import time

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared.modes.dramatiq.broker import BrokerConfig, make_broker, queue_of
from shared.job import Job, run_job
from shared.retries.policy import EMAIL_RETRY_POLICY, is_transient
from shared.settings import Settings
from shared.status_middleware import StoreStatus
from shared.store import Store

settings = Settings.from_env()
if not settings.store_path:
    raise RuntimeError("DEFER_STORE_PATH is not set: start workers through the dramatiq "
                       "mode (create_app('dramatiq') or make serve MODE=dramatiq)")
store = Store(settings.store_path)
config = BrokerConfig.from_env()
broker = make_broker(settings.redis_url, config, middleware=[StoreStatus(store)])
dramatiq.set_broker(broker)


def retry_email(retries: int, exc: BaseException) -> bool:
    """Lesson 06's ``retry_when``, bounded by this run's ``email_max_retries``."""
    return retries < config.email_max_retries and is_transient(exc)


#: lesson 06's policy, with this run's bound on retries
EMAIL_OPTIONS = {**EMAIL_RETRY_POLICY, "retry_when": retry_email}


def _run(job_fields: dict, retry_when=None) -> dict:
    job = Job.from_json(json.dumps(job_fields))
    start = time.perf_counter()
    if retry_when is None:
        run_job(job, store, settings)
    else:
        retries = CurrentMessage.get_current_message().options.get("retries", 0)
        try:
            run_job(job, store, settings, will_retry=True)
        except Exception as exc:
            if not retry_when(retries, exc):  # no next attempt: say so now, not at the nack
                store.set_status(job.id, "failed")
            raise
    return {"job": job.id, "kind": job.kind, "pid": os.getpid(),
            "seconds": round(time.perf_counter() - start, 4)}


@dramatiq.actor(queue_name=queue_of("welcome_email"), store_results=True, **EMAIL_OPTIONS)
def welcome_email(job: dict) -> dict:
    """Send the welcome email of ``job`` (a :class:`shared.job.Job` as a dict); retried."""
    return _run(job, retry_when=retry_email)


@dramatiq.actor(queue_name=queue_of("avatar"), store_results=True, max_retries=0)
def avatar(job: dict) -> dict:
    """Render and store the avatar of ``job``; a failed avatar fails once, and says why."""
    return _run(job)
