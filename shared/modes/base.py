"""What every way of running jobs offers the web app, the lessons and ``make serve``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from shared.job import Job
from shared.processes import wait_until
from shared.settings import Settings
from shared.store import JobStatus, Store

POLL_SECONDS = 0.02


class QueueFull(Exception):
    """The runner cannot take more jobs now; the client should retry later.

    The app answers ``503 Service Unavailable`` with a ``Retry-After`` header of
    ``retry_after`` seconds. Nothing of the signup is kept: raised by :meth:`Runner.admit`,
    before anything is written; raised by a submit, after the signup is undone. So the
    client's retry is a fresh signup, not a ``409``.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Closed:
    """What :meth:`Runner.close` left behind: jobs queued or running at its deadline."""

    unfinished: int = 0
    handed_back: int = 0  # still queued somewhere that outlives this process (Redis)

    def __str__(self) -> str:
        if not self.unfinished and not self.handed_back:
            return "every job finished"
        parts = []
        if self.unfinished:
            parts.append(f"{self.unfinished} job(s) left unfinished")
        if self.handed_back:
            parts.append(f"{self.handed_back} job(s) left queued for the next worker")
        return ", ".join(parts)


class Runner:
    """Runs the jobs a signup makes. One subclass per way of running them.

    Class attributes say what the app and ``make serve`` must do around it:
    ``kinds`` (no kinds: the app makes no jobs), ``handler_waits`` (the
    request handler waits for the jobs, and answers 201 or 502),
    ``tells_job_ids`` (the 202 answer carries the job ids) and ``needs``
    (parts to start first: ``"redis"``, ``"worker"``).
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("welcome_email", "avatar")
    handler_waits: ClassVar[bool] = False
    tells_job_ids: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset()

    #: Options this mode takes (``make serve ... WORKERS=4``), with their defaults.
    options: ClassVar[dict[str, object]] = {}

    def __init__(self, store: Store, settings: Settings, **options: object) -> None:
        self.check_options(options)
        self.store, self.settings = store, settings
        # Values of several types, each checked by the mode that takes it.
        self.config: dict[str, Any] = {**self.options, **options}
        self._bookmark = store.last_seq()

    @classmethod
    def check_options(cls, options: dict[str, object]) -> None:
        """``ValueError`` naming the options this mode takes, for any other."""
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            known = ", ".join(cls.options) or "none"
            raise ValueError(f"the {cls.name} mode has no option {', '.join(unknown)} "
                             f"(its options: {known})")

    def describe(self) -> str:
        """One line for ``make serve``'s banner: how this runner runs jobs."""
        doc = type(self).__doc__
        return doc.strip().splitlines()[0] if doc else self.name

    def submit(self, job: Job) -> None:
        """Take ``job`` (already recorded as queued in the store) and run it, some time."""
        raise NotImplementedError

    def admit(self) -> None:
        """Before a signup writes anything: raise :class:`QueueFull` to refuse it (503) while
        this runner is overloaded. By default every signup is admitted."""

    def submit_all(self, jobs: list[Job]) -> None:
        """Take one signup's jobs. A runner with a bounded queue takes all of them or,
        raising :class:`QueueFull`, none; by default each job is submitted in turn."""
        for job in jobs:
            self.submit(job)

    def status(self, job_id: str) -> JobStatus | None:
        """Where the job is now: by default, what the store says."""
        return self.store.job(job_id)

    def close(self, timeout: float = 10.0) -> Closed:
        """Stop taking jobs, finish or hand back what is queued, stop workers.

        Waits at most ``timeout`` seconds.
        """
        self.wait(timeout)
        counts = self.store.counts()
        return Closed(unfinished=counts["queued"] + counts["running"])

    def wait(self, timeout: float = 30.0, progress: bool = False) -> bool:
        """Wait until every job so far has finished (done or failed).

        Returns False if some were still queued or running after ``timeout``.
        ``progress=True`` shows a bar of the jobs queued since the last wait.
        """
        from shared.progress import progress_bar  # noqa: PLC0415 - tqdm only when asked

        _, total = self.store.progress_since(self._bookmark)
        newest = self._bookmark

        def all_finished() -> bool:
            nonlocal newest
            newest = self.store.last_seq()  # read first: a job added after the check stays ahead
            finished, total = self.store.progress_since(self._bookmark)
            bar.update(finished - bar.n)
            return finished == total

        with progress_bar(total, "background jobs", "job", enabled=progress and total > 0) as bar:
            try:
                wait_until(all_finished, timeout, "every job to finish", interval=POLL_SECONDS)
            except TimeoutError:
                return False
        self._bookmark = newest
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} mode={self.name!r}>"
