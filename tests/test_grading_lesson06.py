"""Lesson 06's exercises: plausible wrong answers fail with the reason, before any live run."""

from __future__ import annotations

import re

import pytest

from shared.grading import course_cells, registry, runner

MODULE = "shared.grading.lesson06"
NOTEBOOK = "06_retries.ipynb"


def grade(name: str, source: str):
    return runner.grade(source, MODULE, registry.exercise_in(MODULE, name), name)


def answer_with(name: str, old: str, new: str) -> str:
    source = course_cells.answers(NOTEBOOK)[name]
    assert old in source, "the reference solution changed: update this case"
    return source.replace(old, new)


WRONG_ANSWERS = [
    # backoff_window: the window of case 3 is the union, not "base up to the cap".
    ("backoff_window", "    return min(base, max_backoff / 2), max_backoff\n",
     "    return base, max_backoff\n",
     r"^backoff_window\(\d+, \d+, \d+\) returned \(\d+(\.\d+)?, \d+\), expected \(\d+(\.\d+)?, \d+\) "
     r"\(some draws stay under the cap"),
    ("backoff_window",
     '    if retries < 0:\n        raise ValueError(f"retries counts from 0, got {retries}")\n',
     "", r"^backoff_window\(-1, 50, 800\) returned \(25\.0, 50\.0\), expected ValueError"),
    # retry_transient: one retry too many, and a permanent 5xx retried.
    ("retry_transient", "    if retries >= MAX_RETRIES:\n", "    if retries > MAX_RETRIES:\n",
     r"^should_retry\(3, SMTPRecipientsRefused\(.*\)\) returned True, expected False "
     r"\(at most 3 retries\)"),
    ("retry_transient", "        return 400 <= exc.smtp_code < 500\n", "        return True\n",
     r"^should_retry\(0, SMTPDataError\(554, .*\)\) returned True, expected False "
     r"\(554 to DATA is permanent\)"),
    # idempotent_welcome: the mark the spec asks to expire, and the order of mark and send.
    ("idempotent_welcome", "    client.set(mark, 1, ex=7 * 86_400)\n", "    client.set(mark, 1)\n",
     r"^the mark 'welcome-sent:job-\w+-a' has no expiry \(TTL -1\), so Redis keeps it forever"),
    ("idempotent_welcome",
     '    send_welcome(address, host=host, port=port, message_id=f"<{job_id}@defer.example>")\n'
     "    client.set(mark, 1, ex=7 * 86_400)\n",
     "    client.set(mark, 1, ex=7 * 86_400)\n"
     '    send_welcome(address, host=host, port=port, message_id=f"<{job_id}@defer.example>")\n',
     r"^after a failed first attempt, the retry sent nothing: write the mark only after the send"),
    ("idempotent_welcome", ', message_id=f"<{job_id}@defer.example>")', ")",
     r"its reply was lost; the retry delivered it again \(2 copies\): give the email a Message-ID"),
]


@pytest.mark.parametrize("name, old, new, reason", WRONG_ANSWERS,
                         ids=["union-window", "negative-retries", "one-retry-too-many",
                              "retries-a-554", "mark-never-expires", "mark-before-send",
                              "no-message-id"])
def test_wrong_answers_fail_with_the_reason(name, old, new, reason):
    result = grade(name, answer_with(name, old, new))
    assert not result.passed, f"{name} accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason
