"""The course's own actors on RabbitMQ: what changes, what does not, measured.

:class:`RabbitLab` is the plumbing of lesson 07's RabbitMQ cells: a fresh
store, the settings a worker gets, and one ``dramatiq
shared.modes.dramatiq.actors`` worker group whose environment differs from
the Redis one by a single variable, ``DEFER_DRAMATIQ_URL`` (the broker's
``amqp://`` URL). The notebook builds the broker itself
(:func:`shared.modes.dramatiq.broker.make_broker`) and sends the messages.

What the cells look at, each read from the server: how many messages wait
in a queue (:func:`waiting`), a message taken by a consumer whose connection
then closes without an acknowledgement (:func:`requeued_on_close`), how a
message was published (:func:`peek`), whether a queue is durable
(:func:`durable`). :meth:`RabbitLab.stop` deletes every queue Dramatiq
declared (each queue, its ``.DQ`` and its ``.XQ``) and says how many are left.
The queue names are the course's (``email``, ``avatars``): on a server of your
own (``RABBITMQ_URL``), give the course a virtual host of its own.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dramatiq.common import dq_name, xq_name

from shared.job import Job, new_jobs
from shared.modes.dramatiq.broker import QUEUES, BrokerConfig, delete_namespace, namespace_keys
from shared.modes.dramatiq.workers import WorkerGroup
from shared.priorities.rabbitmq import queues_left
from shared.processes import wait_until
from shared.settings import Settings
from shared.store import JobStatus, Store

if TYPE_CHECKING:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

WORKER_TIMEOUT_MS = 100  # the consumers' idle wait: short, so the group stops quickly


def declared_queues() -> list[str]:
    """Every queue Dramatiq declares for the course's two queues: each, its ``.DQ``, its ``.XQ``."""
    return [name for queue in sorted(QUEUES.values())
            for name in (queue, dq_name(queue), xq_name(queue))]


def waiting(broker: RabbitmqBroker, queue: str) -> int:
    """Messages ready in ``queue`` on the server (not those a consumer holds unacknowledged)."""
    ready, _, _ = broker.get_queue_message_counts(queue)
    return ready


@dataclass(frozen=True)
class Requeue:
    """What :func:`requeued_on_close` saw: messages ready before, while held, after the close."""

    before: int
    held: int
    after: int
    seconds: float  # from the close to the message being ready again


def requeued_on_close(broker: RabbitmqBroker, queue: str, timeout: float = 10.0) -> Requeue:
    """A consumer takes one message, then its connection closes without an ack.

    Dramatiq's RabbitMQ consumer does the same when its worker dies; RabbitMQ
    puts the message back at once, with no heartbeat timeout to wait for.
    """
    before = waiting(broker, queue)
    consumer = broker.consume(queue, prefetch=1, timeout=WORKER_TIMEOUT_MS)
    taken: list[Any] = []

    def take() -> bool:
        """Wait up to the consumer's idle timeout for one message."""
        message = next(consumer)
        if message is not None:
            taken.append(message)
        return bool(taken)

    wait_until(take, timeout, f"a message from {queue}", interval=0)
    held = waiting(broker, queue)
    closed = time.perf_counter()
    consumer.close()  # no ack: the server requeues what this connection held
    wait_until(lambda: waiting(broker, queue) > held, timeout,
               f"RabbitMQ to requeue the message of the closed consumer on {queue}")
    return Requeue(before, held, waiting(broker, queue), time.perf_counter() - closed)


@dataclass(frozen=True)
class Published:
    """How the first message of a queue was published (read with ``basic_get``, then put back)."""

    persistent: bool  # delivery_mode 2: written to disk on a durable queue
    priority: int | None
    actor_name: str


def peek(broker: RabbitmqBroker, queue: str) -> Published:
    """The properties of the message a consumer would get first; it stays in the queue."""
    from dramatiq import Message  # noqa: PLC0415

    channel = broker.connection.channel()
    try:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            raise LookupError(f"no message in {queue}")
        channel.basic_nack(method.delivery_tag, requeue=True)
        return Published(properties.delivery_mode == 2, properties.priority,
                         Message.decode(body).actor_name)
    finally:
        if channel.is_open:
            channel.close()


