"""``nowait``: a new thread per job, and nobody waits for it (lesson 01's teaser).

This is the naive way to "not make the client wait". The client gets no job
id, so it cannot learn how its jobs went; an error lands in :attr:`errors`,
a list nobody reads; and the threads die with the process.
"""

from __future__ import annotations

import threading

from shared.errors import describe
from shared.job import Job, run_job
from shared.modes.base import Runner


class FireAndForget(Runner):
    """A new thread per job; the client gets 202 and no job ids."""

    name = "nowait"
    tells_job_ids = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        threading.Thread(target=self._run, args=(job,), name=f"fire-and-forget-{job.kind}",
                         daemon=True).start()

    def _run(self, job: Job) -> None:
        try:
            run_job(job, self.store, self.settings)
        except Exception as exc:  # noqa: BLE001 - the point: nobody else will see it
            with self._lock:
                self._errors.append(f"{job.kind} job failed: {describe(exc)}")

    @property
    def errors(self) -> list[str]:
        """Every job error so far, which no client was told about."""
        with self._lock:
            return list(self._errors)
