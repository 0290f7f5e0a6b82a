"""Watch this process while something runs: live threads and memory, sampled over time.

>>> with Sampler() as watch:
...     run_load(...)
>>> watch.peak("threads")

The sampler runs in a thread of its own, which it does not count, and stops
(joined) when the ``with`` block ends, so it never prints into a later cell.
``extra={"queued": lambda: runner.depth}`` samples more numbers alongside.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

INTERVAL_SECONDS = 0.01


@dataclass(frozen=True)
class Sample:
    """One look at the process. ``t`` is a ``time.perf_counter()`` reading."""

    t: float
    threads: int
    rss: int  # resident memory, bytes
    extra: dict[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float:
        if name in ("threads", "rss"):
            return getattr(self, name)
        return self.extra[name]


class Sampler:
    """Samples ``threading.active_count()`` (itself left out) and resident memory."""

    def __init__(self, interval: float = INTERVAL_SECONDS,
                 extra: dict[str, Callable[[], float]] | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be more than 0 seconds, got {interval!r}")
        self.interval = interval
        self.extra = dict(extra or {})
        self.samples: list[Sample] = []
        self.started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()

    def start(self) -> Sampler:
        if self._thread is None:
            self.started = time.perf_counter()
            self._take()
            self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> Sampler:
        """Stop sampling and wait for the sampler thread to end (one last sample first)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(10)
            self._take()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def _take(self) -> None:
        me = 1 if self._thread is not None and self._thread.is_alive() else 0
        extra = {name: float(read()) for name, read in self.extra.items()}
        self.samples.append(Sample(time.perf_counter(), threading.active_count() - me,
                                   self._process.memory_info().rss, extra))

    def peak(self, name: str) -> float:
        """The highest value of ``"threads"``, ``"rss"`` or an extra, over every sample."""
        if not self.samples:
            raise ValueError("no samples yet: use the sampler in a with block first")
        return max(sample.value(name) for sample in self.samples)

    def first(self, name: str) -> float:
        if not self.samples:
            raise ValueError("no samples yet: use the sampler in a with block first")
        return self.samples[0].value(name)

    def last(self, name: str) -> float:
        """The value of ``"threads"``, ``"rss"`` or an extra at the last sample (when it stopped)."""
        if not self.samples:
            raise ValueError("no samples yet: use the sampler in a with block first")
        return self.samples[-1].value(name)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Sampler {len(self.samples)} samples every {self.interval:g}s>"
