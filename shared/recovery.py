"""When a dead Dramatiq worker's messages come back (lesson 04): heartbeat, then maintenance.

Dramatiq's Redis broker has no reaper thread. Every call it makes to Redis
runs one Lua script (``dramatiq/brokers/redis/dispatch.lua``), and each call
(except ``ack`` and ``nack``) is chosen, with probability
``maintenance_chance`` per million, to also do *maintenance* on the queue it
names: move back the messages held by every worker whose heartbeat is older
than ``heartbeat_timeout``. So a dead worker's message comes back no sooner
than ``heartbeat_timeout`` after its last heartbeat, and then only once some
call on that queue draws maintenance.

:func:`calls_until_requeue` measures the second half for real: it plants a
dead worker (an old heartbeat and one message in its acks set) and counts
the ``fetch`` calls, the calls an idle consumer makes, until one returns the
message. :func:`held_by` and :func:`last_heartbeat` read a real crash's
moments from Redis, for a timeline.

This is the measurement layer: the app and its modes never import it.
"""

from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass

import redis

from shared.modes.dramatiq.broker import BrokerConfig, delete_namespace, make_broker

QUEUE = "planted"


@dataclass(frozen=True)
class Requeues:
    """How many broker calls it took, trial by trial, until maintenance brought the message back."""

    maintenance_chance: int
    calls: tuple[int, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.calls)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.calls)


def calls_until_requeue(redis_url: str, maintenance_chance: int, *, trials: int = 5,
                        most: int = 20_000) -> Requeues:
    """Plant a dead worker holding one message; count ``fetch`` calls until one returns it.

    Each trial uses a fresh namespace, deleted afterwards. ``most`` bounds a
    trial (it then counts as ``most`` calls).
    """
    if not 1 <= maintenance_chance <= 1_000_000:
        raise ValueError(f"maintenance_chance is per million, 1 to 1,000,000, got {maintenance_chance!r}")
    counts = []
    for _ in range(trials):
        namespace = f"recovery-{uuid.uuid4().hex[:12]}"
        client = redis.Redis.from_url(redis_url)
        broker = make_broker(redis_url, BrokerConfig(namespace=namespace, heartbeat_timeout=1,
                                                      maintenance_chance=maintenance_chance))
        try:
            dead, message_id = f"dead-{uuid.uuid4().hex}", uuid.uuid4().hex
            client.hset(f"{namespace}:{QUEUE}.msgs", message_id, "{}")
            client.sadd(f"{namespace}:__acks__.{dead}.{QUEUE}", message_id)
            client.zadd(f"{namespace}:__heartbeats__", {dead: 0})  # silent since 1970
            calls = 0
            while calls < most:
                calls += 1
                if broker.do_fetch(QUEUE, 1):
                    break
            counts.append(calls)
        finally:
            broker.close()
            client.close()
            delete_namespace(redis_url, namespace)
    return Requeues(maintenance_chance, tuple(counts))


def held_by(redis_url: str, namespace: str, queue: str) -> dict[str, set[str]]:
    """Which worker (broker id) holds which message ids of ``queue`` right now (its acks set)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        prefix = f"{namespace}:__acks__."
        found: dict[str, set[str]] = {}
        for key in client.scan_iter(match=f"{prefix}*.{queue}", count=500):
            members = {str(member) for member in client.smembers(key)}
            if members:
                found[str(key).removeprefix(prefix).removesuffix(f".{queue}")] = members
        return found
    finally:
        client.close()


def last_heartbeat(redis_url: str, namespace: str, worker_id: str) -> float | None:
    """The Unix time (s) of a worker's last heartbeat, or None once maintenance removed it."""
    client = redis.Redis.from_url(redis_url)
    try:
        score = client.zscore(f"{namespace}:__heartbeats__", worker_id)
        return None if score is None else score / 1000
    finally:
        client.close()


def plot_recovery(marks: dict[str, float], *, title: str = ""):
    """A timeline of one crash: each mark (seconds after the kill) on one axis, labelled in turn.

    ``marks`` maps a label to its time; they are drawn in time order, so the
    picture shows the order the run produced.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only where a figure is wanted

    ordered = sorted(marks.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(ordered) + 1.0), dpi=90)
    for row, (label, at) in enumerate(ordered):
        ax.plot([at], [row], "o", color="C0" if label != "kill" else "C3")
        ax.annotate(f"{label} ({at:+.2f} s)", (at, row), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ends = [at for _, at in ordered]
    ax.set_xlim(min(0.0, *ends) - 0.2, max(ends) + 0.35 * (max(ends) - min(0.0, *ends)) + 0.5)
    ax.set_ylim(len(ordered) - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_xlabel("seconds after the kill")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
