"""A real Dramatiq broker and worker for one experiment, and a log of every attempt.

:class:`RetryLab` gives each experiment its own Redis namespace (so parallel
runs and re-runs never share a key), its own broker (so a notebook cell that
declares actors can run again without "already registered"), and one
in-process :class:`dramatiq.Worker` with a short poll interval. A middleware
records every attempt of every message: when it started and ended, how it
failed, and whether Dramatiq will retry it, gave up on it (dead letter), or
is done with it.

>>> with RetryLab() as lab:
...     @lab.actor(max_retries=2, min_backoff=50)
...     def hello(name): ...
...     lab.start()
...     hello.send("ada")
...     lab.wait(timeout=10)
...     lab.attempts()
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.message import Message
from dramatiq.middleware import AgeLimit, Middleware

from shared.errors import describe
from shared.modes.dramatiq import dead_letters as dead_letter_store
from shared.modes.dramatiq.broker import BrokerConfig, delete_namespace, make_broker
from shared.modes.dramatiq.dead_letters import DeadLetter
from shared.redis_server import redis_url

#: The worker's ``worker_timeout``, ms: an idle consumer polls Redis with a growing, jittered
#: pause that never exceeds it (Dramatiq's default: 1000). A retry makes two such hops.
POLL_MS = 50
QUEUE = "default"


class LabTimeout(TimeoutError):
    """A lab waited longer than its deadline; the message says for what."""


@dataclass(frozen=True)
class Attempt:
    """One run of one message by the worker."""

    message_id: str
    actor: str
    args: tuple
    number: int  # 1 for the first attempt, 2 for the first retry, ...
    start: float  # seconds since the lab started (time.perf_counter)
    end: float
    error: str | None  # "SMTPRecipientsRefused: ..." or None
    outcome: str  # "done", "retry" (Dramatiq will try again) or "dead" (it gave up)
    delay: float | None = None  # seconds Dramatiq chose to wait before the next attempt

    @property
    def seconds(self) -> float:
        return self.end - self.start


class _AttemptLog(Middleware):
    """Records attempts and which messages are finished. Runs its ``after``
    hooks last, so it sees what Retries decided."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._local = threading.local()
        self.attempts: list[Attempt] = []
        self.pending: set[str] = set()
        self.finished: set[str] = set()
        self._delays: dict[str, float] = {}

    def before_enqueue(self, broker, message, delay):
        # Before, not after: a worker may run the message before the enqueue call returns.
        with self._lock:
            if delay is not None:  # a retry: remember the backoff Dramatiq chose
                self._delays[message.message_id] = delay / 1000
            self.pending.add(message.message_id)
            self.finished.discard(message.message_id)
            self._lock.notify_all()

    def before_process_message(self, broker, message):
        self._local.start = self._clock()
        self._local.number = message.options.get("retries", 0) + 1

    def stamp_end(self) -> None:
        """Called by :class:`_EndStamp` the moment the actor returns, before any other hook."""
        self._local.end = self._clock()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        end = getattr(self._local, "end", None) or self._clock()
        self._local.end = None
        if exception is None:
            outcome = "done"
        else:
            outcome = "dead" if message.failed else "retry"
        with self._lock:
            delay = self._delays.pop(message.message_id, None) if outcome == "retry" else None
            self.attempts.append(Attempt(
                message.message_id, message.actor_name, tuple(message.args),
                getattr(self._local, "number", 0), getattr(self._local, "start", end), end,
                None if exception is None else describe(exception), outcome, delay))
            if outcome == "done":
                self.finished.add(message.message_id)
            self._lock.notify_all()

    def after_nack(self, broker, message):
        """A dead message is finished once it sits in the dead letters, not before."""
        with self._lock:
            self.finished.add(message.message_id)
            self._lock.notify_all()

    def after_skip_message(self, broker, message):
        with self._lock:
            self.finished.add(message.message_id)
            self._lock.notify_all()


class _EndStamp(Middleware):
    """Last in the list, so its ``after`` hook runs first: when the actor returned."""

    def __init__(self, log: _AttemptLog) -> None:
        self._log = log

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._log.stamp_end()


