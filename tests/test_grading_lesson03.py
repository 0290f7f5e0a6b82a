"""Lesson 03's exercises: plausible wrong answers, the non-atomic ones first, fail with the reason.

The lesson teaches that a job moved in two commands is lost by a worker
killed between them; the graders must refuse exactly that, every time.
"""

from __future__ import annotations

import re

import pytest

from shared.grading import course_cells, registry, runner

MODULE = "shared.grading.lesson03"
NOTEBOOK = "03_redis_queue.ipynb"


def grade(name: str, source: str):
    return runner.grade(source, MODULE, registry.exercise_in(MODULE, name), name)


def answer_with(name: str, old: str, new: str) -> str:
    source = course_cells.answers(NOTEBOOK)[name]
    assert old in source, "the reference solution changed: update this case"
    return source.replace(old, new)


def assert_refused(name: str, source: str, reason: str) -> None:
    result = grade(name, source)
    assert not result.passed, f"{name} accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason


BLMOVE = '    raw = queue.redis.blmove(queue.queue, mine, timeout, "RIGHT", "LEFT")\n'
LREM = "    queue.redis.lrem(mine, 1, raw)\n"
HANDLE = "    handle(raw)  # a crash here leaves the job in `mine`, for the reaper\n"


@pytest.mark.parametrize("old, new, reason", [
    # The bug lesson 03 teaches: between BRPOP and LPUSH the job is nowhere.
    (BLMOVE, "    raw = queue.redis.brpop(queue.queue, timeout)\n"
             "    raw = raw and raw[1]\n"
             "    raw and queue.redis.lpush(mine, raw)\n",
     r"^right after BRPOP, before handle ran, a job was in neither the queue nor w1's processing "
     r"list: a worker killed there loses it\. Move it with one atomic command, BLMOVE"),
    # Acknowledged before the work is done: a crash in handle() loses the job.
    (HANDLE + LREM, LREM + HANDLE,
     r"^right after LREM, before handle ran, .*LREM it only after handle returns"),
], ids=["brpop-then-lpush", "ack-before-handle"])
def test_take_and_run_refuses_a_job_that_can_be_lost(old, new, reason):
    assert_refused("take_and_run", answer_with("take_and_run", old, new), reason)


def test_reaper_refuses_rpop_then_rpush():
    source = answer_with(
        "reaper",
        '        while queue.redis.lmove(queue.processing(name), queue.queue, "RIGHT", "RIGHT")'
        ' is not None:\n',
        "        while (raw := queue.redis.rpop(queue.processing(name))) is not None:\n"
        "            queue.redis.rpush(queue.queue, raw)\n")
    assert_refused("reaper", source,
                   r"^right after RPOP, the dead worker's job was in neither its processing list nor "
                   r"the queue: a reaper that dies there loses it\. .*LMOVE")


CLAIM = '    if not r.set(f"welcome-sent:{job.id}", "1", nx=True, ex=ONCE_SECONDS):\n        return False\n'


@pytest.mark.parametrize("new, reason", [
    # Claimed, then given an expiry: a crash in between keeps the claim forever.
    ('    if not r.setnx(f"welcome-sent:{job.id}", "1"):\n        return False\n'
     '    r.expire(f"welcome-sent:{job.id}", ONCE_SECONDS)\n',
     r"^right after SETNX, the key 'welcome-sent:[^']+' existed with no expiry.*SET key value NX EX"),
    # Checked, then claimed: two attempts at once both see no claim.
    ('    if r.exists(f"welcome-sent:{job.id}"):\n        return False\n'
     '    r.set(f"welcome-sent:{job.id}", "1", ex=ONCE_SECONDS)\n',
     r"run right after the first one's EXISTS, made it 2 emails, expected 1: check and claim in "
     r"one atomic command \(SET key value NX EX"),
    ('    if not r.set(f"welcome-sent:{job.id}", "1", nx=True):\n        return False\n',
     r"has TTL -1: give it an expiry \(EX\)"),
    ('    if not r.set(f"welcome-sent:{job.email}", "1", nx=True, ex=ONCE_SECONDS):\n        return False\n',
     r"expected one Redis key holding the job id"),
], ids=["setnx-then-expire", "exists-then-set", "no-expiry", "keyed-on-address"])
def test_idempotent_email_refuses_a_claim_that_is_not_atomic(new, reason):
    assert_refused("idempotent_email", answer_with("idempotent_email", CLAIM, new), reason)


TYPES = "        if isinstance(data[name], bool) or not isinstance(data[name], types):\n"
EXTRA = '    if extra:\n        raise ValueError(f"unexpected key(s): {\', \'.join(extra)}")\n'


@pytest.mark.parametrize("old, new, reason", [
    (TYPES, "        if not isinstance(data[name], types):\n",
     r"^decode_job\(<true as enqueued_at>\) returned Job\(.*expected a ValueError"),
    (EXTRA, "", r"^decode_job\(<an unexpected key>\) raised TypeError: .*'args', expected a "
                r"ValueError that says what is wrong"),
    ('    except UnicodeDecodeError:\n'
     '        raise ValueError("not JSON: the message is not UTF-8 text") from None\n',
     '    except UnicodeDecodeError:\n        raise ValueError("bad bytes") from None\n',
     r"decode_job\(<a pickled message>\) raised ValueError\('bad bytes'\); say what is wrong: "
     r"the message should mention 'json'"),
], ids=["true-is-a-number", "extra-keys-allowed", "silent-about-json"])
def test_strict_decoder_refuses_a_lenient_decoder(old, new, reason):
    assert_refused("strict_decoder", answer_with("strict_decoder", old, new), reason)


def test_strict_decoder_accepts_any_wording_for_a_non_object():
    """The spec asks for the word JSON only when the bytes are not JSON."""
    source = answer_with("strict_decoder", 'raise ValueError(f"expected a JSON object, got a',
                         'raise ValueError(f"expected a JSON dict, got a')
    result = grade("strict_decoder", source)
    assert (result.passed, result.reason) == (True, "")
