"""Lesson 07's exercise on health: flag a worker group that stopped consuming, from its metrics.

Graded on real parts: the ``dramatiq`` mode with metrics on (a real ``dramatiq``
worker group and its Prometheus page), a real SMTP server, a real Redis. The
email group is made idle, busy, failing, stuck (its threads wait on a slow
provider) and frozen (``SIGSTOP``); for each, the learner's
``consumer_stalled(earlier, later, backlog)`` gets two scrapes of the group's
page and the number of emails unfinished in Redis (``metrics.backlog``), and
must answer like the reference. A few cases with made-up numbers first (fast, and the edge cases).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, describe, function

PROCESSED = "dramatiq_messages_total"
ERRORS = "dramatiq_message_errors_total"
IN_PROGRESS = "dramatiq_messages_inprogress"
DEADLINE = 20.0  # seconds any live wait may take before the grader says what it waited for
WINDOW = 0.6  # seconds between the two scrapes of a live case
SLOW = 1.5  # seconds the slow provider takes to answer: longer than WINDOW

#: (earlier, later, backlog, expected, what the case is)
MADE_UP: list[tuple[dict[str, float], dict[str, float], int, bool, str]] = [
    ({PROCESSED: 40.0}, {PROCESSED: 40.0}, 0, False,
     "an idle worker with an empty queue finished nothing, and nothing waits: healthy"),
    ({PROCESSED: 40.0}, {PROCESSED: 52.0}, 30, False,
     "a busy worker finished 12 attempts while 30 wait: it is draining the backlog"),
    ({PROCESSED: 40.0, IN_PROGRESS: 0.0}, {PROCESSED: 40.0, IN_PROGRESS: 0.0}, 6, True,
     "nothing finished and nothing is in progress while 6 messages wait: stalled"),
    ({PROCESSED: 40.0, IN_PROGRESS: 2.0}, {PROCESSED: 40.0, IN_PROGRESS: 2.0}, 6, True,
     "nothing finished while 6 wait, its 2 threads stuck on the same jobs: stalled"),
    ({PROCESSED: 40.0, ERRORS: 10.0}, {PROCESSED: 50.0, ERRORS: 20.0}, 8, False,
     "every attempt failed but 10 finished: it is consuming (failures are another alert)"),
    ({}, {}, 5, True,
     "a fresh group that has never finished anything (no samples yet) while 5 wait: stalled"),
    ({}, {}, 0, False, "a fresh group with nothing to do: healthy"),
    ({PROCESSED: 50.0}, {PROCESSED: 3.0}, 10, False,
     "the counter went from 50 to 3: the group restarted (its files were wiped) and has "
     "finished 3 since, so it consumes"),
]


def test_worker_health(ns: dict[str, Any]) -> None:
    stalled = function(ns, "consumer_stalled")
    for earlier, later, backlog, expected, why in MADE_UP:
        _expect(stalled, earlier, later, backlog, expected, why)
    _live(stalled)


def _expect(stalled: Callable[..., Any], earlier: dict, later: dict, backlog: int,
            expected: bool, why: str) -> None:
    got = call(stalled, dict(earlier), dict(later), backlog)
    if not isinstance(got, bool) and got not in (0, 1):
        raise AssertionError(f"consumer_stalled returned {describe(got)}, expected True or False")
    if bool(got) != expected:
        raise AssertionError(f"consumer_stalled({_short(earlier)}, {_short(later)}, {backlog}) "
                             f"returned {bool(got)}, expected {expected}: {why}")


def _short(sample: dict[str, float]) -> str:
    names = {PROCESSED: "total", ERRORS: "errors", IN_PROGRESS: "in_progress"}
    return "{" + ", ".join(f"{names.get(k, k)}={v:g}" for k, v in sample.items()) + "}"


def _live(stalled: Callable[..., Any]) -> None:
    from shared.app import create_app, state
    from shared.production import metrics
    from shared.redis_server import redis_url
    from shared.retries.flaky_smtp import FlakySmtp

    with FlakySmtp(delay=0.05) as smtp:
        app = create_app("dramatiq", redis_url=redis_url(), smtp_host=smtp.host,
                         smtp_port=smtp.port, workers=1, metrics=1, max_retries=0,
                         heartbeat_timeout=1000)
        mode = metrics.dramatiq_mode(app)
        try:
            mode.wait_ready(DEADLINE)
            group = mode.groups[0]
            url = mode.metrics_urls["email"]
            metrics.wait_metrics(url, DEADLINE)

            def window(send: int, prefix: str) -> tuple[dict, dict, int]:
                earlier = metrics.scrape(url, queue="email")
                metrics.send_emails(app, [f"{prefix}{i}@example.com" for i in range(send)])
                time.sleep(WINDOW)
                return earlier, metrics.scrape(url, queue="email"), metrics.backlog(app, "email")

            def case(send: int, prefix: str, expected: bool, why: str) -> None:
                earlier, later, backlog = window(send, prefix)
                _expect(stalled, earlier, later, backlog, expected, f"on a real worker group, {why}")

            def drained(what: str) -> None:
                if not mode.wait(DEADLINE):
                    raise AssertionError(f"the grader waited {DEADLINE:g} s for {what}")

            case(0, "idle", False, "idle with an empty queue")
            smtp.delay = 0.1  # at most 20 emails a second on 2 threads: a backlog stays
            case(24, "busy", False, "busy with a backlog it is draining")
            drained("the busy emails to be sent")
            smtp.refuse_share = 1.0  # every attempt fails with 451 (max_retries=0: dead letters)
            case(60, "failing", False, "every email failing (451) while it keeps consuming")
            drained("the failing emails to die")
            smtp.refuse_share, smtp.delay = 0.0, SLOW  # a slow provider: both threads stuck
            metrics.send_emails(app, ["slow0@example.com", "slow1@example.com"])
            _wait(lambda: metrics.scrape(url, queue="email").get(IN_PROGRESS, 0) >= 2,
                  "both email threads to be busy on the slow provider")
            case(6, "stuck", True, f"its 2 threads stuck on a provider that takes {SLOW:g} s "
                 "to answer, 0 attempts finished, emails waiting")
            smtp.delay = 0.05
            drained("the stuck emails to be sent")
            [worker] = group.worker_processes()
            worker.suspend()  # SIGSTOP: the process is alive, its metrics page answers
            try:
                case(6, "frozen", True, "its worker process frozen with SIGSTOP (alive, its "
                     "metrics page answering, 0 in progress), emails waiting")
            finally:
                worker.resume()
        finally:
            state(app).close(timeout=5.0)


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"the grader waited {DEADLINE:g} s for {what}")
        time.sleep(0.02)


EXERCISES = [Exercise("worker_health", 3, test_worker_health, timeout=40)]