class _LogCapture(logging.Handler):
    """Keeps the worker's log lines instead of printing them on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


class RetryLab:
    """One broker in a fresh Redis namespace, one in-process worker, one attempt log.

    ``worker_threads`` threads run messages. ``time_limits=True`` starts
    Dramatiq's time-limit watchdog (the CLI does this at boot); without it
    ``time_limit`` options do nothing. Stop everything with :meth:`close`
    (or use ``with``): it stops the worker and deletes the namespace's keys.
    """

    def __init__(self, *, worker_threads: int = 4, time_limits: bool = False,
                 url: str | None = None) -> None:
        if worker_threads < 1:
            raise ValueError(f"worker_threads must be at least 1, got {worker_threads}")
        self.namespace = f"lesson06-{uuid.uuid4().hex[:10]}"
        self.url = url or redis_url()
        self.worker_threads = worker_threads
        self.time_limits = time_limits
        self._t0 = time.perf_counter()
        self._log = _AttemptLog(self.clock)
        self.broker = make_broker(self.url, BrokerConfig(namespace=self.namespace,
                                                         heartbeat_timeout=5_000),
                                  middleware=[_EndStamp(self._log)])  # last in: after-hook first
        self.broker.add_middleware(self._log, before=AgeLimit)  # first in, so its after-hooks run last
        self.worker: dramatiq.Worker | None = None
        self._capture = _LogCapture()
        _quiet_dramatiq(self._capture)

    # -- declaring and running -------------------------------------------------

    def actor(self, fn: Callable | None = None, **options: Any):
        """``@lab.actor(max_retries=3, ...)``: ``dramatiq.actor`` on this lab's broker."""
        decorate = dramatiq.actor(broker=self.broker, **options)
        return decorate(fn) if fn is not None else decorate

    def start(self) -> RetryLab:
        """Start the worker (after declaring every actor)."""
        if self.worker is None:
            if self.time_limits:
                self.broker.emit_after("process_boot")
            self.worker = dramatiq.Worker(self.broker, worker_threads=self.worker_threads,
                                          worker_timeout=POLL_MS)
            self.worker.start()
        return self

    def clock(self) -> float:
        """Seconds since this lab was made: the time axis of :meth:`attempts`."""
        return time.perf_counter() - self._t0

    def clock_of(self, perf_counter: float) -> float:
        """A ``time.perf_counter()`` reading (the SMTP servers' clock) on the lab's time axis."""
        return perf_counter - self._t0

    # -- watching ------------------------------------------------------------

    def attempts(self, actor: str | None = None, args: tuple | None = None) -> list[Attempt]:
        """Every attempt so far, in the order they started; filter by actor name and args."""
        with self._log._lock:
            found = sorted(self._log.attempts, key=lambda attempt: attempt.start)
        if actor is not None:
            found = [a for a in found if a.actor == actor]
        if args is not None:
            found = [a for a in found if a.args == tuple(args)]
        return found

    def status(self, message_id: str) -> dict:
        """What ``GET /jobs/<id>`` would say: status, attempts, last error."""
        mine = [a for a in self.attempts() if a.message_id == message_id]
        with self._log._lock:
            known = message_id in self._log.pending
        if not mine:
            return {"status": "queued" if known else "unknown", "attempts": 0, "error": None}
        last = mine[-1]
        status = {"done": "done", "dead": "failed", "retry": "queued"}[last.outcome]
        return {"status": status, "attempts": len(mine), "error": last.error}

    @property
    def log(self) -> list[tuple[str, str]]:
        """The worker's log lines, ``(level, text)``, that would have gone to stderr."""
        return list(self._capture.lines)

    def unfinished(self) -> int:
        """How many messages are still queued, waiting for a retry, or running."""
        with self._log._lock:
            return len(self._log.pending - self._log.finished)

    def wait(self, timeout: float = 10.0, what: str = "every message to finish") -> None:
        """Wait until every message sent so far is done or dead (retries included).

        Raises :class:`LabTimeout` after ``timeout`` seconds, saying how many are left.
        """
        self.wait_until(lambda: self.unfinished() == 0, timeout, what)

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds; :class:`LabTimeout` naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._log._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabTimeout(
                        f"waited {timeout:g} s for {what}; {self.unfinished()} message(s) "
                        "unfinished. A retry with Dramatiq's default backoff waits 15 s or more: "
                        "did you set min_backoff and max_retries on the actor?")
                self._log._lock.wait(min(left, 0.05))

    # -- dead letters ----------------------------------------------------------

    def dead_letters(self, queue: str = QUEUE) -> list[DeadLetter]:
        """The messages Dramatiq gave up on, from ``<namespace>:<queue>.XQ`` in Redis."""
        return dead_letter_store.dead_letters(self.broker, queue)

    def requeue(self, letter: DeadLetter) -> Message:
        """Take ``letter`` out of the dead letters and queue it again, with fresh retries.

        Atomic; a letter requeued already raises
        :class:`~shared.modes.dramatiq.dead_letters.NotADeadLetter` (a ``ValueError``).
        """
        return dead_letter_store.requeue(self.broker, letter)

    # -- stopping --------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker, close the broker, delete this lab's keys. Idempotent."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop(timeout=int(timeout * 1000))
        if self.broker is not None:
            self.broker.close()
            delete_namespace(self.url, self.namespace)
        _unquiet_dramatiq(self._capture)

    def __enter__(self) -> RetryLab:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.worker is not None else "stopped"
        return f"<RetryLab {self.namespace} {state}, {len(self.attempts())} attempts>"


_captures: list[_LogCapture] = []
_captures_lock = threading.Lock()
_saved: dict[str, Any] = {}


def _quiet_dramatiq(capture: _LogCapture) -> None:
    """Route Dramatiq's log to ``capture`` instead of stderr (pink in Jupyter)."""
    logger = logging.getLogger("dramatiq")
    with _captures_lock:
        if not _captures:
            _saved.update(level=logger.level, propagate=logger.propagate)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        _captures.append(capture)
        logger.addHandler(capture)


def _unquiet_dramatiq(capture: _LogCapture) -> None:
    logger = logging.getLogger("dramatiq")
    with _captures_lock:
        if capture not in _captures:
            return
        _captures.remove(capture)
        logger.removeHandler(capture)
        if not _captures:
            logger.setLevel(_saved.get("level", logging.NOTSET))
            logger.propagate = _saved.get("propagate", True)
