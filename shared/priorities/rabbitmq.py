"""Broker-side priority on RabbitMQ, run only where a RabbitMQ is available.

RabbitMQ orders a queue declared with ``x-max-priority`` by each message's
priority (HIGHER is sooner), before any worker fetches. Dramatiq exposes it
as ``RabbitmqBroker(max_priority=N)`` and ``send_with_options(broker_priority=k)``.
:func:`delivery_order` sends a backlog at priority 0 and one urgent message
at priority ``max_priority``, then reads the queue back one message at a time
and returns the order the broker delivered them in. Nothing here runs without
``RABBITMQ_URL`` and the ``pika`` package (``pip install 'dramatiq[rabbitmq]'``).

``RabbitmqBroker`` declares three queues for each queue name: the queue, its
delay queue ``<name>.DQ`` and its dead-letter queue ``<name>.XQ``
(``dramatiq.common.dq_name``/``xq_name``). :func:`delivery_order` deletes all
three; :func:`queues_left` asks the server which of them still exist.
"""

from __future__ import annotations

import importlib
import os
import uuid
from dataclasses import dataclass
from typing import Any

from shared.processes import wait_until

__all__ = ["RabbitUnavailable", "Delivery", "delivery_order", "queues_left", "rabbitmq_url"]


class RabbitUnavailable(RuntimeError):
    """No RabbitMQ to run against; the message says how to get one."""


def rabbitmq_url() -> str | None:
    """``RABBITMQ_URL`` from the environment, or None."""
    return os.environ.get("RABBITMQ_URL") or None


@dataclass(frozen=True)
class Delivery:
    """What one :func:`delivery_order` call saw: the order, and its queues."""

    order: list[str]  # "N1".. for the backlog, "R" for the urgent message
    queues: tuple[str, ...]  # the three queues it declared (queue, .DQ, .XQ), all deleted


def _rabbitmq_broker(url: str, max_priority: int) -> Any:
    try:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker  # noqa: PLC0415 - needs pika
    except ImportError as exc:
        raise RabbitUnavailable(f"{exc}: run `pip install 'dramatiq[rabbitmq]'` first") from None
    return RabbitmqBroker(url=url, max_priority=max_priority)


def queues_left(url: str, queues: tuple[str, ...]) -> list[str]:
    """Which of ``queues`` still exist on the server (a passive declare each)."""
    pika = importlib.import_module("pika")  # only when RabbitMQ is asked for

    left = []
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for queue in queues:
            channel = connection.channel()
            try:
                channel.queue_declare(queue, passive=True)
                left.append(queue)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:  # 404: no such queue
                pass
    finally:
        connection.close()
    return left


def delivery_order(url: str, *, backlog: int = 20, max_priority: int = 10,
                   timeout: float = 20.0) -> Delivery:
    """Send ``backlog`` bulk messages then one urgent one; return the delivery order.

    Labels are ``"N1"``.. for the backlog and ``"R"`` for the urgent message.
    The queue (and its ``.DQ`` and ``.XQ`` companions) is private to this call
    and deleted afterwards.
    """
    import dramatiq  # noqa: PLC0415
    from dramatiq.common import dq_name, xq_name  # noqa: PLC0415

    broker = _rabbitmq_broker(url, max_priority=max_priority)
    queue = f"lesson05-{uuid.uuid4().hex[:12]}"

    def label(text: str) -> None:
        """Never run: this call reads the queue itself."""

    actor = dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"label_{queue}")(label)
    try:
        for number in range(1, backlog + 1):
            actor.send_with_options(args=(f"N{number}",), broker_priority=0)
        actor.send_with_options(args=("R",), broker_priority=max_priority)
        order: list[str] = []
        consumer = broker.consume(queue, prefetch=1, timeout=200)

        def read_one() -> bool:
            """Take the next message, if one comes within the consumer's timeout; all read?"""
            message = next(consumer)
            if message is not None:
                order.append(message.args[0])
                consumer.ack(message)
            return len(order) >= backlog + 1

        try:
            wait_until(read_one, timeout, f"RabbitMQ to deliver {backlog + 1} messages",
                       interval=0)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: it delivered {len(order)}") from None
        finally:
            consumer.close()
        return Delivery(order=order, queues=(queue, dq_name(queue), xq_name(queue)))
    finally:
        try:
            for name in (queue, dq_name(queue), xq_name(queue)):
                broker.channel.queue_delete(name)
        finally:
            broker.close()
