"""Measure the hand-written queue: what enqueueing costs, and how workers scale.

Enqueueing is one ``LPUSH``, so its floor is a Redis round trip: a ``PING``
timed in the same loop, on the same connection. Throughput is measured by
enqueueing a batch of one kind of job and timing until the store says every
one is done, with 1, 2, then 4 worker processes (started before the clock).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from shared.job import new_jobs
from shared.redis_queue.demo import wait_for
from shared.redis_queue.pool import WorkerPool
from shared.redis_queue.queue import RedisQueue
from shared.store import Store

KIND_COLOURS = {"welcome_email": "tab:orange", "avatar": "tab:blue"}
CPU_BOUND = {"avatar"}  # kinds whose perfect scaling is capped at the number of cores


@dataclass(frozen=True)
class EnqueueCost:
    """Median seconds of one ``PING`` and of one ``enqueue`` (JSON + ``LPUSH``)."""

    ping: float
    enqueue: float
    samples: int

    @property
    def ratio(self) -> float:
        return self.enqueue / self.ping


def enqueue_cost(queue: RedisQueue, samples: int = 2000) -> EnqueueCost:
    """Time ``PING`` and ``enqueue`` alternately; the queue is emptied afterwards."""
    job = new_jobs("cost@example.com", "cost", ("welcome_email",))[0]
    pings, pushes = [], []
    for _ in range(samples):
        start = time.perf_counter()
        queue.redis.ping()
        middle = time.perf_counter()
        queue.enqueue(job)
        pings.append(middle - start)
        pushes.append(time.perf_counter() - middle)
    queue.redis.delete(queue.queue)
    return EnqueueCost(statistics.median(pings), statistics.median(pushes), samples)


@dataclass(frozen=True)
class Throughput:
    kind: str
    workers: int
    jobs: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds


def throughput(pool: WorkerPool, store: Store, kind: str, jobs: int,
               timeout: float = 60.0) -> Throughput:
    """Enqueue ``jobs`` jobs of ``kind`` at once; time until all are done."""
    workers = len(pool.running)
    batch = [new_jobs(f"{kind}-{workers}w-{i}@example.com", f"t{i}", (kind,))[0]
             for i in range(jobs)]
    for job in batch:
        store.create_account(job.email, [job])
    done_before = store.counts()["done"]
    start = time.perf_counter()
    for job in batch:
        pool.queue.enqueue(job)
    wait_for(f"{jobs} {kind} jobs", lambda: store.counts()["done"] - done_before == jobs, timeout)
    return Throughput(kind, workers, jobs, time.perf_counter() - start)


def scaling(pool: WorkerPool, store: Store, jobs: dict[str, int],
            workers: tuple[int, ...] = (1, 2, 4)) -> list[Throughput]:
    """Throughput of each kind of job with each number of workers (the pool grows)."""
    results = []
    for count in workers:
        missing = count - len(pool.running)
        if missing > 0:
            pool.start(missing)
        for kind, n in jobs.items():
            results.append(throughput(pool, store, kind, n))
    return results


def plot_scaling(results: list[Throughput], *, cores: int | None = None,
                 title: str = "Jobs per second, by number of worker processes") -> Figure:
    """One line per kind of job, beside the dotted line of perfect scaling.

    For CPU-bound kinds (:data:`CPU_BOUND`), perfect is capped at ``cores``.
    """
    fig, ax = plt.subplots(figsize=(8.0, 4.0), dpi=90)
    kinds = list(dict.fromkeys(r.kind for r in results))
    for kind in kinds:
        mine = sorted((r for r in results if r.kind == kind), key=lambda r: r.workers)
        colour = KIND_COLOURS.get(kind, "tab:green")
        xs = [r.workers for r in mine]
        ax.plot(xs, [r.per_second for r in mine], marker="o", color=colour, label=kind)
        base = mine[0].per_second / mine[0].workers
        # Computing work cannot gain past the cores: its perfect line stops rising there.
        limit = cores if cores and kind in CPU_BOUND else None
        ax.plot(xs, [base * (min(x, limit) if limit else x) for x in xs], linestyle=":",
                color=colour,
                label=f"{kind}, perfect scaling" + (f" (at most {limit} cores)" if limit else ""))
    if cores:
        ax.axvline(cores, color="#999999", linewidth=0.8)
        ax.annotate(f" {cores} cores", (cores, ax.get_ylim()[1] * 0.95), color="#666666",
                    fontsize="small", va="top")
    ax.set_xticks(sorted({r.workers for r in results}))
    ax.set_xlabel("worker processes")
    ax.set_ylabel("jobs per second")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
