"""Lesson 06's exercises: plausible wrong answers fail with the reason, before any live run."""

from __future__ import annotations

import re
from functools import partial

import pytest

from shared.grading import course_cells

NOTEBOOK = "06_retries.ipynb"


grade = course_cells.grade
answer_with = partial(course_cells.answer_with, NOTEBOOK)


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
    # retry_transient: the narrow rule (ConnectionError and TimeoutError only) misses an
    # unreachable host, an OSError like them.
    ("retry_transient",
     "    return isinstance(exc, OSError)  # network trouble: refused, reset, timed out, unreachable\n",
     "    return isinstance(exc, (ConnectionError, TimeoutError))\n",
     r"^should_retry\(0, OSError\(113, 'No route to host'\)\) returned False, expected True"),
    # idempotent_welcome: the guard's race, its order, its expiry, its key, the Message-ID, and
    # a claim left by an attempt that died mid-send.
    ("idempotent_welcome",
     '    if not client.set(claim, "sending", nx=True, ex=claim_seconds):\n',
     "    if client.exists(claim):\n",
     r"^two attempts of job 'job-\w+-e' ran at once and sent 2 emails, expected 1: both checked "
     r"for a mark before either wrote one"),
    ("idempotent_welcome",
     "    except BaseException:\n"
     "        client.delete(claim)  # not sent, or not sure: the retry must be free to try again\n"
     "        raise\n",
     "    finally:\n        pass\n",
     r"^after a failed first attempt \(451\), the retry (raised|sent nothing).* a claim or mark "
     r"written before the send must not survive a failed send"),
    ("idempotent_welcome", '    client.set(sent, "sent", ex=7 * 86_400)',
     '    client.set(sent, "sent")',
     r"^the mark 'welcome-sent:job-\w+-a' has no expiry \(TTL -1\), so Redis keeps it forever"),
    ("idempotent_welcome", 'client.set(claim, "sending", nx=True, ex=claim_seconds)',
     'client.set(claim, "sending", nx=True)',
     r"^while the email was being sent, the key 'welcome-sending:job-\w+-e' had no expiry \(TTL -1\)"),
    ("idempotent_welcome",
     '    sent, claim = f"welcome-sent:{job_id}", f"welcome-sending:{job_id}"\n',
     '    sent, claim = f"welcome-sent:{address}", f"welcome-sending:{address}"\n',
     r"^a second job for the same address \(ada signed up again\) sent nothing: the guard must "
     r"belong to one job_id"),
    ("idempotent_welcome", ', message_id=f"<{job_id}@defer.example>")', ")",
     r"its reply was lost; the retry delivered it again \(2 copies\): give the email a Message-ID"),
    # The first design of the course's own answer: one key, "sending" then "sent"; a claim found
    # means "done", so a redelivery after a death mid-send is acked and the email never sent.
    ("idempotent_welcome",
     '        raise dramatiq.Retry(f"another attempt holds {claim}", delay=claim_seconds * 1000)\n',
     "        return\n",
     r"^an attempt of job 'job-\w+-g' died while sending \(its claim is still in Redis\), and the "
     r"redelivered attempt returned normally having sent 0 email\(s\): the worker acks the job"),
    # requeue_dead_letter: two commands with a crash between, old retries kept, queued twice.
    ("requeue_dead_letter",
     "    moved = client.eval(move, 4, dead, dead_messages, f\"{namespace}:{queue}\",\n"
     "                        f\"{namespace}:{queue}.msgs\", redis_id, new_id, json.dumps(message))\n",
     "    moved = client.zrem(dead, redis_id)\n"
     "    client.hdel(dead_messages, redis_id)\n"
     "    client.hset(f\"{namespace}:{queue}.msgs\", new_id, json.dumps(message))\n"
     "    client.rpush(f\"{namespace}:{queue}\", new_id)\n",
     r"^after ZREM the letter was neither a dead letter nor on the queue: your process killed "
     r"right then loses it"),
    ("requeue_dead_letter", 'if key not in ("retries", "traceback", "requeue_timestamp", "eta")',
     'if key != "eta"',
     r"^the queued message still says retries=3 and carries the old traceback( and the old requeue_timestamp)?: drop the delivery "
     r"options"),
    ("requeue_dead_letter",
     '    if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then\n        return 0\n    end\n',
     '    redis.call("zrem", KEYS[1], ARGV[1])\n',
     r"^two calls racing to requeue one letter: requeued and requeued, and it waits on the queue 2 "
     r"time\(s\); expected exactly one requeue"),
]


@pytest.mark.parametrize("name, old, new, reason", WRONG_ANSWERS,
                         ids=["union-window", "negative-retries", "one-retry-too-many",
                              "retries-a-554", "network-errors-too-narrow", "exists-then-send-race",
                              "claim-kept-after-failed-send", "mark-never-expires",
                              "claim-never-expires", "key-on-address", "no-message-id",
                              "claim-found-means-done", "two-commands-crash-between",
                              "retries-not-reset", "requeued-twice"])
def test_wrong_answers_fail_with_the_reason(name, old, new, reason):
    result = grade(name, answer_with(name, old, new))
    assert not result.passed, f"{name} accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason


def test_the_exercise_table_is_the_apps_rule():
    """Exercise 2's table, the grader's cases and the app's is_transient say the same thing."""
    from shared.grading.lesson06 import _cases
    from shared.retry_policy import is_transient

    for retries, exc, expected, why in _cases():
        if retries == 0:
            assert is_transient(exc) is expected, why
