"""A Dramatiq middleware that keeps the store's job status true, whatever happens.

:func:`shared.job.run_job` records each attempt it runs. But some messages
end before or outside it: arguments that are not a job, a time limit (a
``BaseException`` that ``run_job`` does not catch), a message skipped by
the age limit. The worker calls a middleware around *every* message, so
this one writes the outcome of those too, once Dramatiq gives up on them. It finds the job by the message
id, which the web app sets to the job id (:func:`shared.modes.dramatiq.broker.job_message`).

The model is Dramatiq's own middleware (``dramatiq/middleware/*.py``):
subclass :class:`dramatiq.Middleware` and override the hooks you need.
"""

from __future__ import annotations

from dramatiq import Middleware

from shared.errors import describe
from shared.store import Store

UNFINISHED = ("queued", "running")


class StoreStatus(Middleware):
    """Marks a job ``failed`` with the reason when Dramatiq gives up on its message.

    Giving up is a *nack*: the message goes to the dead letters. A failed
    attempt that Dramatiq will retry is not one, so its job stays ``queued``.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def after_nack(self, broker, message):
        exception = getattr(message, "_exception", None)  # what the last attempt raised
        self._fail(message.message_id, describe(exception) if exception is not None
                   else "given up on by the worker (dead-lettered)")

    def after_skip_message(self, broker, message):
        self._fail(message.message_id, "skipped by the worker (too old, or cancelled)")

    def _fail(self, job_id: str, reason: str) -> None:
        status = self.store.job(job_id)
        if status is not None and status.status in UNFINISHED:
            self.store.set_status(job_id, "failed", reason)
