"""A redis-py client that records the commands an answer sends, and looks around after each.

A grader hands :class:`SpyRedis` to the learner's function in place of a
plain client. ``after(command)`` runs once each command has been answered
and before the learner's next line runs: exactly where a worker killed
between two commands would leave Redis. A check there catches a
non-atomic answer every time, not by the luck of a kill's timing. A
MULTI/EXEC block, a pipeline or a Lua script counts as one command, since
nothing can come between its parts.

``after`` may itself send commands through the spy (to run a second attempt
of the job between two commands of the first); those are recorded but
trigger no ``after`` of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from shared.redis_queue import RedisQueue

SOCKET_SECONDS = 10.0  # any one command; blocking pops in graded answers wait at most 5 s


@dataclass(frozen=True)
class Command:
    """One command as sent: ``name`` is ``"BLMOVE"``, or ``"MULTI RPOP LPUSH EXEC"`` for a block."""

    name: str
    args: tuple[Any, ...]

    def mentions(self, text: str) -> list[str]:
        """The arguments (keys, mostly) that contain ``text``, as str."""
        words = [a.decode(errors="replace") if isinstance(a, bytes) else a for a in self.args]
        return [w for w in words if isinstance(w, str) and text in w]


After = Callable[[Command], None]


class SpyRedis(redis.Redis):
    """A redis-py client: ``commands`` lists what it sent, ``after`` runs after each."""

    def __init__(self, url: str, after: After | None = None) -> None:
        pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=SOCKET_SECONDS,
                                             socket_timeout=SOCKET_SECONDS)
        super().__init__(connection_pool=pool)
        self.auto_close_connection_pool = True  # close() closes the pool, as from_url's does
        self.commands: list[Command] = []
        self.after = after
        self._looking = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        result = super().execute_command(*args, **options)
        self.answered(Command(command_name(args), args[1:]))
        return result

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> SpyPipeline:
        return SpyPipeline(self, transaction, shard_hint)

    def answered(self, command: Command) -> None:
        """Record ``command``, then run ``after`` unless it is ``after`` that sent it."""
        self.commands.append(command)
        if self.after is None or self._looking:
            return
        self._looking = True
        try:
            self.after(command)
        finally:
            self._looking = False


class SpyPipeline(Pipeline):
    """A pipeline of a :class:`SpyRedis`: the whole block is one recorded command."""

    def __init__(self, spy: SpyRedis, transaction: bool, shard_hint: Any) -> None:
        super().__init__(spy.connection_pool, spy.response_callbacks, transaction, shard_hint)
        self.spy, self.in_multi = spy, transaction

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        result = super().immediate_execute_command(*args, **options)  # WATCH, and reads after it
        self.spy.answered(Command(command_name(args), args[1:]))
        return result

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        names = [command_name(args) for args, _ in self.command_stack]
        args = tuple(arg for stacked, _ in self.command_stack for arg in stacked[1:])
        atomic = self.in_multi or self.explicit_transaction
        result = super().execute(raise_on_error)
        if names:
            name = f"MULTI {' '.join(names)} EXEC" if atomic else " ".join(names)
            self.spy.answered(Command(name, args))
        return result


def command_name(args: tuple[Any, ...]) -> str:
    """``BLMOVE`` for ``("BLMOVE", key, ...)``; redis-py passes the name first."""
    name = args[0] if args else "?"
    return (name.decode() if isinstance(name, bytes) else str(name)).upper()


def spied_queue(queue: RedisQueue, after: After | None = None) -> RedisQueue:
    """The same queue (url, prefix, keys) whose ``redis`` is a :class:`SpyRedis`."""
    twin = RedisQueue(queue.url, queue.prefix)
    twin.redis.close()
    twin.redis = SpyRedis(queue.url, after)
    return twin
