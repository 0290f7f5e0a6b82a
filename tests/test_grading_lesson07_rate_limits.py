"""Lesson 07's rate-limit exercise: the answer passes, plausible wrong answers fail with the reason.

Every case runs the grader for real: a Redis broker, a worker, an SMTP server with a rate limit.
"""

from __future__ import annotations

import re

import pytest

from shared.grading import course_cells

NOTEBOOK = "07_production.ipynb"
NAME = "rate_limited_email"

grade = course_cells.grade

WAIT = ("        with slots.acquire(raise_on_failure=False) as acquired:\n"
        "            if not acquired:\n"
        "                raise WaitForLimit(delay=random.randint(50, 150))\n")
ACTOR = "    @lab.actor(retry_when=retry_when, min_backoff=50, max_backoff=1000)\n"
SEND = ("            try:\n"
        "                send_welcome(address, host=smtp.host, port=smtp.port)\n"
        "            finally:  # a refused send too: keep the slot\n"
        "                time.sleep(1.0)  # one second after the provider answered this send\n")
LIMITER = ('    slots = ConcurrentRateLimiter(RedisBackend(url=lab.url), f"{lab.namespace}:limit:mail",\n'
           "                                  limit=limit)\n")

WRONG_ANSWERS = [
    # The limiter's default: RateLimitExceeded, which retry_when does not retry.
    ("raises-rate-limit-exceeded", [(WAIT, "        with slots.acquire() as acquired:\n")],
     r"^\d+ of 24 emails to real mailboxes became dead letters \(the last error of "
     r"user\d+@example\.com: RateLimitExceeded\): a wait for the limit must not spend retries"),
    # A WindowRateLimiter that raises, with a plain retry budget: waits spend retries.
    ("window-raises-spends-retries",
     [(LIMITER, '    slots = WindowRateLimiter(RedisBackend(url=lab.url), '
                'f"{lab.namespace}:limit:mail",\n'
                "                              limit=limit, window=1)\n"),
      ("from dramatiq.rate_limits import ConcurrentRateLimiter\n",
       "from dramatiq.rate_limits import ConcurrentRateLimiter, WindowRateLimiter\n"),
      (WAIT, "        with slots.acquire():\n"),
      (SEND, "            send_welcome(address, host=smtp.host, port=smtp.port)\n"),
      (ACTOR, "    @lab.actor(max_retries=3, min_backoff=50, max_backoff=1000)\n")],
     # Whether some of its sends also cross a clock second's turn (421), or its refused sends
     # crowd one second, depends on when it starts.
     r"became dead letters .*RateLimitExceeded.*must not spend retries|^the provider answered 421"
     r"|^\d+ sends reached the provider within one second"),
    # The usual advice: raise_on_failure=False + Retry(delay=...), with a small max_retries.
    ("retry-delay-small-max-retries",
     [("raise WaitForLimit(delay=", "raise dramatiq.Retry(delay="),
      (ACTOR, "    @lab.actor(max_retries=3, min_backoff=50, max_backoff=1000)\n")],
     r"became dead letters \(the last error of user\d+@example\.com: Retry\)"),
    # The same with a big budget: no dead letter in this burst, but every wait spent a retry.
    ("retry-delay-big-max-retries",
     [("raise WaitForLimit(delay=", "raise dramatiq.Retry(delay="),
      (ACTOR, "    @lab.actor(max_retries=100, min_backoff=50, max_backoff=1000)\n")],
     r"^the email to user\d+@example\.com spent \d+ of Dramatiq's retries but failed for real "
     r"only 1 time\(s\)"),
    # The middleware forgotten: retry_when lets waits through, but Dramatiq still counts them.
    ("waits-still-counted",
     [("    lab.broker.add_middleware(DontCountWaits(), after=Retries)\n", "")],
     r"spent \d+ of Dramatiq's retries but failed for real only 1 time|became dead letters"),
    # No limiter at all: the provider says 421.
    ("no-limiter",
     [(WAIT, "        if True:\n")],
     r"^the provider answered 421 \(slow down\) \d+ time\(s\): more than 10 sends"
     r"|^\d+ sends reached the provider within one second"),
    # A limit above the provider's.
    ("limit-above-providers", [("limit=limit)", "limit=2 * limit)")],
     r"^the provider answered 421|^\d+ sends reached the provider within one second"),
    # Slots released as soon as the send returns: a concurrency limit is not a rate limit.
    ("slot-not-held", [(SEND, "            send_welcome(address, host=smtp.host, port=smtp.port)\n")],
     r"^the provider answered 421"),
    # The slot held after a send that succeeds only: each 451 frees its slot at once, and the
    # next send goes straight out (the provider counts accepted sends only, so it never says 421).
    ("slot-freed-on-error",
     [(SEND, "            send_welcome(address, host=smtp.host, port=smtp.port)\n"
             "            time.sleep(1.0)\n")],
     r"^\d+ sends reached the provider within one second, refused ones \(451, 550\) included"),
    # A retry_when that retries everything, the permanent 550 included.
    ("retries-a-550", [("        return 400 <= code < 500 and retries < 3\n",
                        "        return retries < 3\n")],
     r"^the address that does not exist was tried 4 time\(s\), expected 1: a 550 is permanent"),
]


