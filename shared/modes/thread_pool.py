"""``thread-queue``: a fixed pool of worker threads takes jobs from a bounded queue (lesson 02).

The request handler only puts the signup's jobs in a :class:`queue.Queue`
and answers ``202`` with their ids. A fixed number of worker threads take
jobs out, oldest first, and run them; the store records each job's life
(queued, running, done or failed), which ``GET /jobs/<id>`` shows.

- **Bounded.** At most ``queue_size`` jobs wait. When a signup's jobs do not
  fit, :meth:`ThreadQueue.submit_all` raises :class:`QueueFull` and the app
  answers ``503`` with ``Retry-After``: failing fast instead of queueing work
  that would only be done long after anyone cares.
- **Retries.** ``retries=3`` tries a failed job up to 3 more times, waiting a
  capped exponential backoff with full jitter (:mod:`shared.backoff`) between
  attempts. The worker thread sleeps meanwhile: simple, and it costs a worker.
- **Priority.** ``priority=True`` makes welcome emails overtake queued avatars
  (a :class:`queue.PriorityQueue` of ``(priority, sequence, job)``).
- **Graceful stop.** :meth:`ThreadQueue.close` stops taking jobs, puts one
  sentinel per worker behind the queued jobs, and joins the workers: the
  queue drains. What is still queued at the deadline is dropped, and marked
  failed with the reason: a queue in memory has nowhere to hand jobs back.

Its limit: the queue lives in the web process's memory. Kill the process
and every queued job is gone (lesson 03 moves the queue to Redis).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time

from shared.backoff import Backoff
from shared.job import Job, run_job
from shared.modes.base import Closed, QueueFull, Runner
from shared.store import Store
from shared.settings import Settings

#: Lower runs sooner when ``priority=True``: the email is what the user waits for.
PRIORITIES = {"welcome_email": 0, "avatar": 1}
_LAST = 1_000_000  # sentinels sort after every job
RETRY_AFTER_SECONDS = 1
DROPPED = "dropped: the app stopped before this job ran (its queue was in the app's memory)"


class ThreadQueue(Runner):
    """A fixed pool of worker threads takes jobs from a bounded queue; a full queue answers 503."""

    name = "thread-queue"
    options = {"workers": 4, "queue_size": 100, "priority": False, "retries": 0,
               "backoff_base": 0.1, "backoff_cap": 2.0, "seed": None, "start_workers": True}

    def __init__(self, store: Store, settings: Settings, **options: object) -> None:
        super().__init__(store, settings, **options)
        self.workers = _whole(self.config["workers"], "workers", least=1)
        self.queue_size = _whole(self.config["queue_size"], "queue_size", least=0)
        self.retries = _whole(self.config["retries"], "retries", least=0)
        self.priority = bool(self.config["priority"])
        self.backoff = Backoff(float(self.config["backoff_base"]),
                               float(self.config["backoff_cap"]), self.config["seed"])
        # Unbounded underneath: submit_all enforces queue_size for a whole signup
        # at once, and close() can always add its sentinels.
        self._queue: queue.Queue = queue.PriorityQueue() if self.priority else queue.Queue()
        self._sequence = itertools.count()
        self._lock = threading.Lock()  # one submission at a time: check room, then put
        self._accepting = True
        self._abort = threading.Event()  # the close deadline passed: drop, stop retrying
        self._dropped = 0
        self._threads: list[threading.Thread] = []
        if self.config["start_workers"]:
            self.start()

    # -- the pool --------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads (done at once unless ``start_workers=False``)."""
        with self._lock:
            if self._threads:
                return
            self._threads = [threading.Thread(target=self._work, name=f"thread-queue-worker-{n}",
                                              daemon=True) for n in range(1, self.workers + 1)]
            for thread in self._threads:
                thread.start()

    def describe(self) -> str:
        bound = f"at most {self.queue_size} waiting" if self.queue_size else "no bound"
        order = "welcome emails first" if self.priority else "oldest first"
        retries = f", {self.retries} retries with backoff" if self.retries else ""
        full = "; a full queue answers 503" if self.queue_size else ""
        return (f"{self.workers} worker threads take jobs from an in-memory queue "
                f"({bound}, {order}{retries}){full}")

    @property
    def depth(self) -> int:
        """How many jobs wait in the queue now (not those a worker is running)."""
        return self._queue.qsize()

    @property
    def accepting(self) -> bool:
        """False from the moment :meth:`close` begins: new signups then get 503."""
        return self._accepting

    @property
    def dropped(self) -> int:
        """Jobs :meth:`close` dropped, unrun, so far."""
        return self._dropped

    # -- taking jobs -----------------------------------------------------------

    def submit(self, job: Job) -> None:
        self.submit_all([job])

    def submit_all(self, jobs: list[Job]) -> None:
        """Queue all of a signup's jobs, or none: :class:`QueueFull` when they do not fit."""
        with self._lock:
            if not self._accepting:
                raise QueueFull("the app is shutting down and takes no new jobs",
                                RETRY_AFTER_SECONDS)
            waiting = self._queue.qsize()
            room = self.queue_size - waiting if self.queue_size else len(jobs)
            if room < len(jobs):
                raise QueueFull(f"the job queue is full ({waiting} of {self.queue_size} places "
                                f"taken; this signup needs {len(jobs)})", RETRY_AFTER_SECONDS)
            stamps = []
            for job in jobs:
                stamps.append((job.id, time.time()))  # the moment it joins the line
                self._queue.put_nowait(self._item(job))
        # Stamped in queue order under the lock, written after it to keep the lock short.
        # A worker may be running the job already: it writes other columns, nothing is lost.
        self.store.set_enqueued_at(stamps)

    def _item(self, job: Job | None) -> tuple[int, int, Job | None]:
        if job is None:
            rank = _LAST
        else:
            rank = PRIORITIES.get(job.kind, _LAST - 1) if self.priority else 0
        return (rank, next(self._sequence), job)

    # -- running them ----------------------------------------------------------

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            try:
                if job is None:  # the sentinel: every job queued before it was taken
                    return
                if self._abort.is_set():
                    self._drop(job)
                else:
                    self._run(job)
            finally:
                self._queue.task_done()

    def _run(self, job: Job) -> None:
        for attempt in itertools.count(1):
            will_retry = attempt <= self.retries
            try:
                run_job(job, self.store, self.settings, will_retry=will_retry)
                return
            except Exception:  # noqa: BLE001 - recorded in the store by run_job
                if not will_retry:
                    return
            if self._abort.wait(self.backoff.delay(attempt)):
                self._drop(job)
                return

    def _drop(self, job: Job) -> None:
        self.store.set_status(job.id, "failed", DROPPED)
        with self._lock:
            self._dropped += 1

    # -- stopping --------------------------------------------------------------

    def close(self, timeout: float = 10.0, drain: bool = True) -> Closed:
        """Stop taking jobs; finish the queued ones (``drain``) or drop them; stop the workers.

        Waits at most ``timeout`` seconds. Jobs still queued then are dropped and
        marked failed; ``Closed.unfinished`` counts them and any job still running.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._accepting = False
        dropped_before = self._dropped
        if not drain:
            self._drop_queued()
        self.start()  # a pool that never started still drains its queue
        for _ in self._threads:
            self._queue.put(self._item(None))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = [thread for thread in self._threads if thread.is_alive()]
        if running:
            self._abort.set()
            self._drop_queued()
        dropped = self._dropped - dropped_before
        return Closed(unfinished=dropped + len(running))

    def _drop_queued(self) -> None:
        """Take every job out of the queue and mark it failed; keep the sentinels."""
        sentinels = 0
        while True:
            try:
                _, _, job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                sentinels += 1
            else:
                self._drop(job)
            self._queue.task_done()
        for _ in range(sentinels):
            self._queue.put(self._item(None))


def _whole(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"the thread-queue mode needs {name} to be a whole number >= {least}, "
                         f"got {value!r}")
    return value
