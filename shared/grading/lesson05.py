"""Exercises of lesson 05, priorities: one predicted on paper, one design chosen for a
requirement profile and checked on real workers."""

from __future__ import annotations

import random
from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, call_text, expect_raises, function

NOTEBOOK_PREFIX = "05_"

# -- predict_first_batch ------------------------------------------------------


def first_batch(sent: list[tuple[str, int]], prefetch: int) -> list[str]:
    """The model: the first ``prefetch`` messages, lowest priority first, ties in send order."""
    held = list(enumerate(sent[:prefetch]))
    return [name for _, (name, _) in sorted(held, key=lambda item: (item[1][1], item[0]))]


HAND_CASES = [
    ([("N1", 10), ("N2", 10), ("N3", 10), ("R", 0)], 2, ["N1", "N2"]),
    ([("N1", 10), ("N2", 10), ("N3", 10), ("R", 0)], 8, ["R", "N1", "N2", "N3"]),
    ([("N1", 10), ("R", 0), ("N2", 10)], 2, ["R", "N1"]),
    ([("A", 5), ("B", 1), ("C", 5), ("D", 1)], 4, ["B", "D", "A", "C"]),
    ([("A", 0)], 1, ["A"]),
    ([], 3, []),
]


def test_predict_first_batch(ns: dict[str, Any]) -> None:
    predict = function(ns, "predict_first_batch")
    cases = HAND_CASES + _random_cases()
    for sent, prefetch, expected in cases:
        copy = list(sent)
        got = call(predict, sent, prefetch)
        if sent != copy:
            raise AssertionError(f"{call_text('predict_first_batch', copy, prefetch)} changed its "
                                 "input: sort a copy, not the caller's list")
        if not isinstance(got, list) or got != expected:
            raise AssertionError(
                f"{call_text('predict_first_batch', sent, prefetch)} returned {got!r}, expected "
                f"{expected!r} (the worker holds only the first {prefetch} message(s) sent, and "
                "runs those lowest priority first, ties in the order sent)")
    for prefetch in (0, -1):
        expect_raises(ValueError, "a worker holds at least one message", predict,
                      [("A", 0)], prefetch)


def _random_cases() -> list[tuple[list[tuple[str, int]], int, list[str]]]:
    rng = random.Random(5)
    cases = []
    for _ in range(200):
        sent = [(f"m{i}", rng.choice([0, 0, 5, 10, 10, -3])) for i in range(rng.randint(1, 12))]
        prefetch = rng.randint(1, 14)
        cases.append((sent, prefetch, first_batch(sent, prefetch)))
    return cases


# -- reset_design: choose a design for a requirement profile --------------------

#: The requirement profile the learner designs for. Each figure is checked on real workers.
THREAD_BUDGET = 3        # worker threads in all groups together, at most
HOLD_BUDGET = 10         # messages one worker group may hold at once (fetched, not finished)
BACKLOG = 30             # newsletter copies queued before the workers start
EMAIL_DELAY = 0.1        # seconds the mail provider takes per email
TARGET = 0.5             # seconds the reset email may wait before a worker starts it
NEWSLETTER_LIMIT = 2.7   # seconds from the first email started to the last copy out
RESET_AFTER = 2          # the reset email is sent once this many copies are out


def test_reset_design(ns: dict[str, Any]) -> None:
    from shared.fmt import fmt_duration
    from shared.priorities import Design, WorkersFailed, run_design
    from shared.smtp_sink import SmtpSink

    make = function(ns, "reset_design")
    design = call(make)
    if not isinstance(design, Design):
        raise AssertionError(f"reset_design() returned {design!r}, expected a Design(...)")
    if design.threads > THREAD_BUDGET:
        raise AssertionError(
            f"thread budget: your design runs {design.threads} worker threads in all "
            f"({'; '.join(g.describe() for g in design.workers)}); the budget is "
            f"{THREAD_BUDGET}. Which group can do with fewer?")
    with SmtpSink(delay=EMAIL_DELAY) as sink:
        try:
            outcome = run_design(design, newsletter=BACKLOG, smtp_host=sink.host,
                                 smtp_port=sink.port, reset_after=RESET_AFTER, timeout=45)
        except WorkersFailed as exc:
            raise AssertionError(f"the run did not finish: {str(exc).splitlines()[0]}") from None
        delivered = len(sink.inbox)
    if outcome.failed or delivered != BACKLOG + 1:
        raise AssertionError(f"{delivered} of {BACKLOG + 1} emails reached the mail provider")
    if outcome.reset_wait > TARGET:
        raise AssertionError(
            f"reset target: the reset email waited {fmt_duration(outcome.reset_wait)} "
            f"({fmt_duration(outcome.reset.in_redis)} of it in Redis, behind newsletter copies); "
            f"the target is {fmt_duration(TARGET)}. A priority reorders only what a worker "
            "holds: can the reset email avoid the newsletter's queue?")
    for number, group in enumerate(design.workers):
        most = outcome.most_held(number)
        if most > HOLD_BUDGET:
            raise AssertionError(
                f"hold budget: worker group {number + 1} ({group.describe()}) held {most} "
                f"messages at once; the budget is {HOLD_BUDGET}, because a worker that dies "
                "takes what it holds out of circulation for at least the heartbeat timeout. "
                "Keep Dramatiq's default prefetch (2 x threads)")
    if outcome.newsletter_seconds > NEWSLETTER_LIMIT:
        bulk = sorted({outcome.design.workers[job.group].describe() for job in outcome.newsletter})
        raise AssertionError(
            f"newsletter deadline: the {BACKLOG} copies took "
            f"{fmt_duration(outcome.newsletter_seconds)} on {'; '.join(bulk)}; the limit is "
            f"{fmt_duration(NEWSLETTER_LIMIT)} (one thread needs at least "
            f"{fmt_duration(BACKLOG * EMAIL_DELAY)}). Give the newsletter more of the budget")


EXERCISES = [
    Exercise("predict_first_batch", 2, test_predict_first_batch),
    Exercise("reset_design", 3, test_reset_design, timeout=60.0),
]
