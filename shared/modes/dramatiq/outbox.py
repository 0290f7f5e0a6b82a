"""The outbox relay: send the jobs a signup wrote to the outbox, once Redis takes them.

With the outbox on, a signup writes its account, its jobs and one outbox row
per job in ONE database transaction, and sends nothing: the answer never
waits for Redis, and a commit is never followed by a send that fails. This
thread sends each unsent row's message, then marks the row sent:

- send, then mark: a failed send leaves the row unsent, to try again; a crash
  between the two sends the message again on the next pass (at least once,
  never zero). The message id is the job id, so the job can tell (lesson 06).
- claims with a lease: rows are claimed in one transaction, so two relays (two
  web processes) never claim the same row at once. A claim runs out after
  ``lease`` seconds, so a dead relay's rows go to another relay. A relay that
  outlives its lease stops its pass before the next send, and marks a row only
  while it still holds the claim; a single send slower than the lease can
  still go out twice (at least once, again).
- an error ends the pass, not the thread: it waits, longer after each failed
  pass, then tries again, and keeps the order of the rows. A signup's
  :meth:`OutboxRelay.wake` cuts short only the idle pause, never that backoff.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from shared.job import Job
from shared.store import JobStatus, Store

log = logging.getLogger(__name__)

PAUSE_SECONDS = 0.05  # between passes with nothing to send (a signup wakes the relay at once)
MAX_PAUSE_SECONDS = 1.0  # between passes while the broker refuses
LEASE_SECONDS = 30.0


class OutboxRelay:
    """A thread that sends the outbox's unsent jobs with ``send`` and marks each one sent."""

    def __init__(self, store: Store, send: Callable[[Job], object], *,
                 pause: float = PAUSE_SECONDS, lease: float = LEASE_SECONDS) -> None:
        self.store, self.send = store, send
        self.pause, self.lease = pause, lease
        self.name = f"outbox-relay-{uuid.uuid4().hex[:8]}"
        self.sent = 0
        self.failed_passes = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> OutboxRelay:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run a pass now (a signup just wrote rows), unless the last pass failed: then the
        relay keeps its backoff, so a storm of signups during an outage does not hammer the
        broker."""
        self._wake.set()

    def relay_once(self) -> int:
        """Send the claimed rows in order, marking each one sent; stop at the first failure.

        Returns how many were sent; raises what the failed send raised.
        """
        sent = 0
        lease_ends = time.time() + self.lease  # no later than the store's own deadline
        for row in self.store.claim_unsent(self.name, lease_seconds=self.lease):
            if time.time() >= lease_ends:
                break  # the claims ran out: the next pass claims again
            self.send(_job(row))  # first send...
            sent += 1
            self.sent += 1
            if not self.store.mark_sent(row.id, self.name):  # ...then mark, if still ours
                break  # another relay took the row over after the lease: it may send it too
        return sent

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current pass; unsent rows stay in the outbox for the next relay."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        pause = self.pause
        while not self._stop.is_set():
            try:
                self.relay_once()
            except Exception as exc:  # noqa: BLE001 - broker down (or any send error): keep the rows
                self.failed_passes += 1
                if pause == self.pause:
                    log.info("outbox relay: cannot send (%s: %s); the jobs wait in the outbox",
                             type(exc).__name__, exc)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
                self._stop.wait(pause)  # back off: a signup's wake() does not cut this short
            else:
                if pause != self.pause:
                    log.info("outbox relay: sending again")
                pause = self.pause
                self._wake.wait(pause)  # idle: a signup's wake() starts the next pass at once
            self._wake.clear()


def _job(row: JobStatus) -> Job:
    return Job(row.id, row.kind, row.email, row.request_id, row.enqueued_at)