def wrong(edits: list[tuple[str, str]]) -> str:
    source = course_cells.answers(NOTEBOOK)[NAME]
    for old, new in edits:
        assert old in source, f"the reference solution of {NAME} changed: update this case"
        source = source.replace(old, new)
    return source


def test_the_answer_passes():
    result = grade(NAME, course_cells.answers(NOTEBOOK)[NAME])
    assert result.passed, result.reason


@pytest.mark.parametrize("edits, reason", [case[1:] for case in WRONG_ANSWERS],
                         ids=[case[0] for case in WRONG_ANSWERS])
def test_wrong_answers_fail_with_the_reason(edits, reason):
    result = grade(NAME, wrong(edits))
    assert not result.passed, f"{NAME} accepted a wrong answer"
    assert re.search(reason, result.reason), result.reason


def test_the_stub_fails_saying_it_is_not_done():
    stub = course_cells.stubs(NOTEBOOK)[NAME]
    result = grade(NAME, stub)
    assert not result.passed


def test_the_answer_caps_the_free_waits():
    """A job that can never get a slot (every slot leaked by killed workers) ends as a dead
    letter after the free waits and three counted ones, instead of waiting forever."""
    from dramatiq.rate_limits import ConcurrentRateLimiter
    from dramatiq.rate_limits.backends import RedisBackend

    from shared.retries.flaky_smtp import FlakySmtp
    from shared.retries.lab import RetryLab

    source = course_cells.answers(NOTEBOOK)[NAME]
    assert "max_free_waits = 100" in source, "the reference solution changed: update this test"
    namespace: dict = {}
    exec(compile(source.replace("max_free_waits = 100", "max_free_waits = 5"), NAME, "exec"),
         namespace)
    with FlakySmtp(rate_limit=2) as smtp, RetryLab(worker_threads=1) as lab:
        backend = RedisBackend(url=lab.url)
        try:
            leaked = ConcurrentRateLimiter(backend, f"{lab.namespace}:limit:mail", limit=2)
            assert leaked._acquire() and leaked._acquire()  # both slots, never released
            actor = namespace["declare_email_actor"](lab, smtp, 2)
            lab.start()
            actor.send("ada@example.com")
            lab.wait(timeout=15, what="the job to give up waiting")
        finally:
            backend.client.close()
        attempts = lab.attempts()
        assert len(lab.dead_letters()) == 1
    assert smtp.answers == []
    assert len(attempts) == 5 + 3 + 1, [a.error for a in attempts]
