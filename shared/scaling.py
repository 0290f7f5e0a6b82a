"""How many jobs per second a pool of N workers gets through: measure, do not assume.

:func:`measure` runs the same batch of jobs on pools of several sizes and
reports the throughput of each, for threads or processes. Three kinds of
work behave differently:

- waiting on the network (an email): threads overlap the waits, so
  throughput grows with the pool until the other side is the limit;
- C code that releases the GIL (Pillow's avatar): threads scale up to the
  number of cores, then stop;
- pure Python (:func:`count_primes`): one thread at a time holds the GIL,
  so threads stay flat, and only processes use the other cores, at the cost
  of starting them, of their memory, and of pickling every argument and result.

:func:`gain_in_words` says what a measured speed-up amounts to, in a few
fixed words, so a notebook can print a conclusion computed from its numbers.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import (FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor,
                                ThreadPoolExecutor, wait)
from dataclasses import dataclass
from typing import Any

import psutil

KINDS = ("threads", "processes")
NAP_SECONDS = 0.05  # each process worker's first job: a nap, so that every worker starts


@dataclass(frozen=True)
class Point:
    """One pool size's run: ``jobs`` jobs took ``seconds`` on ``workers`` workers."""

    kind: str
    workers: int
    jobs: int
    seconds: float
    startup: float  # seconds to get the pool's workers ready, before the clock started
    memory: int = 0  # bytes of their own (USS) the pool's worker processes held once started (0 for threads)

    @property
    def rate(self) -> float:
        """Jobs per second."""
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")


#: Every phrase :func:`gain_in_words` can return (the notebook checker normalises them).
GAIN_WORDS = ("a loss", "no gain", "a partial gain", "near-perfect", "more than perfect")


def gain_in_words(speedup: float, perfect: float) -> str:
    """A measured speed-up in words, against the perfect one.

    ``speedup`` is a throughput over another (1.8 for 1.8x); ``perfect`` is
    what it would be if the extra workers added all their work (2 for twice
    the workers). Below 0.85 it is ``"a loss"``, up to 1.15 ``"no gain"``, from
    80% of perfect ``"near-perfect"``, above 115% of it ``"more than
    perfect"`` (the slower run was slowed by something else), else ``"a
    partial gain"``.
    """
    if not speedup >= 0 or not perfect >= 1:
        raise ValueError(f"speedup must be >= 0 and perfect >= 1, got {speedup!r} and {perfect!r}")
    if speedup < 0.85:
        return "a loss"
    if speedup < 1.15:
        return "no gain"
    if speedup > perfect * 1.15:
        return "more than perfect"
    if speedup >= perfect * 0.8:
        return "near-perfect"
    return "a partial gain"


def count_primes(limit: int) -> int:
    """How many primes are below ``limit``, by trial division: pure-Python CPU work."""
    count = 0
    for n in range(2, limit):
        divisor = 2
        while divisor * divisor <= n:
            if n % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count


