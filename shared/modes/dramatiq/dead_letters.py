"""Dead letters: the messages Dramatiq gave up on, and sending one again.

When the ``Retries`` middleware gives up on a message (or an actor raises
one of its ``throws``), the worker *nacks* it. On Redis, Dramatiq's Lua
script (``dramatiq/brokers/redis/dispatch.lua``, command ``nack``) then
moves it to two keys beside its queue, in the broker's namespace:

- ``<namespace>:<queue>.XQ``, a sorted set of Redis message ids, scored
  by when they died (milliseconds);
- ``<namespace>:<queue>.XQ.msgs``, a hash of those ids to the encoded message,
  as it was last *enqueued* (its ``retries`` and ``traceback`` options are
  those of the attempt before the last: the last error is in the store).

They stay there for ``dead_message_ttl`` (7 days by default; a maintenance
sweep removes older ones, it is not a Redis TTL).

:func:`dead_letters` reads them. Dramatiq itself has no way to send a dead
letter again: :func:`requeue` is this course's, and it is *atomic*: one Lua
script takes the letter out of the dead letters and pushes it back on its
queue, with fresh retries, in one step. A crash cannot lose the letter
(gone from the dead letters, never queued) nor run it twice (queued, and
still a dead letter someone requeues again); of two calls racing to requeue
the same letter, exactly one succeeds.

Both take either a :class:`~dramatiq.brokers.redis.RedisBroker` (its client
and namespace) or a ``redis.Redis`` client plus ``namespace=``.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

#: Options that belong to one delivery of a message, not to the message:
#: dropped on requeue, so it starts again with fresh retries and no delay.
DELIVERY_OPTIONS = ("retries", "traceback", "eta", "redis_message_id", "requeue_timestamp")

# KEYS: dead-letter set, dead-letter hash, queue list, queue hash.
# ARGV: the letter's Redis id, the new Redis id, the new message data.
_REQUEUE_LUA = """
if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("hset", KEYS[4], ARGV[2], ARGV[3])
redis.call("rpush", KEYS[3], ARGV[2])
return 1
"""
#: The script :func:`requeue` runs, public so that a lesson can print it.
REQUEUE_SCRIPT = _REQUEUE_LUA


class NotADeadLetter(ValueError):
    """The letter is no longer in the dead letters (requeued already, or expired)."""


@dataclass(frozen=True)
class DeadLetter:
    """A message Dramatiq gave up on, as it sits in Redis."""

    redis_id: str  # its id in the dead-letter set (Dramatiq's ``redis_message_id``)
    message: Message
    died_at: float  # Unix time, seconds

    @property
    def queue(self) -> str:
        """The queue it came from (never a delay queue ``<queue>.DQ``)."""
        return canonical_queue(self.message.queue_name)

    @property
    def actor(self) -> str:
        return self.message.actor_name

    @property
    def args(self) -> tuple:
        return tuple(self.message.args)

    @property
    def message_id(self) -> str:
        """Dramatiq's message id (on the Dramatiq path, the job's id)."""
        return self.message.message_id


def canonical_queue(queue_name: str) -> str:
    """``email.DQ`` -> ``email``: dead letters are kept by their queue, not its delay queue."""
    return queue_name.removesuffix(".DQ")


def dead_letter_keys(namespace: str, queue: str) -> tuple[str, str]:
    """The two Redis keys holding ``queue``'s dead letters (set of ids, hash of messages)."""
    key = f"{namespace}:{canonical_queue(queue)}.XQ"
    return key, key + ".msgs"


def dead_letters(source: RedisBroker | redis.Redis, queue: str, *,
                 namespace: str | None = None) -> list[DeadLetter]:
    """The dead letters of ``queue``, oldest death first.

    ``source`` is a RedisBroker, or a redis client with ``namespace=``.
    """
    client, namespace = _client_and_namespace(source, namespace)
    ids_key, messages_key = dead_letter_keys(namespace, queue)
    entries = cast(list[tuple[bytes, float]], client.zrange(ids_key, 0, -1, withscores=True))
    if not entries:
        return []
    datas = cast(list[Any], client.hmget(messages_key, [redis_id for redis_id, _ in entries]))
    return [DeadLetter(_text(redis_id), Message.decode(data), score / 1000)
            for (redis_id, score), data in zip(entries, datas) if data is not None]


def requeue(source: RedisBroker | redis.Redis, letter: DeadLetter, *,
            namespace: str | None = None) -> Message:
    """Move ``letter`` from the dead letters back to its queue, with fresh retries, atomically.

    Returns the message as queued (a new Redis id, no ``retries`` option).
    :class:`NotADeadLetter` if it is not a dead letter any more (requeued
    already, or expired): then nothing changed. Given a broker, its
    middleware sees the message as an enqueue (``before_enqueue`` and
    ``after_enqueue``), as with ``broker.enqueue``.
    """
    client, namespace = _client_and_namespace(source, namespace)
    queue = letter.queue
    options = {key: value for key, value in letter.message.options.items()
               if key not in DELIVERY_OPTIONS}
    options["redis_message_id"] = str(uuid.uuid4())
    fresh = dataclasses.replace(letter.message, queue_name=queue, options=options)
    broker = source if isinstance(source, RedisBroker) else None
    if broker is not None:
        broker.emit_before("enqueue", fresh, None)
    ids_key, messages_key = dead_letter_keys(namespace, queue)
    queue_key = f"{namespace}:{queue}"
    moved = client.eval(_REQUEUE_LUA, 4, ids_key, messages_key, queue_key, queue_key + ".msgs",
                        letter.redis_id, fresh.options["redis_message_id"], fresh.encode())
    if not moved:
        raise NotADeadLetter(f"message {letter.message_id} is not a dead letter of queue {queue!r} "
                             "any more (requeued already, or expired): nothing was sent")
    if broker is not None:
        broker.emit_after("enqueue", fresh, None)
    return fresh


def _client_and_namespace(source: RedisBroker | redis.Redis,
                          namespace: str | None) -> tuple[redis.Redis, str]:
    if isinstance(source, RedisBroker):
        if namespace not in (None, source.namespace):
            raise ValueError(f"namespace {namespace!r} differs from the broker's "
                             f"{source.namespace!r}: pass one or the other")
        return source.client, source.namespace
    if namespace is None:
        raise ValueError("a redis client needs namespace=... (the broker's namespace)")
    return source, namespace


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
