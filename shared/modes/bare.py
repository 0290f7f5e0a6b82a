"""``bare``: no jobs at all. How fast the app can answer, the baseline."""

from __future__ import annotations

from shared.job import Job
from shared.modes.base import Runner


class NoJobs(Runner):
    """No jobs: the app only creates the account."""

    name = "bare"
    kinds = ()

    def submit(self, job: Job) -> None:
        raise RuntimeError("the bare mode runs no jobs")
