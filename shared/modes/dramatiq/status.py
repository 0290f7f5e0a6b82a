"""The job status on the Dramatiq path: one middleware writes all of it.

The worker calls a middleware's hooks around *every* message, whatever the
actor and however the message ends, so this one keeps the store's job status
(``GET /jobs/<id>``) true; the actors only run the work and record its
timing (:func:`shared.job.run_attempt`). It finds the job by the message id,
which the web app sets to the job id
(:func:`shared.modes.dramatiq.broker.job_message`).

Why it must be added *before* ``Retries``
(``broker.add_middleware(StoreStatus(store), before=Retries)``): Dramatiq
calls ``before_*`` hooks in middleware order and ``after_*`` hooks in
reverse order (``dramatiq/broker.py``, ``emit_before``/``emit_after``). So
this middleware's ``after_process_message`` runs *after* Retries'
(``dramatiq/middleware/retries.py``), which has decided by then: it calls
``message.fail()`` when it gives up, and re-enqueues the message with a
delay otherwise. A failed attempt with ``message.failed`` still False is
therefore one that will be retried.

================================  ===========================================
what happened                      status written
================================  ===========================================
an attempt starts                  ``running`` (attempts + 1)
it returned                        ``done``
it raised, a retry follows         ``queued``, with this attempt's error
given up (the message is nacked)   ``failed``, with the reason
skipped (too old) and not nacked   ``failed``, with the reason
requeued from the dead letters     ``queued`` (the mode's ``requeue``)
================================  ===========================================

A message is nacked (sent to the dead letters) when Retries gives up, when
the actor raises one of its ``throws``, or when a middleware fails it (the
age limit does); the arguments may not even be a job, or a time limit (a
``BaseException``) may have struck: the reason is whatever was raised.
"""

from __future__ import annotations

import threading

from dramatiq import Middleware

from shared.errors import describe
from shared.store import Store

UNFINISHED = ("queued", "running")


class StoreStatus(Middleware):
    """Writes every job status change of the Dramatiq path to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._local = threading.local()

    def attempt(self) -> int:
        """The number of the attempt this worker thread is running (1 for the first)."""
        number = getattr(self._local, "attempt", None)
        if number is None:
            raise RuntimeError("no attempt is running in this thread: is StoreStatus on the "
                               "broker (before Retries), and is its job in the store?")
        return number

    def before_process_message(self, broker, message):
        try:
            self._local.attempt = self.store.start_attempt(message.message_id)
        except KeyError:  # not a job of this store: nothing to record
            self._local.attempt = None

    def after_process_message(self, broker, message, *, result=None, exception=None):
        attempt, self._local.attempt = getattr(self._local, "attempt", None), None
        self._local.ended = (message.message_id, attempt)  # for the nack that may follow
        if message.failed:
            return  # given up: the nack that follows records it (after_nack)
        if exception is None:
            self.store.end_attempt(message.message_id, "done", attempt=attempt)
        else:  # Retries has re-enqueued it, with a delay
            self.store.end_attempt(message.message_id, "queued", describe(exception),
                                   attempt=attempt)

    def after_nack(self, broker, message):
        exception = getattr(message, "_exception", None)  # what was raised, if anything
        ended_id, attempt = getattr(self._local, "ended", (None, None))
        self._fail(message.message_id, describe(exception) if exception is not None
                   else "rejected by the worker before it ran (dead-lettered)",
                   attempt if ended_id == message.message_id else None)

    def after_skip_message(self, broker, message):
        self._local.attempt = None  # an earlier middleware skipped it before this one began
        if not message.failed:  # a failed one is nacked next: after_nack records it
            self._fail(message.message_id, "skipped by the worker (too old, or cancelled)")

    def _fail(self, job_id: str, reason: str, attempt: int | None = None) -> None:
        status = self.store.job(job_id)
        if status is not None and status.status in UNFINISHED:
            self.store.end_attempt(job_id, "failed", reason, attempt=attempt)
