"""Lesson 07's worker_health exercise: the answer passes, plausible wrong answers fail with the reason."""

from __future__ import annotations

import re
from functools import partial

import pytest

from shared.grading import course_cells

NOTEBOOK = "07_production.ipynb"
FINISHED = "    return backlog > 0 and finished == 0\n"

grade = course_cells.grade
answer_with = partial(course_cells.answer_with, NOTEBOOK)


def test_the_answer_passes():
    result = grade("worker_health", course_cells.answers(NOTEBOOK)["worker_health"])
    assert result.passed, result.reason


WRONG_ANSWERS = [
    # The process is alive (the metrics page answered): healthy.
    ("alive-means-healthy", FINISHED, "    return False\n",
     r"returned False, expected True: nothing finished and nothing is in progress while 6"),
    # Only "nothing in progress": an idle worker is flagged, a stuck pool is missed.
    ("in-progress-zero", FINISHED,
     '    return later.get("dramatiq_messages_inprogress", 0.0) == 0\n',
     r"returned True, expected False: an idle worker with an empty queue"),
    # No progress, whatever the backlog: flags an idle-but-healthy worker.
    ("no-progress-without-backlog", FINISHED, "    return finished == 0\n",
     r"returned True, expected False: an idle worker with an empty queue"),
    # A backlog alone: flags a busy, healthy worker draining it.
    ("backlog-alone", FINISHED, "    return backlog > 0\n",
     r"returned True, expected False: a busy worker finished 12 attempts while 30 wait"),
    # Stalled only when idle threads: misses a thread pool stuck on its jobs.
    ("stuck-pool-missed", FINISHED,
     '    return backlog > 0 and finished == 0 and not later.get("dramatiq_messages_inprogress")\n',
     r"returned False, expected True: nothing finished while 6 wait, its 2 threads stuck"),
    # Counting only successes: a worker whose attempts all fail is called stalled.
    ("successes-only", FINISHED,
     '    errors = later.get("dramatiq_message_errors_total", 0.0) - earlier.get('
     '"dramatiq_message_errors_total", 0.0)\n'
     "    return backlog > 0 and finished - errors <= 0\n",
     r"returned True, expected False: every attempt failed but 10 finished"),
    # A counter reset read as "went backwards": a restarted group is called stalled.
    ("reset-as-negative", "    finished = after if after < before else after - before",
     "    finished = max(0.0, after - before)",
     r"returned True, expected False: the counter went from 50 to 3"),
    # Keys read with [] instead of .get: a fresh group's empty scrape raises.
    ("missing-metric-raises", 'earlier.get("dramatiq_messages_total", 0.0)',
     'earlier["dramatiq_messages_total"]', r"KeyError"),
]


@pytest.mark.parametrize("old, new, reason", [w[1:] for w in WRONG_ANSWERS],
                         ids=[w[0] for w in WRONG_ANSWERS])
def test_wrong_answers_fail_with_the_reason(old, new, reason):
    result = grade("worker_health", answer_with("worker_health", old, new))
    assert not result.passed, "worker_health accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason
    assert "\n" not in result.reason.strip(), result.reason


def test_live_cases_refuse_answers_that_pass_the_made_up_ones(monkeypatch):
    """The live run alone catches a check that trusts a live process: the made-up cases removed."""
    from shared.grading import lesson07_health

    monkeypatch.setattr(lesson07_health, "MADE_UP", [])
    ns: dict = {}
    exec("def consumer_stalled(earlier, later, backlog):\n    return False\n", ns)
    with pytest.raises(AssertionError, match=r"frozen with SIGSTOP|stuck on a provider"):
        lesson07_health.test_worker_health(ns)
