"""Fire-and-forget: run a function in a new thread and do not wait for it.

This is the naive way to "not make the client wait". The web app uses it in
``nowait`` mode to show what it gives up: nobody sees the result, and an
error goes nowhere unless someone looks here.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from tqdm import tqdm


class FireAndForget:
    """Starts one thread per call; remembers errors; can wait for stragglers."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._errors: list[str] = []
        self._submitted = 0  # jobs ever started
        self._awaited = 0  # of those, how many a finished wait() has seen end
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=self._run, args=(fn, args),
                                  name="fire-and-forget", daemon=True)
        with self._lock:
            self._threads.add(thread)
            self._submitted += 1
        thread.start()

    def _run(self, fn: Callable[..., object], args: tuple) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the point: nobody else will see it
            with self._lock:
                self._errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._threads)

    def wait(self, timeout: float = 30.0, progress: bool = False) -> bool:
        """Wait for every thread started so far; False if some still run after timeout.

        ``progress=True`` shows a bar of the jobs started since the last
        wait, and how many of them have finished.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            total = self._submitted - self._awaited
        with tqdm(total=total, desc="background jobs", unit="job", mininterval=0.25,
                  disable=not progress or total == 0) as bar:
            while self.pending and time.monotonic() < deadline:
                bar.update(total - self.pending - bar.n)
                time.sleep(0.02)
            bar.update(total - self.pending - bar.n)
        with self._lock:
            if not self._threads:
                self._awaited = self._submitted
            return not self._threads
