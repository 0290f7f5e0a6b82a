"""``retrying``: a Dramatiq worker on Redis that retries transient failures (lesson 06).

Each job is a Dramatiq message carrying the job's JSON. The actor runs it
with :func:`~shared.job.run_job`, so the store shows every attempt: a failed
attempt that will be retried leaves the job ``queued`` with its error, and
when Dramatiq gives up (the message goes to the dead letters) the job turns
``failed`` with that error. Whether to retry is
:func:`shared.retries.policy.is_transient`: a ``4xx`` answer or a network
error is retried, at most ``max_retries`` times; a ``5xx`` answer or a bug
is not.

The worker runs in this process, on a broker in a Redis namespace of its own
(see :class:`~shared.retries.lab.RetryLab`): messages still waiting for a
retry when the app closes are dropped with that namespace.
"""

from __future__ import annotations

import time

from dramatiq.middleware import Middleware

from shared.job import BadJob, Job, run_job
from shared.modes.base import POLL_SECONDS, Closed, Runner
from shared.retries.lab import DeadLetter, RetryLab
from shared.retries.policy import is_transient


class Retrying(Runner):
    """A Dramatiq worker that retries transient failures with backoff, then dead-letters."""

    name = "retrying"
    needs = frozenset({"redis", "worker"})
    options = {"workers": 4, "max_retries": 5, "min_backoff": 100, "max_backoff": 1000}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for option in ("workers", "min_backoff", "max_backoff"):
            if int(self.config[option]) < 1:
                raise ValueError(f"{option} must be at least 1, got {self.config[option]}")
        if int(self.config["max_retries"]) < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.config['max_retries']}")
        max_retries = int(self.config["max_retries"])
        self.lab = RetryLab(worker_threads=int(self.config["workers"]), url=self.settings.redis_url)
        self.lab.broker.add_middleware(_FailDeadJobs(self))
        store, settings = self.store, self.settings

        def should_retry(retries: int, exc: BaseException) -> bool:
            return retries < max_retries and is_transient(exc)

        @self.lab.actor(actor_name="run_signup_job", retry_when=should_retry,
                        min_backoff=int(self.config["min_backoff"]),
                        max_backoff=int(self.config["max_backoff"]))
        def run_signup_job(job_json: str) -> None:
            run_job(Job.from_json(job_json), store, settings, will_retry=True)

        self._actor = run_signup_job
        self.lab.start()

    def describe(self) -> str:
        c = self.config
        return (f"a Dramatiq worker ({c['workers']} threads) that retries transient failures "
                f"up to {c['max_retries']} times, backoff from {c['min_backoff']} ms "
                f"capped at {c['max_backoff']} ms")

    def submit(self, job: Job) -> None:
        self._actor.send(job.to_json())

    def dead_letters(self) -> list[DeadLetter]:
        """The jobs' messages Dramatiq gave up on."""
        return self.lab.dead_letters()

    def requeue(self, letter: DeadLetter) -> str:
        """Send a dead job again with fresh retries (fix its cause first); returns the job id."""
        job = Job.from_json(letter.args[0])
        self.store.set_status(job.id, "queued")
        self.lab.requeue(letter)
        return job.id

    def wait(self, timeout: float = 30.0, progress: bool = False) -> bool:
        """Like :meth:`Runner.wait`, and requeued dead jobs count too."""
        deadline = time.monotonic() + timeout
        if not super().wait(timeout, progress):
            return False
        while (counts := self.store.counts())["queued"] + counts["running"]:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def close(self, timeout: float = 10.0) -> Closed:
        self.wait(timeout)
        counts = self.store.counts()
        self.lab.close(timeout)
        return Closed(unfinished=counts["queued"] + counts["running"])


class _FailDeadJobs(Middleware):
    """When Dramatiq gives up on a message, its job becomes ``failed`` (its error kept)."""

    def __init__(self, runner: Retrying) -> None:
        self._runner = runner

    def after_nack(self, broker, message):
        try:
            job = Job.from_json(message.args[0])
        except (BadJob, IndexError):
            return  # not one of our jobs: nothing in the store to mark
        self._runner.store.set_status(job.id, "failed")
