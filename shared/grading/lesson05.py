"""Exercises of lesson 05, priorities: one predicted on paper, one run on real workers."""

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


# -- reset_design ---------------------------------------------------------------

THREADS = 2
BACKLOG = 80
EMAIL_DELAY = 0.02
TARGET = 0.5


def test_reset_design(ns: dict[str, Any]) -> None:
    from shared.priorities import Design, WorkersFailed, run_design
    from shared.smtp_sink import SmtpSink

    make = function(ns, "reset_design")
    design = call(make)
    if not isinstance(design, Design):
        raise AssertionError(f"reset_design() returned {design!r}, expected a Design(...)")
    if design.threads != THREADS:
        raise AssertionError(f"your design runs {design.threads} worker thread(s) in all; "
                             f"the exercise gives you exactly {THREADS}")
    if any(group.prefetch is not None for group in design.workers):
        raise AssertionError("leave prefetch at Dramatiq's default (prefetch=None): a real "
                             "newsletter of thousands fits in no prefetch")
    with SmtpSink(delay=EMAIL_DELAY) as sink:
        try:
            outcome = run_design(design, newsletter=BACKLOG, smtp_host=sink.host,
                                 smtp_port=sink.port, reset_after=2, timeout=45)
        except WorkersFailed as exc:
            raise AssertionError(f"the run did not finish: {str(exc).splitlines()[0]}") from None
        delivered = len(sink.inbox)
    if outcome.failed or delivered != BACKLOG + 1:
        raise AssertionError(f"{delivered} of {BACKLOG + 1} emails reached the mail provider")
    if outcome.reset_wait > TARGET:
        raise AssertionError(
            f"the reset email waited {outcome.reset_wait:.2f} s behind a {BACKLOG}-copy "
            f"newsletter; the target is {TARGET} s. Can it avoid the newsletter's queue?")


EXERCISES = [
    Exercise("predict_first_batch", 2, test_predict_first_batch),
    Exercise("reset_design", 3, test_reset_design, timeout=60.0),
]
