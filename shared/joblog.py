"""A thread-safe record of when each expensive job ran, for timelines."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class JobSpan:
    """One run of one job: which request asked for it, and when it ran.

    ``start`` and ``end`` are ``time.perf_counter()`` readings, the same clock
    the load generator uses, so both can be drawn on one time axis.
    """

    request_id: str
    name: str
    start: float
    end: float
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.error is None


class JobLog:
    """Collects :class:`JobSpan` records from any thread."""

    def __init__(self) -> None:
        self._spans: list[JobSpan] = []
        self._lock = threading.Lock()

    def add(self, span: JobSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def spans(self) -> list[JobSpan]:
        """A copy of every span recorded so far, oldest first."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def timed(self, request_id: str, name: str):
        """Context manager that records the enclosed block as one span."""
        return _Timed(self, request_id, name)


class _Timed:
    def __init__(self, log: JobLog, request_id: str, name: str) -> None:
        self._log, self._request_id, self._name = log, request_id, name
        self.span: JobSpan | None = None

    def __enter__(self) -> "_Timed":
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        error = None if exc is None else f"{type(exc).__name__}: {exc}"
        self.span = JobSpan(self._request_id, self._name, self._start,
                            time.perf_counter(), error)
        self._log.add(self.span)
        return False