def measure(work: Callable[[Any], Any], inputs: Sequence[Any], pool_sizes: Sequence[int], *,
            kind: str = "threads", repeat: int = 1) -> list[Point]:
    """Run ``work(x)`` for every ``x`` of ``inputs`` on each pool size; one :class:`Point` each.

    Processes use the ``spawn`` start method (the same on Linux, macOS and
    Windows), so ``work`` must be a module-level function and its inputs
    and results picklable. They start once, in one pool of the largest size
    that keeps N jobs in flight for size N. Starting a pool is timed apart,
    as ``startup``. With ``repeat=3`` each size runs three times and keeps its
    fastest run, as ``timeit`` does: other programs on the machine only ever
    slow a run down, so the fastest is the truest. The runs go in rounds
    (1, 2, 4, then 1, 2, 4 again), so that a moment of disturbance spoils one
    run of one size, not every run of it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not inputs:
        raise ValueError("inputs is empty: give the jobs to run, e.g. [20_000] * 8")
    if not pool_sizes or any(not isinstance(n, int) or n < 1 for n in pool_sizes):
        raise ValueError(f"pool_sizes must be whole numbers >= 1, got {list(pool_sizes)!r}")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a whole number >= 1, got {repeat!r}")
    if kind == "processes":
        return _windowed(work, inputs, pool_sizes, kind, repeat)
    best: dict[int, Point] = {}
    for _ in range(repeat):
        for workers in pool_sizes:
            point = _one(work, inputs, workers, kind)
            if workers not in best or point.seconds < best[workers].seconds:
                best[workers] = point
    return [best[workers] for workers in pool_sizes]


def _one(work: Callable[[Any], Any], inputs: Sequence[Any], workers: int, kind: str) -> Point:
    begin = time.perf_counter()
    with _pool(kind, workers) as pool:
        list(pool.map(_nap, [0.01] * workers))  # every worker started and ready
        start = time.perf_counter()
        list(pool.map(work, inputs))
        seconds = time.perf_counter() - start
    return Point(kind, workers, len(inputs), seconds, start - begin)


def _windowed(work: Callable[[Any], Any], inputs: Sequence[Any], pool_sizes: Sequence[int],
              kind: str, repeat: int = 1) -> list[Point]:
    """One pool of the largest size; pool size N means at most N jobs in flight.

    Starting processes is slow, so the pool starts once (``startup`` and
    ``memory`` of the first point; 0 for the others, which reuse it).
    """
    begin = time.perf_counter()
    with _pool(kind, max(pool_sizes)) as pool:
        list(pool.map(_nap, [NAP_SECONDS] * max(pool_sizes)))  # every worker started and ready
        # The nap keeps each worker busy long enough that the pool starts them all; it is
        # deliberate waiting, not start-up cost, so it is taken off.
        startup = max(0.0, time.perf_counter() - begin - NAP_SECONDS)
        memory = _own_memory(_workers_of(pool))
        fastest: dict[int, float] = {}
        for _ in range(repeat):
            for workers in pool_sizes:
                seconds = _in_flight(pool, work, inputs, workers)
                fastest[workers] = min(seconds, fastest.get(workers, seconds))
        points = [Point(kind, workers, len(inputs), fastest[workers],
                        startup if n == 0 else 0.0, memory if n == 0 else 0)
                  for n, workers in enumerate(pool_sizes)]
    _stop_resource_tracker()
    return points


def _in_flight(pool: Executor, work: Callable[[Any], Any], inputs: Sequence[Any],
               workers: int) -> float:
    """Seconds to run every input with at most ``workers`` jobs in flight."""
    start = time.perf_counter()
    pending: set[Future] = set()
    for item in inputs:
        if len(pending) >= workers:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
        pending.add(pool.submit(work, item))
    for future in pending:
        future.result()
    return time.perf_counter() - start


def _workers_of(pool: Executor) -> list[psutil.Process]:
    """The pool's own worker processes: not multiprocessing's resource tracker, nor any
    other child of this process. ``_processes`` (pid to process) is private to
    ``ProcessPoolExecutor``, in Python 3.8 to 3.13, hence the guard."""
    workers = getattr(pool, "_processes", None) or {}
    found = []
    for pid in list(workers):
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            pass
    return found


def _own_memory(processes: Iterable[psutil.Process]) -> int:
    """Memory that only ``processes`` hold, in bytes: the sum of their USS.

    USS (unique set size) leaves out the pages a process shares with others (the
    interpreter's code, and pages a fork shares with its parent), which the RSS
    counts again in each process. Where the USS cannot be read, the RSS stands in.
    Processes that ended meanwhile count 0.
    """
    total = 0
    for process in processes:
        try:
            try:
                total += process.memory_full_info().uss
            except psutil.AccessDenied:
                total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def _stop_resource_tracker() -> None:
    """Stop the helper process ``spawn`` leaves running, so nothing outlives the measurement.

    Multiprocessing starts it again whenever it needs it. ``_stop`` is private
    (Python 3.11 to 3.13 have it), hence the guard.
    """
    from multiprocessing import resource_tracker  # noqa: PLC0415

    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        stop()


def _pool(kind: str, workers: int) -> Executor:
    if kind == "threads":
        return ThreadPoolExecutor(workers, thread_name_prefix="scaling")
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _nap(seconds: float) -> None:
    time.sleep(seconds)
