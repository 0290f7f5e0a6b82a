"""The actors of a worker that reaches everything over the network.

Run by ``dramatiq shared.production.remote_worker`` (:class:`shared.production.remote.RemoteWorkers`
starts it). The same two actors as :mod:`shared.modes.dramatiq.actors`, on
the same queues with the same options, running the same work
(:func:`shared.job.run_attempt`) under the same status middleware
(:class:`shared.modes.dramatiq.status.StoreStatus`). One thing differs: the
store is :class:`shared.production.remote.RedisJobStore`, at the URL in
``DEFER_STATUS_URL``, not a SQLite file. So every address this worker gets
is one another machine could reach.
"""

from __future__ import annotations

import json
import os
from typing import cast

import dramatiq
from dramatiq.middleware import Retries

from shared.job import Job, run_attempt
from shared.modes.dramatiq.broker import BrokerConfig, make_broker, queue_of
from shared.modes.dramatiq.status import StoreStatus
from shared.production.remote import STATUS_URL_VAR, RedisJobStore
from shared.retry_policy import retry_transient
from shared.settings import Settings
from shared.store import Store

settings = Settings.from_env()
if settings.store_path:
    raise RuntimeError("DEFER_STORE_PATH is set: this worker must reach nothing but URLs")
if not os.environ.get(STATUS_URL_VAR):
    raise RuntimeError(f"{STATUS_URL_VAR} is not set: start it through RemoteWorkers")
config = BrokerConfig.from_env()
# RedisJobStore has every Store method that StoreStatus and run_attempt call.
store = cast(Store, RedisJobStore.for_run(os.environ[STATUS_URL_VAR], config))
status = StoreStatus(store)
broker = make_broker(settings.redis_url, config)
broker.add_middleware(status, before=Retries)
dramatiq.set_broker(broker)


def _run(job_fields: dict) -> dict:
    job = Job.from_json(json.dumps(job_fields))
    run_attempt(job, store, settings, status.attempt())
    return {"job": job.id, "kind": job.kind, "pid": os.getpid()}


@dramatiq.actor(queue_name=queue_of("welcome_email"), store_results=True,
                retry_when=retry_transient(config.email_max_retries),
                min_backoff=config.email_min_backoff, max_backoff=config.email_max_backoff)
def welcome_email(job: dict) -> dict:
    """Send the welcome email of ``job``; mark the account welcomed in the remote store."""
    return _run(job)


@dramatiq.actor(queue_name=queue_of("avatar"), store_results=True, max_retries=0)
def avatar(job: dict) -> dict:
    """Render the avatar of ``job`` and keep it in the remote store."""
    return _run(job)
