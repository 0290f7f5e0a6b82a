"""How long a job waits for an idle Dramatiq worker to notice it (lesson 04).

Dramatiq's Redis consumer does not block on Redis: it asks for messages,
and when there are none it sleeps, a little longer after each empty answer,
up to ``worker_timeout`` milliseconds. A job sent to a worker that sat idle
therefore waits for the rest of that sleep before anyone looks.

:func:`measure_pickup` measures that wait with real in-process
``dramatiq.Worker`` objects on the real Redis, one per ``worker_timeout``,
side by side. Each worker consumes ``queues`` queues, each with its own
consumer and its own backoff, so a single idle period gives ``queues``
independent samples. It also counts the fetches each idle worker makes
per second: the price of a short ``worker_timeout``.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import dramatiq

from shared.modes.dramatiq.broker import (BrokerConfig, ClosingRedisBroker, delete_namespace,
                                         make_broker)
from shared.processes import wait_until

BACKOFF_FACTOR_MS = 5  # Dramatiq's first sleep after an empty answer


@dataclass(frozen=True)
class Pickup:
    """Waits (seconds) from send to start, after an idle period, and the idle cost."""

    worker_timeout: int
    waits: tuple[float, ...]
    idle_calls_per_second: float

    @property
    def p50(self) -> float:
        return statistics.median(self.waits)

    @property
    def worst(self) -> float:
        return max(self.waits)


def idle_seconds_to_reach_cap(worker_timeout: int, *, at_least: float = 0.5) -> float:
    """About how long a consumer sits idle before its sleeps reach ``worker_timeout``.

    Sleeps double from 5 ms, each stretched by a random factor between 1
    and 2 (1.5 on average), until one would pass the cap; add a quarter of
    the cap so most consumers got there.
    """
    total, sleep = 0.0, BACKOFF_FACTOR_MS
    while 1.5 * sleep < worker_timeout:
        total += 1.5 * sleep
        sleep *= 2
    return max(at_least, (total + worker_timeout / 4) / 1000)


def measure_pickup(redis_url: str, worker_timeouts: Sequence[int], *, queues: int = 8,
                   idle: float | None = None, count_seconds: float = 0.5,
                   deadline: float = 10.0, prefix: str = "pickup") -> list[Pickup]:
    """One worker per ``worker_timeouts`` entry, side by side: let them sit idle, then
    send one job to each of their ``queues`` queues at once.

    ``idle`` defaults to the time the longest backoff needs to reach its cap.
    The workers, their brokers and their keys in Redis (namespaces starting
    with ``prefix``) are gone when this returns.
    """
    for timeout in worker_timeouts:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"worker_timeout is in whole milliseconds >= 1, got {timeout!r}")
    idle = max(map(idle_seconds_to_reach_cap, worker_timeouts)) if idle is None else idle
    probes = [_Probe(redis_url, timeout, queues, prefix) for timeout in worker_timeouts]
    try:
        for probe in probes:
            probe.worker.start()
        time.sleep(max(0.0, idle - count_seconds))
        before = [probe.broker.fetches for probe in probes]
        time.sleep(count_seconds)
        calls = [(probe.broker.fetches - b) / count_seconds for probe, b in zip(probes, before)]
        for probe in probes:
            probe.send_all()
        end = time.monotonic() + deadline
        for probe in probes:
            probe.wait(end)
    finally:
        stoppers = [threading.Thread(target=probe.stop) for probe in probes]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
    return [Pickup(probe.worker_timeout, tuple(sorted(probe.started.values())), rate)
            for probe, rate in zip(probes, calls)]


class _CountingBroker(ClosingRedisBroker):
    """A RedisBroker that counts its ``fetch`` calls (what an idle consumer does)."""

    fetches = 0

    def _dispatch(self, command):
        dispatch = super()._dispatch(command)
        if command != "fetch":
            return dispatch

        def counted(*args):
            self.fetches += 1
            return dispatch(*args)

        return counted


class _Probe:
    """One in-process worker on ``queues`` queues of a fresh namespace."""

    def __init__(self, redis_url: str, worker_timeout: int, queues: int, prefix: str) -> None:
        self.redis_url, self.worker_timeout = redis_url, worker_timeout
        self.namespace = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.broker = make_broker(redis_url, BrokerConfig(namespace=self.namespace),
                                  broker_class=_CountingBroker)
        self.started: dict[int, float] = {}
        self._lock = threading.Lock()
        self.actors = [dramatiq.actor(broker=self.broker, actor_name=f"probe{n}",
                                      queue_name=f"probe{n}", max_retries=0)(self._probe)
                       for n in range(queues)]
        self.worker = dramatiq.Worker(self.broker, worker_threads=queues,
                                      worker_timeout=worker_timeout)

    def _probe(self, number: int, sent_at: float) -> None:
        with self._lock:
            self.started[number] = time.perf_counter() - sent_at

    def send_all(self) -> None:
        for number, actor in enumerate(self.actors):
            actor.send(number, time.perf_counter())

    def wait(self, end: float) -> None:
        try:
            wait_until(lambda: len(self.started) >= len(self.actors),
                       max(0.0, end - time.monotonic()),
                       f"{len(self.actors)} probe jobs to start "
                       f"(worker_timeout={self.worker_timeout} ms)", interval=0.002)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: only {len(self.started)} started") from None

    def stop(self) -> None:
        self.worker.stop()
        self.broker.close()
        delete_namespace(self.redis_url, self.namespace)
