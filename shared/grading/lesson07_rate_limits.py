"""Lesson 07's exercise on rate limits, graded on real parts.

The learner's ``declare_email_actor(lab, smtp, limit)`` declares an email actor on a
real :class:`~shared.retries.lab.RetryLab` (Redis broker, in-process worker with
2 x limit threads). A burst goes to a real SMTP server that takes ``limit`` emails in
any one second, answers 421 above it, 451 to each address's first try, and 550 to
one address that does not exist.
"""

from __future__ import annotations

from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, function

LIMIT = 10  # the provider's emails per second
BURST = 25  # sign-ups at once, the missing address included
MISSING = "nobody@example.com"
LIVE_DEADLINE = 20.0  # seconds for the burst to be delivered or given up


def test_rate_limited_email(ns: dict[str, Any]) -> None:
    from dramatiq import Actor

    from shared.retries.flaky_smtp import FlakySmtp
    from shared.retries.lab import LabTimeout, RetryLab

    declare = function(ns, "declare_email_actor")
    addresses = [f"user{i}@example.com" for i in range(BURST - 1)] + [MISSING]
    with FlakySmtp(rate_limit=LIMIT, fail_first=1, bounce={MISSING}) as smtp, \
            RetryLab(worker_threads=2 * LIMIT) as lab:
        actor = call(declare, lab, smtp, LIMIT)
        if not isinstance(actor, Actor) or actor.broker is not lab.broker:
            raise AssertionError(
                f"declare_email_actor returned {actor!r}: return the actor you declared with "
                "@lab.actor(...)")
        lab.start()
        for address in addresses:
            actor.send(address)
        try:
            lab.wait(timeout=LIVE_DEADLINE, what=f"{BURST} emails to be sent or given up")
            late = ""
        except LabTimeout:
            late = (f"after {LIVE_DEADLINE:g} s, {lab.unfinished()} of {BURST} emails were "
                    f"neither sent nor given up ({len(smtp.inbox)} delivered): a wait or a retry "
                    "took Dramatiq's default backoff (15 s and up)? give waits a delay and set "
                    "min_backoff")
        _check(lab, smtp, addresses, late)


def _check(lab, smtp, addresses: list[str], late: str) -> None:
    answers = smtp.answers
    attempts = lab.attempts()
    dead = {str(letter.message.args[0]).lower() for letter in lab.dead_letters()
            if letter.message.args}
    refused = [a for a in answers if a.code == 421]
    if refused:
        raise AssertionError(
            f"the provider answered 421 (slow down) {len(refused)} time(s): more than {LIMIT} "
            "sends reached it within one second; no limiter, a limit above the provider's, or "
            "one that counts clock seconds (WindowRateLimiter) lets bursts through")
    # every send the provider answered, refusals included, at the moment it decided (RCPT TO)
    sends = [a.at for a in answers if a.code not in (250, 0)] + smtp.counted
    busiest = _busiest_second(sends)
    if busiest > LIMIT:
        raise AssertionError(
            f"{busiest} sends reached the provider within one second, refused ones (451, 550) "
            f"included, over its limit of {LIMIT}: a provider may count those too. Keep the "
            "slot one second after every send, a failed one too (try: ... finally: "
            "time.sleep(...)); a send that raises must not free its slot at once")
    limit_dead = sorted(dead - {MISSING})
    if limit_dead:
        errors = sorted({(a.error or "").split(":")[0] for a in attempts
                         if a.outcome == "dead" and a.args[:1] == (limit_dead[0],)})
        raise AssertionError(
            f"{len(limit_dead)} of {BURST - 1} emails to real mailboxes became dead letters "
            f"(the last error of {limit_dead[0]}: {', '.join(errors) or 'unknown'}): a wait for "
            "the limit must not spend retries; RateLimitExceeded and Retry both do")
    for address in addresses[:-1]:
        real_failures = sum(1 for a in answers if a.recipient == address and a.code != 250)
        mine = [a for a in attempts if a.args[:1] == (address,)]
        spent = max((a.number - 1 for a in mine), default=0)
        if spent > real_failures:
            raise AssertionError(
                f"the email to {address} spent {spent} of Dramatiq's retries but failed for "
                f"real only {real_failures} time(s): the other {spent - real_failures} were "
                "waits for your limit, and a bigger burst would use up any max_retries")
    missing_tries = sum(1 for a in answers if a.recipient == MISSING)
    if missing_tries != 1:
        raise AssertionError(
            f"the address that does not exist was tried {missing_tries} time(s), expected 1: "
            "a 550 is permanent, retrying it only repeats the refusal")
    if late:
        raise AssertionError(late)
    if MISSING not in dead:
        raise AssertionError(
            f"the email to {MISSING} (550: no such mailbox) is not in the dead letters: let "
            "the error out, so Dramatiq gives up on it and you can see it")
    counts = {address: smtp.received(address) for address in addresses[:-1]}
    wrong = {address: n for address, n in counts.items() if n != 1}
    if wrong:
        address, n = next(iter(wrong.items()))
        raise AssertionError(
            f"{len(wrong)} address(es) did not get exactly one email ({address} got {n}): after "
            "its first answer (451, try again later) each must be retried and sent once")


def _busiest_second(times: list[float]) -> int:
    """The most of ``times`` (seconds) within any one-second span."""
    ordered, most, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


EXERCISES = [
    Exercise("rate_limited_email", 4, test_rate_limited_email, timeout=40,
             waits_for=f"a real worker to send a burst of {BURST} emails at {LIMIT} a second"),
]
