"""A job is plain data, and one function runs any job.

A signup makes two jobs, each with its own id: ``welcome_email`` and
``avatar``. A :class:`Job` holds only what crosses a process boundary as
JSON (never pickle: unpickling runs code). :func:`run_job` runs one, given
the store and the settings, in whatever thread or process picked it up.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, fields

from shared import jobs
from shared.errors import describe
from shared.settings import Settings
from shared.store import Span, Store

KINDS = ("welcome_email", "avatar")


class BadJob(ValueError):
    """A message that is not a job this course knows; the text says what is wrong."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    email: str
    request_id: str
    enqueued_at: float

    def to_json(self) -> str:
        return json.dumps(vars(self), separators=(",", ":"))  # asdict() is 3x slower

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        """Parse and check a job message; :class:`BadJob` says what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJob(f"not JSON: {exc}") from None
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise BadJob(f"expected a JSON object with exactly the keys {', '.join(names)}")
        if data["kind"] not in KINDS:
            raise BadJob(f"unknown kind {data['kind']!r}: expected one of {', '.join(KINDS)}")
        at = data["enqueued_at"]  # JSON's true is a Python int, and json.loads reads NaN
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise BadJob("enqueued_at must be a finite number")
        if not all(isinstance(data[name], str) for name in ("id", "email", "request_id")):
            raise BadJob("id, email and request_id must be strings")
        return cls(**data)


def new_jobs(email: str, request_id: str, kinds: tuple[str, ...] = KINDS) -> list[Job]:
    """One job of each kind for a new account, each with a fresh id (never the client's).

    ``enqueued_at`` is now: when the job is made, just before it is recorded
    and queued. It travels in the job's message (Redis, Dramatiq); the
    thread-queue mode records in the store the moment each job joins its queue.
    """
    now = time.time()
    return [Job(uuid.uuid4().hex, kind, email, request_id, now) for kind in kinds]


def run_job(job: Job, store: Store, settings: Settings, *, will_retry: bool = False) -> None:
    """Run ``job`` once, recording its status and a timing span in ``store``.

    On failure the error is recorded, then the exception is raised again, so
    a caller that retries sees it; ``will_retry`` (lesson 02's thread queue)
    leaves a failed job ``queued`` rather than ``failed``. The Dramatiq path
    uses :func:`run_attempt` instead: its status middleware writes the status.
    """
    attempt = store.start_attempt(job.id)
    start = time.perf_counter()
    try:
        _work(job, store, settings)
    except Exception as exc:
        store.finish_attempt(job.id, _span(job, attempt, start, exc), will_retry=will_retry)
        raise
    store.finish_attempt(job.id, _span(job, attempt, start))


def run_attempt(job: Job, store: Store, settings: Settings, attempt: int) -> None:
    """Run attempt number ``attempt`` of ``job``, recording its timing span but not its status.

    For a caller that keeps the job's status itself: on the Dramatiq path a
    middleware does (:mod:`shared.modes.dramatiq.status`), because only it
    knows whether a failed attempt will be retried. Raises what the job raised.
    """
    start = time.perf_counter()
    try:
        _work(job, store, settings)
    except Exception as exc:
        store.add_span(_span(job, attempt, start, exc))
        raise
    store.add_span(_span(job, attempt, start))


def _span(job: Job, attempt: int, start: float, error: BaseException | None = None) -> Span:
    return Span(job.id, job.request_id, job.kind, attempt, start, time.perf_counter(),
                None if error is None else describe(error))


def _work(job: Job, store: Store, settings: Settings) -> None:
    if job.kind == "welcome_email":
        jobs.send_welcome_email(job.email, smtp_host=settings.smtp_host,
                                smtp_port=settings.smtp_port, timeout=settings.smtp_timeout)
        store.mark_welcomed(job.email)
    elif job.kind == "avatar":
        store.set_avatar(job.email, jobs.render_avatar(job.email, size=settings.avatar_size,
                                                      canvas=settings.avatar_canvas))
    else:
        raise BadJob(f"unknown kind {job.kind!r}")
