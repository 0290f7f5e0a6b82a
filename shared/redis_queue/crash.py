"""Crash a worker at a chosen moment, so a lesson's counts are the same every run.

A real crash comes at a random moment. A lesson needs the same story every
time, so these helpers pick the moment: while the mail provider holds a
message (the job is half done), or right after it accepted one (the work is
done, the acknowledgement is not).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from shared.redis_queue.pool import WorkerProcess
from shared.redis_queue.queue import RedisQueue
from shared.smtp_sink import SmtpSink
from shared.store import Store

POLL_SECONDS = 0.01


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> object:
    """Poll ``predicate`` until it is true; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(POLL_SECONDS)
    return value


def kill_mid_job(worker: WorkerProcess, store: Store, timeout: float = 30.0) -> None:
    """SIGKILL ``worker`` as soon as a job is running (the sink should be holding its email)."""
    wait_for("a job to start running", lambda: store.counts()["running"] > 0, timeout)
    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait(10)


def kill_on_delivery(sink: SmtpSink, worker: WorkerProcess) -> None:
    """SIGKILL ``worker`` the moment the sink accepts its next message.

    The message is delivered; the worker never hears "250 OK", so it never
    acknowledges the job: the crash that makes a job run twice.
    """
    def kill_once(message) -> None:
        sink.on_delivery = None
        os.kill(worker.pid, signal.SIGKILL)

    sink.on_delivery = kill_once


def lost(store: Store, queue: RedisQueue) -> int:
    """Jobs that are not finished, yet are neither waiting nor held by a worker in Redis.

    Meaningful once every live worker is idle: nobody will ever run them.
    """
    counts = store.counts()
    unfinished = counts["queued"] + counts["running"]
    return max(0, unfinished - queue.waiting() - sum(queue.held().values()))
