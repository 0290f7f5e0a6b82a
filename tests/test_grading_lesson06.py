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
    # idempotent_welcome: the guard's race, its order, its expiry, its key, the Message-ID.
    ("idempotent_welcome",
     '    if not client.set(guard, "sending", nx=True, ex=60):\n',
     "    if client.exists(guard):\n",
     r"^two attempts of job 'job-\w+-e' ran at once and sent 2 emails, expected 1: both checked "
     r"for a mark before either wrote one"),
    ("idempotent_welcome",
     "    try:\n"
     '        send_welcome(address, host=host, port=port, message_id=f"<{job_id}@defer.example>")\n'
     "    except BaseException:\n"
     "        client.delete(guard)  # not sent, or not sure: the retry must be free to try again\n"
     "        raise\n",
     '    send_welcome(address, host=host, port=port, message_id=f"<{job_id}@defer.example>")\n',
     r"^after a failed first attempt \(451\), the retry sent nothing, so the user never gets the "
     r"email"),
    ("idempotent_welcome", '    client.set(guard, "sent", ex=7 * 86_400)\n',
     '    client.set(guard, "sent")\n',
     r"^the mark 'welcome:job-\w+-a' has no expiry \(TTL -1\), so Redis keeps it forever"),
    ("idempotent_welcome", 'client.set(guard, "sending", nx=True, ex=60)',
     'client.set(guard, "sending", nx=True)',
     r"^while the email was being sent, the key 'welcome:job-\w+-e' had no expiry \(TTL -1\)"),
    ("idempotent_welcome", '    guard = f"welcome:{job_id}"\n', '    guard = f"welcome:{address}"\n',
     r"^a second job for the same address \(ada signed up again\) sent nothing: the guard must "
     r"belong to one job_id"),
    ("idempotent_welcome", ', message_id=f"<{job_id}@defer.example>")', ")",
     r"its reply was lost; the retry delivered it again \(2 copies\): give the email a Message-ID"),
    # requeue_dead_letter: two commands with a crash between, old retries kept, queued twice.
    ("requeue_dead_letter",
     "    moved = client.eval(move, 4, dead, dead_messages, f\"{namespace}:{queue}\",\n"
     "                        f\"{namespace}:{queue}.msgs\", redis_id, new_id, json.dumps(message))\n",
     "    moved = client.zrem(dead, redis_id)\n"
     "    client.hdel(dead_messages, redis_id)\n"
     "    client.hset(f\"{namespace}:{queue}.msgs\", new_id, json.dumps(message))\n"
     "    client.rpush(f\"{namespace}:{queue}\", new_id)\n",
     r"^after ZREM the letter was neither a dead letter nor on the queue: a worker killed right "
     r"then loses it"),
    ("requeue_dead_letter", 'if key not in ("retries", "traceback", "eta")', 'if key != "eta"',
     r"^the queued message still says retries=3 and carries the old traceback: drop the delivery "
     r"options"),
    ("requeue_dead_letter",
     '    if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then\n        return 0\n    end\n',
     '    redis.call("zrem", KEYS[1], ARGV[1])\n',
     r"^two calls racing to requeue one letter: requeued and requeued, and it waits on the queue 2 "
     r"time\(s\); expected exactly one requeue"),
]


@pytest.mark.parametrize("name, old, new, reason", WRONG_ANSWERS,
                         ids=["union-window", "negative-retries", "one-retry-too-many",
                              "retries-a-554", "exists-then-send-race", "mark-before-send",
                              "mark-never-expires", "claim-never-expires", "key-on-address",
                              "no-message-id", "two-commands-crash-between",
                              "retries-not-reset", "requeued-twice"])
def test_wrong_answers_fail_with_the_reason(name, old, new, reason):
    result = grade(name, answer_with(name, old, new))
    assert not result.passed, f"{name} accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason
