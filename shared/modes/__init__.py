"""One module per way of running a signup's jobs, and the table that names them.

Each lesson adds one module and one line to :data:`MODES`. The app, ``make
serve``, ``make bench`` and the lessons look a mode up here, and start the
parts its runner ``needs``.
"""

from __future__ import annotations

from shared.modes.bare import NoJobs
from shared.modes.base import Closed, QueueFull, Runner
from shared.modes.dramatiq.mode import DramatiqMode
from shared.modes.fire_and_forget import FireAndForget
from shared.modes.inline import Inline
from shared.modes.redis_queue import RedisQueueRunner
from shared.modes.thread_pool import ThreadQueue

MODES: dict[str, type[Runner]] = {
    "bare": NoJobs,
    "blocking": Inline,
    "nowait": FireAndForget,
    "thread-queue": ThreadQueue,
    "redis-queue": RedisQueueRunner,
    "dramatiq": DramatiqMode,
}


def runner_class(mode: str) -> type[Runner]:
    """The runner of ``mode``; ``ValueError`` naming the known modes otherwise."""
    try:
        return MODES[mode]
    except KeyError:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}") from None


def redis_url_for(mode: str) -> str:
    """A Redis URL for ``mode`` if it keeps jobs in Redis (found or started by
    :func:`shared.redis_server.redis_url`), else ``""``."""
    if "redis" not in runner_class(mode).needs:
        return ""
    from shared.redis_server import redis_url  # noqa: PLC0415 - only modes that queue there

    return redis_url()


__all__ = ["MODES", "Closed", "QueueFull", "Runner", "redis_url_for", "runner_class"]
