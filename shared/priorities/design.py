"""Where each email goes and who reads it: plain data, checked up front.

A :class:`Design` names the queue and priority of the two actors (reset
email, newsletter) and the worker groups that run them. Each worker group is
one ``dramatiq`` command: ``--threads``, ``--queues`` and, through the
``dramatiq_queue_prefetch`` environment variable, how many messages each of
its consumers may hold. Mistakes raise :class:`DesignError` naming the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

__all__ = ["ActorPlan", "Design", "DesignError", "WorkerGroup", "default_prefetch"]

QUEUE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
MAX_THREADS = 8
MAX_PREFETCH = 65535


class DesignError(ValueError):
    """A design that cannot run; the message says what to change."""


def default_prefetch(threads: int) -> int:
    """Dramatiq 2.2's prefetch per consumer when none is set: 2 x threads."""
    return min(threads * 2, MAX_PREFETCH)


@dataclass(frozen=True)
class ActorPlan:
    """The queue an actor's messages go to, and its priority (lower runs sooner)."""

    queue: str = "emails"
    priority: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.queue, str) or not QUEUE_NAME.fullmatch(self.queue):
            raise DesignError(f"queue {self.queue!r} is not a queue name: use letters, digits, "
                              "_ or -, starting with a letter, e.g. 'urgent'")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise DesignError(f"priority must be a whole number (lower runs sooner), "
                              f"got {self.priority!r}")


@dataclass(frozen=True)
class WorkerGroup:
    """One ``dramatiq`` command: ``threads`` threads reading ``queues``.

    ``prefetch`` is how many messages each of its consumers (one per queue)
    may hold at once, the running ones included; None keeps Dramatiq's
    default of 2 x threads.
    """

    queues: tuple[str, ...] = ("emails",)
    threads: int = 1
    prefetch: int | None = None

    def __post_init__(self) -> None:
        queues = (self.queues,) if isinstance(self.queues, str) else tuple(self.queues)
        object.__setattr__(self, "queues", queues)
        if not queues:
            raise DesignError("a worker group needs at least one queue, e.g. queues=('urgent',)")
        for queue in queues:
            ActorPlan(queue=queue)  # same naming rule
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) \
                or not 1 <= self.threads <= MAX_THREADS:
            raise DesignError(f"threads must be a whole number from 1 to {MAX_THREADS}, "
                              f"got {self.threads!r}")
        if self.prefetch is not None and (
                isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int)
                or not 1 <= self.prefetch <= MAX_PREFETCH):
            raise DesignError(f"prefetch must be None (Dramatiq's default) or a whole number "
                              f"from 1 to {MAX_PREFETCH}, got {self.prefetch!r}")

    @property
    def effective_prefetch(self) -> int:
        """The prefetch its consumers really use."""
        return self.prefetch if self.prefetch is not None else default_prefetch(self.threads)

    def command_flags(self) -> list[str]:
        """The ``dramatiq`` flags for this group (one process)."""
        return ["--processes", "1", "--threads", str(self.threads), "--queues", *self.queues]

    def describe(self) -> str:
        """``"1 thread on emails (prefetch 2)"``."""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"{threads} on {', '.join(self.queues)} (prefetch {self.effective_prefetch})"


@dataclass(frozen=True)
class Design:
    """Who goes where: the two actors' queues and priorities, and the workers."""

    name: str
    reset: ActorPlan = field(default_factory=lambda: ActorPlan("emails", 0))
    newsletter: ActorPlan = field(default_factory=lambda: ActorPlan("emails", 10))
    workers: tuple[WorkerGroup, ...] = (WorkerGroup(),)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DesignError("a design needs a short name, e.g. Design('separate queues', ...)")
        for role in ("reset", "newsletter"):
            if not isinstance(getattr(self, role), ActorPlan):
                raise DesignError(f"{role} must be an ActorPlan(queue=..., priority=...), "
                                  f"got {getattr(self, role)!r}")
        workers = (self.workers,) if isinstance(self.workers, WorkerGroup) else tuple(self.workers)
        object.__setattr__(self, "workers", workers)
        if not workers or not all(isinstance(group, WorkerGroup) for group in workers):
            raise DesignError("workers must be one or more WorkerGroup(queues=..., threads=...)")
        read = {queue for group in workers for queue in group.queues}
        for role in ("reset", "newsletter"):
            queue = getattr(self, role).queue
            if queue not in read:
                raise DesignError(f"no worker group reads queue {queue!r}, so the {role} "
                                  f"messages would wait forever: add it to a group's queues")
        unused = sorted(read - {self.reset.queue, self.newsletter.queue})
        if unused:
            raise DesignError(f"no actor sends to queue(s) {', '.join(map(repr, unused))}: "
                              "remove them from the worker groups")

    @property
    def threads(self) -> int:
        """Worker threads in all groups together."""
        return sum(group.threads for group in self.workers)

    def to_json(self) -> str:
        """The design as JSON, for a worker process's environment."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Design:
        data = json.loads(text)
        return cls(name=data["name"], reset=ActorPlan(**data["reset"]),
                   newsletter=ActorPlan(**data["newsletter"]),
                   workers=tuple(WorkerGroup(queues=tuple(g["queues"]), threads=g["threads"],
                                             prefetch=g["prefetch"]) for g in data["workers"]))

    def describe(self) -> str:
        """Several lines: where each actor goes, and each worker group."""
        lines = [f"{self.name}:",
                 f"  reset email -> queue {self.reset.queue!r}, priority {self.reset.priority}",
                 f"  newsletter  -> queue {self.newsletter.queue!r}, priority {self.newsletter.priority}"]
        for number, group in enumerate(self.workers, start=1):
            lines.append(f"  worker group {number}: {group.describe()}")
        return "\n".join(lines)
