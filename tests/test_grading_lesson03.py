"""Lesson 03's exercises: plausible wrong answers, the non-atomic ones first, fail with the reason.

The lesson teaches that a job moved in two commands is lost by a worker
killed between them; the graders must refuse exactly that, every time.
"""

from __future__ import annotations

import re
from functools import partial

import pytest

from shared.grading import course_cells

NOTEBOOK = "03_redis_queue.ipynb"


grade = course_cells.grade
answer_with = partial(course_cells.answer_with, NOTEBOOK)


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


REAPER_HEAD = '''# Exercise: reaper
import redis

from shared.redis_queue import RedisQueue


def reap_dead_workers(queue):
    recovered = {}
    for member in queue.redis.smembers(queue.workers):
        name = member.decode()
        beat, mine = queue.heartbeat(name), queue.processing(name)
'''
# The lesson's first reaper: look, then move. Right for a dead worker, wrong for a lapsed one.
CHECK_THEN_MOVE = REAPER_HEAD + '''        if queue.redis.exists(beat):
            continue
        moved = 0
        while queue.redis.lmove(mine, queue.queue, "RIGHT", "RIGHT") is not None:
            moved += 1
        queue.redis.srem(queue.workers, name)
        recovered[name] = moved
    return recovered
'''
# Moves the jobs of every registered worker, alive or not.
NO_CHECK = REAPER_HEAD + '''        moved = 0
        while queue.redis.lmove(mine, queue.queue, "RIGHT", "RIGHT") is not None:
            moved += 1
        if moved:
            recovered[name] = moved
    return recovered
'''
# Each move checks the heartbeat atomically, but the removal from the set does not.
MOVE_SCRIPT = '''"""
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
return redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'RIGHT')
"""'''
SREM_AFTER = REAPER_HEAD + f'''        move = queue.redis.register_script({MOVE_SCRIPT})
        moved = 0
        while move(keys=[beat, mine, queue.queue]) is not None:
            moved += 1
        queue.redis.srem(queue.workers, name)
        recovered[name] = moved
    return recovered
'''
# The heartbeat check is atomic with RPOP, but the job then travels in a second command.
RPOP_SCRIPT = '''"""
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
return redis.call('RPOP', KEYS[2])
"""'''
RPOP_THEN_RPUSH = REAPER_HEAD + f'''        take = queue.redis.register_script({RPOP_SCRIPT})
        moved = 0
        while (raw := take(keys=[beat, mine])) is not None:
            queue.redis.rpush(queue.queue, raw)
            moved += 1
        if moved:
            recovered[name] = moved
        if not queue.redis.exists(beat):
            queue.redis.srem(queue.workers, name)
            recovered[name] = moved
    return recovered
'''
# WATCH, then check, then move with no MULTI: the WATCH guards nothing.
WATCH_NO_MULTI = REAPER_HEAD + '''        with queue.redis.pipeline() as pipe:
            pipe.watch(beat)
            if pipe.exists(beat):
                continue
            moved = 0
            while pipe.lmove(mine, queue.queue, "RIGHT", "RIGHT") is not None:
                moved += 1
            pipe.srem(queue.workers, name)
        recovered[name] = moved
    return recovered
'''
# The lesson's own script, run as is: not an answer.
LESSONS_SCRIPT = REAPER_HEAD + '''        from shared.redis_queue.reaper import REQUEUE_ONE
        step, moved = 1, 0
        while (step := queue.redis.eval(REQUEUE_ONE, 4, beat, mine, queue.queue, queue.workers,
                                        name)) == 1:
            moved += 1
        if step == 0 or moved:
            recovered[name] = moved
    return recovered
'''
# The lesson's reap(), called: not an answer either.
LESSONS_REAP = '''# Exercise: reaper
from shared.redis_queue import RedisQueue, reap


def reap_dead_workers(queue):
    return {r.worker: r.jobs for r in reap(queue)}
'''
# A Lua script of the learner's own: check, move one job, or remove the worker, in one step.
OWN_SCRIPT = REAPER_HEAD + '''        step = queue.redis.register_script("""
            if redis.call('EXISTS', KEYS[1]) == 0 then
                if redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'RIGHT') then return 'moved' end
                redis.call('SREM', KEYS[4], ARGV[1])
                return 'gone'
            end
            return 'alive'
        """)
        moved = 0
        while (said := step(keys=[beat, mine, queue.queue, queue.workers], args=[name])) == b"moved":
            moved += 1
        if said == b"gone" or moved:
            recovered[name] = moved
    return recovered
'''


@pytest.mark.parametrize("source, reason", [
    (CHECK_THEN_MOVE,
     r"^w-lapsed's heartbeat came back right after your EXISTS, yet your reaper then moved 2 of "
     r"its job\(s\): it is alive and running that job, so it will run twice\. Check and move in "
     r"one atomic step: a Lua script \(EXISTS, then LMOVE\), or WATCH the heartbeat, check it, "
     r"MULTI LMOVE EXEC$"),
    (NO_CHECK, r"^reap_dead_workers moved the job of w-live, whose heartbeat is alive"),
    (SREM_AFTER,
     r"^w-lapsed's heartbeat came back right after your EVALSHA, yet your reaper then removed it "
     r"from queue\.workers: nobody will reap it if it dies later"),
    (RPOP_THEN_RPUSH,
     r"^right after EVALSHA, the dead worker's job was in neither its processing list nor the "
     r"queue: a reaper that dies there loses it\. .*LMOVE"),
    (WATCH_NO_MULTI,
     r"^w-lapsed's heartbeat came back right after your EXISTS, yet your reaper then moved 2 of "),
], ids=["check-then-move", "moves-live-workers-jobs", "srem-after-revival", "rpop-then-rpush",
        "watch-without-multi"])
def test_reaper_refuses_a_move_that_is_not_atomic_with_its_check(source, reason):
    assert_refused("reaper", source, reason)


@pytest.mark.parametrize("source", [LESSONS_SCRIPT, LESSONS_REAP], ids=["requeue-one", "reap"])
def test_reaper_refuses_the_lessons_own_reaper(source):
    assert_refused("reaper", source, r"^your reaper runs the lesson's own script \(REQUEUE_ONE")


def test_reaper_accepts_a_lua_script_of_ones_own():
    result = grade("reaper", OWN_SCRIPT)
    assert (result.passed, result.reason) == (True, "")


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


RELEASE = ('    except Exception:\n'
           '        r.delete(f"welcome-sent:{job.id}")  # not sent, and we know it: a retry may send\n'
           '        raise\n')


@pytest.mark.parametrize("new, reason", [
    # The lesson's version: the claim stays, and the retry skips an email that never went out.
    ('    except Exception:\n        raise\n',
     r"^after a send that raised, the claim 'welcome-sent:[^']+' was still in Redis: every retry "
     r"will skip an email that never went out"),
    # Gives the claim back but swallows the error: the job looks done.
    ('    except Exception:\n        r.delete(f"welcome-sent:{job.id}")\n        return False\n',
     r"with a provider that refuses the connection, returned False: let the error propagate"),
], ids=["claim-kept", "error-swallowed"])
def test_idempotent_email_refuses_a_failed_send_that_keeps_its_claim_or_hides_it(new, reason):
    assert_refused("idempotent_email", answer_with("idempotent_email", RELEASE, new), reason)


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