def durable(broker: RabbitmqBroker, queue: str) -> tuple[bool, str]:
    """Whether ``queue`` is durable, and the server's own words on it.

    Declaring it again as not durable must be refused (``PRECONDITION_FAILED``)
    if it is: RabbitMQ never changes a queue's durability.
    """
    pika = importlib.import_module("pika")
    channel = broker.connection.channel()
    try:
        channel.queue_declare(queue, durable=False,
                              arguments=broker._build_queue_arguments(queue))
    except pika.exceptions.ChannelClosedByBroker as refusal:
        return True, refusal.reply_text
    channel.close()
    return False, "accepted a non-durable declaration"


class RabbitLab:
    """A store, the settings, and one worker group of the course's actors, on RabbitMQ."""

    def __init__(self, rabbit_url: str, redis_url: str, *, smtp_host: str, smtp_port: int,
                 threads: int = 1, avatar_canvas: int = 256) -> None:
        self.rabbit_url, self.redis_url = rabbit_url, redis_url
        self.store = Store.fresh()
        self.settings = Settings(smtp_host=smtp_host, smtp_port=smtp_port,
                                 store_path=str(self.store.path), redis_url=redis_url,
                                 avatar_canvas=avatar_canvas)
        self.config = BrokerConfig.fresh(url=rabbit_url)
        self._folder = Path(tempfile.mkdtemp(prefix="defer-rabbit-workers-"))
        self.group = WorkerGroup("rabbitmq", tuple(sorted(QUEUES.values())), 1, threads,
                                 self._folder)

    def env(self) -> dict[str, str]:
        """What the worker group is told: the Redis recipe's variables plus ``DEFER_DRAMATIQ_URL``."""
        return {**self.settings.to_env(), **self.config.to_env()}

    def signup(self, email: str) -> list[Job]:
        """Create the account and record its jobs as queued (the web app's half of a signup)."""
        jobs = new_jobs(email, uuid.uuid4().hex)
        self.store.create_account(email, jobs)
        return jobs

    def start_workers(self, timeout: float = 30.0) -> None:
        """Start the group; return once its worker process consumes."""
        self.group.start({**os.environ, **self.env(), "PYTHONUNBUFFERED": "1",
                          "dramatiq_worker_timeout": str(WORKER_TIMEOUT_MS)})
        self.group.current.wait_until(self.group.ready, timeout, "the RabbitMQ worker group")

    def wait_finished(self, count: int, timeout: float = 30.0) -> None:
        def finished() -> bool:
            counts = self.store.counts()
            return counts["done"] + counts["failed"] >= count

        wait_until(finished, timeout, f"{count} jobs to finish on RabbitMQ",
                   problem=self.group.current.problem)

    def started_order(self, kind: str) -> list[JobStatus]:
        """The jobs of ``kind`` in the order a worker started them."""
        jobs = [job for job in self.store.jobs() if job.kind == kind]
        return sorted(jobs, key=lambda job: job.started_at or float("inf"))

    def store_file_open(self) -> int:
        """How many of the group's worker processes have the store's SQLite file open."""
        opened = 0
        for process in self.group.worker_processes():
            if any(Path(f.path) == self.store.path for f in process.open_files()):
                opened += 1
        return opened

    def begin_stop(self) -> None:
        """Ask the group to stop (it finishes its jobs); :meth:`stop` waits for it."""
        self.group.terminate()

    def stop(self, broker: RabbitmqBroker, timeout: float = 10.0) -> dict[str, int]:
        """Stop the group, delete the queues and the run's Redis keys; count what is left.

        Queues are deleted once no worker consumes them: a live consumer would
        declare them again.
        """
        if self.group.child is not None:
            self.group.terminate()
            self.group.stop(timeout)
        for name in declared_queues():
            broker.channel.queue_delete(name)
        broker.close()
        delete_namespace(self.redis_url, self.config.namespace)
        left = {"queues": len(queues_left(self.rabbit_url, tuple(declared_queues()))),
                "redis keys": len(namespace_keys(self.redis_url, self.config.namespace)),
                "processes": len(self.group.worker_processes()) + int(self.group.running)}
        self.store.remove()
        shutil.rmtree(self._folder, ignore_errors=True)
        return left
