"""``blocking``: the request handler runs each job itself, then answers (lesson 01)."""

from __future__ import annotations

from shared.job import Job, run_job
from shared.modes.base import Runner


class Inline(Runner):
    """The request handler runs each job, then answers 201 (or 502)."""

    name = "blocking"
    handler_waits = True
    tells_job_ids = False  # it answers 201 with the outcome instead

    def submit(self, job: Job) -> None:
        """Run the job now, in the caller's thread; its outcome goes to the store."""
        try:
            run_job(job, self.store, self.settings)
        except Exception:  # noqa: BLE001 - recorded in the store; the handler reads it
            pass
