"""Dramatiq on the course's Redis: one broker recipe for the web app and the workers.

The web process only *sends* messages; ``dramatiq shared.modes.dramatiq.actors``
worker processes receive them. Both sides build their broker here, from the same
values, which travel to the workers in environment variables
(:meth:`BrokerConfig.to_env`), like :class:`shared.settings.Settings`.

Every running app gets its own key **namespace** in Redis, so two apps (two
lessons, two test runs) never share a queue, and :func:`delete_namespace`
removes everything one run left there.

An ``amqp://`` URL in :attr:`BrokerConfig.url` puts the messages on RabbitMQ
instead (lesson 07): the same actors, the same messages; results stay in Redis.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, cast

import redis
from dramatiq import Broker, Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from shared.job import Job
from shared.retry_policy import EMAIL_MAX_BACKOFF, EMAIL_MAX_RETRIES, EMAIL_MIN_BACKOFF

if TYPE_CHECKING:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

PREFIX = "DEFER_DRAMATIQ_"
#: Each kind of job has its own queue, read by its own worker group (lesson 05):
#: a welcome email never waits behind avatars.
QUEUES = {"welcome_email": "email", "avatar": "avatars"}
RESULTS_SUFFIX = ".results"
#: RabbitMQ sorts each queue by message priority up to this (``x-max-priority``); higher is sooner
RABBITMQ_MAX_PRIORITY = 10
RABBITMQ_SCHEMES = ("amqp://", "amqps://")


def queue_of(kind: str) -> str:
    """The queue that carries jobs of ``kind``."""
    try:
        return QUEUES[kind]
    except KeyError:
        raise ValueError(f"no queue for jobs of kind {kind!r}: known kinds are "
                         f"{', '.join(QUEUES)}") from None


@dataclass(frozen=True)
class BrokerConfig:
    """Where a run's messages live in Redis, and how fast a dead worker is noticed.

    ``heartbeat_timeout`` (ms): a worker silent this long counts as dead, and
    the messages it had taken go back to the queue. ``maintenance_chance``
    (per million Redis calls) is how often a call looks for dead workers.
    Dramatiq's defaults are 60 s and 1,000: fine in production, slow in a demo.
    ``email_max_retries`` bounds the welcome email's retries of transient
    errors, and ``email_min_backoff``/``email_max_backoff`` (ms) its waits
    between them (:mod:`shared.retry_policy`). ``url``, when set, is a RabbitMQ
    (``amqp://...``) that carries the messages instead of Redis; the heartbeat
    and maintenance settings then do not apply (RabbitMQ needs neither).
    """

    namespace: str = "dramatiq"
    heartbeat_timeout: int = 60_000
    maintenance_chance: int = 1_000
    email_max_retries: int = EMAIL_MAX_RETRIES
    email_min_backoff: int = EMAIL_MIN_BACKOFF
    email_max_backoff: int = EMAIL_MAX_BACKOFF
    url: str = ""

    @classmethod
    def fresh(cls, **overrides: Any) -> BrokerConfig:
        """A config with a namespace no other run uses."""
        return cls(namespace=f"defer-{uuid.uuid4().hex[:12]}", **overrides)

    def to_env(self) -> dict[str, str]:
        """Every field as ``DEFER_DRAMATIQ_<NAME>``; an empty ``url`` is left out (Redis)."""
        return {PREFIX + field.name.upper(): str(getattr(self, field.name))
                for field in fields(self) if not (field.name == "url" and not self.url)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BrokerConfig:
        values: dict[str, Any] = {}
        for name, kind in ((field.name, str if field.name in ("namespace", "url") else int)
                           for field in fields(cls)):
            text = environ.get(PREFIX + name.upper())
            if text is None:
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                raise ValueError(f"{PREFIX}{name.upper()}={text!r} is not a valid "
                                 f"{kind.__name__}") from None
        return cls(**values)


class ClosingRedisBroker(RedisBroker):
    """A RedisBroker whose :meth:`close` closes its Redis connections.

    Dramatiq's ``RedisBroker`` keeps ``Broker.close()``, which does nothing, and
    builds its client on a connection pool of its own, so its sockets (and the
    results backend's) stayed open until garbage collection.
    """

    def close(self) -> None:
        super().close()
        self.client.connection_pool.disconnect()
        _close_backends(self)


@functools.cache
def _closing_rabbitmq_class() -> type[RabbitmqBroker]:
    """A RabbitmqBroker whose ``close`` also closes its results backend's Redis connections.

    Built on first use: importing RabbitMQ's client (pika) costs every process ~0.1 s.
    """
    from dramatiq.brokers.rabbitmq import RabbitmqBroker  # noqa: PLC0415

    class ClosingRabbitmqBroker(RabbitmqBroker):
        def close(self) -> None:
            super().close()
            _close_backends(self)

    return ClosingRabbitmqBroker


def _close_backends(broker: Broker) -> None:
    for middleware in broker.middleware:
        client = getattr(getattr(middleware, "backend", None), "client", None)
        if client is not None:
            client.connection_pool.disconnect()


def make_broker(redis_url: str, config: BrokerConfig, *, middleware=None,
                broker_class: type[RedisBroker] = ClosingRedisBroker) -> RedisBroker:
    """A RedisBroker in ``config``'s namespace, with results stored in Redis too.

    ``middleware`` is added after Dramatiq's defaults, ``CurrentMessage`` and
    ``Results``. ``broker_class`` is a RedisBroker subclass to build instead
    (a measurement that counts the broker's Redis calls, say).

    With ``config.url`` set to RabbitMQ (``amqp://``), the broker is a
    RabbitmqBroker there instead (:func:`rabbitmq_broker`); only the worker
    side asks for that (``actors.py``, through ``DEFER_DRAMATIQ_URL``), and it
    uses only what every Broker has.
    """
    if not redis_url:
        raise ValueError("no Redis URL: pass shared.redis_server.redis_url(), "
                         "or set DEFER_REDIS_URL for a worker process")
    if config.url:
        # Typed as the RedisBroker that every other caller gets: the one caller that
        # sets config.url (the actors module) uses only the Broker interface.
        return cast(RedisBroker, rabbitmq_broker(config.url, redis_url, config,
                                                 middleware=middleware))
    broker = broker_class(url=redis_url, namespace=config.namespace,
                          heartbeat_timeout=config.heartbeat_timeout,
                          maintenance_chance=config.maintenance_chance)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(Results(backend=results_backend(redis_url, config)))
    for extra in middleware or ():
        broker.add_middleware(extra)
    return broker


def rabbitmq_broker(url: str, redis_url: str, config: BrokerConfig, *,
                    middleware=None) -> RabbitmqBroker:
    """The same recipe on RabbitMQ: durable queues sorted by ``broker_priority``.

    ``confirm_delivery``: each ``enqueue`` waits until RabbitMQ confirms it has
    the message (Dramatiq's default sends and hopes). RabbitMQ has no key
    namespace (a virtual host in the URL plays that part), no heartbeat to tune
    (it requeues a consumer's unacknowledged messages when its connection
    closes) and no maintenance sweep. Results stay in Redis.
    """
    if not url.startswith(RABBITMQ_SCHEMES):
        raise ValueError(f"not a RabbitMQ URL (amqp:// or amqps://): {url.split('@')[-1]!r}")
    broker = _closing_rabbitmq_class()(url=url, max_priority=RABBITMQ_MAX_PRIORITY,
                                       confirm_delivery=True)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(Results(backend=results_backend(redis_url, config)))
    for extra in middleware or ():
        broker.add_middleware(extra)
    return broker


def results_backend(redis_url: str, config: BrokerConfig) -> RedisBackend:
    """Where actors' return values are kept, in the run's namespace."""
    # Readable keys under the namespace (Dramatiq's default is a bare md5 hash
    # per result, which no namespace cleaner can find).
    return RedisBackend(url=redis_url, namespace=config.namespace + RESULTS_SUFFIX,
                        use_namespace_prefix_keys=True)


def job_message(job: Job) -> Message:
    """The message that runs ``job``: actor ``job.kind`` on its kind's queue, message id = job id.

    The same id on both sides is what lets a middleware in the worker write
    the job's status where the web app reads it.
    """
    return Message(queue_name=queue_of(job.kind), actor_name=job.kind,
                   args=({"id": job.id, "kind": job.kind, "email": job.email,
                          "request_id": job.request_id, "enqueued_at": job.enqueued_at},),
                   kwargs={}, options={}, message_id=job.id)


def delete_namespace(redis_url: str, namespace: str) -> int:
    """Delete every key of one run (queues, acks, heartbeats, results); return how many."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key for pattern in (f"{namespace}:*", f"{namespace}{RESULTS_SUFFIX}:*")
                for key in client.scan_iter(match=pattern, count=500)]
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def namespace_keys(redis_url: str, namespace: str) -> list[str]:
    """The keys one run has in Redis right now, sorted."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return sorted(key for pattern in (f"{namespace}:*", f"{namespace}{RESULTS_SUFFIX}:*")
                      for key in client.scan_iter(match=pattern, count=500))
    finally:
        client.close()
