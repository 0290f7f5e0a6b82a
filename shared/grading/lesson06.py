"""Exercises of lesson 06: retries, on real Dramatiq workers, Redis and SMTP servers."""

from __future__ import annotations

import math
import smtplib
import socket
import uuid
from collections.abc import Callable
from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, call_text, describe, expect_raises, function

NOTEBOOK_PREFIX = "06_"
LIVE_DEADLINE = 15.0  # seconds any live run may take before the test fails saying so


# -- backoff_window -----------------------------------------------------------

WEEK_MS = 7 * 86_400_000
SETTINGS = [(50, 800), (100, 1000), (15_000, WEEK_MS), (1000, 3000), (10, 10), (100, 150),
            (250, 60_000)]


def reference_window(retries: int, min_backoff: float, max_backoff: float) -> tuple[float, float]:
    base = min_backoff * 2 ** min(retries, 32)
    if 2 * base <= max_backoff:
        return base, 2 * base
    if base > max_backoff:
        return max_backoff / 2, max_backoff
    return min(base, max_backoff / 2), max_backoff


def test_backoff_window(ns: dict[str, Any]) -> None:
    backoff_window = function(ns, "backoff_window")
    for min_backoff, max_backoff in SETTINGS:
        for retries in range(0, 40):
            expected = reference_window(retries, min_backoff, max_backoff)
            got = call(backoff_window, retries, min_backoff, max_backoff)
            if not _pair_close(got, expected):
                raise AssertionError(
                    f"{call_text('backoff_window', retries, min_backoff, max_backoff)} returned "
                    f"{got!r}, expected {_pair(expected)} {_why(retries, min_backoff, max_backoff)}")
    expect_raises(ValueError, "retries counts from 0", backoff_window, -1, 50, 800)
    _live_backoff(backoff_window)


def _why(retries: int, min_backoff: float, max_backoff: float) -> str:
    base = min_backoff * 2 ** min(retries, 32)
    if 2 * base <= max_backoff:
        return f"({min_backoff:g} x 2^{retries} x U(1, 2), under the cap)"
    if base > max_backoff:
        return f"({min_backoff:g} x 2^{retries} is over max_backoff, so max_backoff x U(0.5, 1))"
    return ("(some draws stay under the cap, the others are replaced by max_backoff x U(0.5, 1): "
            "the window is the union of both)")


def _live_backoff(backoff_window: Callable[..., Any]) -> None:
    from shared.retries.flaky_smtp import FlakySmtp
    from shared.retries.lab import RetryLab
    from shared.retries.mail import send_welcome

    min_backoff, max_backoff, refused = 40, 200, 3
    with FlakySmtp(fail_first=refused) as smtp, RetryLab() as lab:
        @lab.actor(max_retries=refused, min_backoff=min_backoff, max_backoff=max_backoff)
        def welcome(address):
            send_welcome(address, host=smtp.host, port=smtp.port)

        lab.start()
        for i in range(3):
            welcome.send(f"user{i}@example.com")
        _wait(lab, "3 emails to get through 3 refusals each")
        for attempt in lab.attempts():
            if attempt.outcome != "retry":
                continue
            k, chosen = attempt.number - 1, round((attempt.delay or 0.0) * 1000)
            low, high = call(backoff_window, k, min_backoff, max_backoff)
            if not low - 1 <= chosen <= high + 1:
                raise AssertionError(
                    f"a real worker waited {chosen} ms after a failure with {k} retries behind it "
                    f"(min_backoff={min_backoff}, max_backoff={max_backoff}), outside your window "
                    f"({low:g}, {high:g})")


def _pair(pair: tuple[float, float]) -> str:
    return f"({pair[0]:g}, {pair[1]:g})"


def _pair_close(got: Any, expected: tuple[float, float]) -> bool:
    try:
        low, high = got
        return all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isclose(v, e, rel_tol=1e-9, abs_tol=1e-9)
                   for v, e in ((low, expected[0]), (high, expected[1])))
    except (TypeError, ValueError):
        return False


# -- retry_transient ----------------------------------------------------------

MAX_RETRIES = 3


def _refused(code: int, address: str = "ada@example.com") -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({address: (code, b"reason")})


def _cases() -> list[tuple[int, BaseException, bool, str]]:
    """(retries, exception, expected, why)."""
    import dramatiq

    transient = [
        (_refused(451), "451 to RCPT is 'try again later'"),
        (_refused(421), "421 is transient"),
        (smtplib.SMTPDataError(451, b"local error"), "451 to DATA is transient"),
        (smtplib.SMTPSenderRefused(452, b"insufficient storage", "app@example.com"), "452 is transient"),
        (smtplib.SMTPConnectError(421, b"too many connections"), "421 at the greeting is transient"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
         "a dropped connection is transient"),
        (ConnectionRefusedError(111, "Connection refused"), "a refused connection is transient"),
        (ConnectionResetError(104, "Connection reset by peer"), "a reset connection is transient"),
        (TimeoutError("timed out"), "a timeout is transient"),
        (OSError(113, "No route to host"), "an unreachable host is network trouble: transient"),
        (socket.gaierror(-3, "Temporary failure in name resolution"),
         "a name that does not resolve is network trouble: transient"),
        (dramatiq.Retry("try again later", delay=100), "the job raised dramatiq.Retry: it asks for a retry"),
    ]
    permanent = [
        (_refused(550), "550 (no such mailbox) is permanent"),
        (_refused(553), "553 is permanent"),
        (smtplib.SMTPDataError(554, b"rejected as spam"), "554 to DATA is permanent"),
        (smtplib.SMTPSenderRefused(550, b"sender rejected", "app@example.com"), "550 is permanent"),
        (smtplib.SMTPConnectError(554, b"no service"), "554 at the greeting is permanent"),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server"),
         "an SMTPException without a code (a missing feature) is permanent"),
        (KeyError("email"), "a KeyError is a bug in the job: retrying repeats it"),
        (TypeError("bad argument"), "a TypeError is a bug in the job: retrying repeats it"),
        (ValueError("bad address"), "a ValueError is a bug in the job: retrying repeats it"),
    ]
    cases: list[tuple[int, BaseException, bool, str]] = []
    for exc, why in transient:
        for retries in range(MAX_RETRIES):
            cases.append((retries, exc, True, why))
        cases.append((MAX_RETRIES, exc, False, f"at most {MAX_RETRIES} retries"))
        cases.append((MAX_RETRIES + 4, exc, False, f"at most {MAX_RETRIES} retries"))
    for error, why in permanent:
        for retries in (0, 1):
            cases.append((retries, error, False, why))
    return cases


def test_retry_transient(ns: dict[str, Any]) -> None:
    should_retry = function(ns, "should_retry")
    for retries, exc, expected, why in _cases():
        got = call(should_retry, retries, exc)
        if not isinstance(got, bool) and got not in (0, 1, None):
            raise AssertionError(f"should_retry({retries}, {describe(exc)}) returned {got!r}, "
                                 "expected True or False")
        if bool(got) != expected:
            raise AssertionError(f"should_retry({retries}, {type(exc).__name__}({_args(exc)})) "
                                 f"returned {got!r}, expected {expected} ({why})")
    _live_retry(should_retry)


def _args(exc: BaseException) -> str:
    text = ", ".join(repr(a) for a in exc.args)
    return text if len(text) <= 80 else text[:79] + "…"


def _live_retry(should_retry: Callable[..., Any]) -> None:
    from shared.retries.flaky_smtp import FlakySmtp
    from shared.retries.lab import RetryLab
    from shared.retries.mail import send_welcome
    from shared.net import closed_port

    with closed_port() as down_port, \
            FlakySmtp(fail_first=2, bounce={"nobody@example.com"}) as smtp, RetryLab() as lab:
        @lab.actor(retry_when=lambda retries, exc: bool(should_retry(retries, exc)), min_backoff=20,
                   max_backoff=100)
        def welcome(address, port):
            send_welcome(address, host=smtp.host, port=port, timeout=2)

        lab.start()
        welcome.send("ada@example.com", smtp.port)
        welcome.send("nobody@example.com", smtp.port)
        welcome.send("down@example.com", down_port)
        _wait(lab, "3 emails to be sent or given up")
        expected = {"ada@example.com": (3, "done", "two 451 answers, then sent"),
                    "nobody@example.com": (1, "dead", "a 550 answer is permanent"),
                    "down@example.com": (1 + MAX_RETRIES, "dead",
                                         f"a provider that is down: {MAX_RETRIES} retries, then give up")}
        for address, (count, outcome, why) in expected.items():
            mine = [a for a in lab.attempts() if a.args[0] == address]
            got = (len(mine), mine[-1].outcome if mine else "never ran")
            if got != (count, outcome):
                raise AssertionError(
                    f"on a real worker with retry_when=should_retry, the email to {address} ran "
                    f"{got[0]} time(s) and ended {got[1]}, expected {count} time(s) and {outcome} ({why})")


# -- idempotent_welcome -------------------------------------------------------

SLOW_PROVIDER = 0.4  # seconds the provider takes to accept a message, while two attempts race


def test_idempotent_welcome(ns: dict[str, Any]) -> None:
    import redis

    from shared.redis_server import redis_url
    from shared.retries.flaky_smtp import FlakySmtp

    send_once = function(ns, "send_welcome_once")
    run = uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(redis_url())
    try:
        with FlakySmtp() as smtp:
            job = f"job-{run}-a"
            for _ in range(3):
                call(send_once, client, job, "ada@example.com", host=smtp.host, port=smtp.port)
            if smtp.received("ada@example.com") != 1:
                raise AssertionError(
                    f"three calls of send_welcome_once(client, {job!r}, 'ada@example.com', ...) one "
                    f"after the other sent {smtp.received('ada@example.com')} emails, expected 1")
            call(send_once, client, f"job-{run}-b", "ada@example.com", host=smtp.host, port=smtp.port)
            if smtp.received("ada@example.com") != 2:
                raise AssertionError(
                    "a second job for the same address (ada signed up again) sent nothing: the "
                    "guard must belong to one job_id, not to the address")
            _check_mark_expires(client, job)
        with FlakySmtp(fail_first=1) as smtp:
            job = f"job-{run}-c"
            _expect_error(send_once, client, job, "alan@example.com", smtp,
                          "when the provider answers 451, send_welcome_once returned normally: "
                          "let the error out, so the worker retries the job")
            try:
                send_once(client, job, "alan@example.com", host=smtp.host, port=smtp.port)
            except NotImplementedError:
                raise
            except Exception as exc:
                raise AssertionError(
                    f"after a failed first attempt (451), the retry raised {describe(exc)} and sent "
                    "nothing: a claim or mark written before the send must not survive a failed "
                    "send (delete it, then let the error out)") from None
            if smtp.received("alan@example.com") != 1:
                raise AssertionError(
                    "after a failed first attempt (451), the retry sent nothing, so the user never "
                    "gets the email: a claim or mark written before the send must not survive a "
                    "failed send")
        with FlakySmtp(lose_replies=1, dedupe=True) as smtp:
            job = f"job-{run}-d"
            _expect_error(send_once, client, job, "edsger@example.com", smtp,
                          "when the provider's reply was lost, send_welcome_once returned normally: "
                          "let the error out, so the worker retries the job")
            call(send_once, client, job, "edsger@example.com", host=smtp.host, port=smtp.port)
            if smtp.received("edsger@example.com") != 1:
                raise AssertionError(
                    "the provider accepted the first email but its reply was lost; the retry "
                    f"delivered it again ({smtp.received('edsger@example.com')} copies): give the "
                    "email a Message-ID made from job_id, the same on every attempt (this provider "
                    "drops a Message-ID it has already accepted)")
        _concurrent_attempts(send_once, client, f"job-{run}-e")
        _claim_left_behind(send_once, client, f"job-{run}-f", f"job-{run}-g")
        _live_idempotent(send_once, client)
    finally:
        keys = list(client.scan_iter(match=f"*{run}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def _expect_error(send_once: Callable[..., Any], client: Any, job: str, address: str, smtp: Any,
                  why: str) -> None:
    try:
        send_once(client, job, address, host=smtp.host, port=smtp.port)
    except NotImplementedError:
        raise
    except Exception:
        return
    raise AssertionError(why)


def _concurrent_attempts(send_once: Callable[..., Any], client: Any, job: str) -> None:
    """Two attempts of one job at once (a redelivery while the first still runs), on a
    provider that takes SLOW_PROVIDER s and does not drop known Message-IDs."""
    import threading
    import time

    from shared.retries.flaky_smtp import FlakySmtp

    address = "barbara@example.com"
    with FlakySmtp(delay=SLOW_PROVIDER) as smtp:
        start = threading.Barrier(3)
        errors: list[BaseException] = []

        def attempt() -> None:
            start.wait()
            try:
                send_once(client, job, address, host=smtp.host, port=smtp.port)
            except BaseException as exc:  # noqa: BLE001 - one of the two may refuse
                errors.append(exc)

        threads = [threading.Thread(target=attempt, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        start.wait()
        time.sleep(SLOW_PROVIDER / 2)  # both attempts are in, the provider has not answered yet
        forever = [key.decode() for key in client.scan_iter(match=f"*{job}*", count=1000)
                   if client.ttl(key) == -1]
        for thread in threads:
            thread.join(LIVE_DEADLINE)
        if forever:
            raise AssertionError(
                f"while the email was being sent, the key {forever[0]!r} had no expiry (TTL -1): "
                "if the worker died right then, it would block this job's email forever; give it "
                "one, client.set(key, ..., ex=...)")
        if any(isinstance(exc, NotImplementedError) for exc in errors):
            raise NotImplementedError("send_welcome_once")
        received = smtp.received(address)
        if received > 1:
            raise AssertionError(
                f"two attempts of job {job!r} ran at once and sent {received} emails, expected 1: "
                "both checked for a mark before either wrote one; claim the job in one atomic "
                "step (SET with nx=True answers True to one caller only)")
        if received == 0:
            first = describe(errors[0]) if errors else "nothing"
            raise AssertionError(f"two attempts of job {job!r} ran at once and neither sent the "
                                 f"email (they raised {first}): one of them must send it")


def _claim_left_behind(send_once: Callable[..., Any], client: Any, job: str, dead_job: str) -> None:
    """An attempt died mid-send (its worker stopped; the message is redelivered well before any
    claim expires): the redelivery finds what that attempt kept in Redis while sending. It must
    not return normally (the worker would ack the job, and the email might never go out)."""
    import threading
    import time

    from shared.retries.flaky_smtp import FlakySmtp

    address = "frances@example.com"
    with FlakySmtp(delay=SLOW_PROVIDER) as smtp:
        def first_attempt() -> None:
            try:
                send_once(client, job, address, host=smtp.host, port=smtp.port)
            except BaseException:  # noqa: BLE001 - the grader looks at Redis, not at this attempt
                pass

        thread = threading.Thread(target=first_attempt, daemon=True)
        thread.start()
        time.sleep(SLOW_PROVIDER / 2)  # the provider has not answered yet: the send is in flight
        in_flight = [(key, client.pttl(key), client.dump(key))
                     for key in client.scan_iter(match=f"*{job}*", count=1000)]
        thread.join(LIVE_DEADLINE)
        if not in_flight:
            raise AssertionError(f"while job {job!r} was sending its email, no Redis key held its id: "
                                 "claim the job under a key made from job_id before you send")
        # What the attempt kept while sending, as if it died right then (nothing cleaned up).
        for key, ttl, dumped in in_flight:
            client.restore(key.decode().replace(job, dead_job), max(ttl, 1000), dumped, replace=True)
        before = smtp.received(address)
        try:
            send_once(client, dead_job, address, host=smtp.host, port=smtp.port)
        except NotImplementedError:
            raise
        except BaseException:  # noqa: BLE001 - raising is right: the worker retries later
            pass
        else:
            sent = smtp.received(address) - before
            raise AssertionError(
                f"an attempt of job {dead_job!r} died while sending (its claim is still in Redis), "
                f"and the redelivered attempt returned normally having sent {sent} email(s): "
                + ("the worker acks the job and the email is never sent; keep 'sending' apart from "
                   "'sent', return only when it was sent, and raise (dramatiq.Retry) while "
                   "another attempt's claim holds, so the job comes back once the claim expired"
                   if not sent else "it sent while another attempt might still be sending"))


def _check_mark_expires(client: Any, job_id: str) -> None:
    keys = list(client.scan_iter(match=f"*{job_id}*", count=1000))
    if not keys:
        raise AssertionError(f"after send_welcome_once(client, {job_id!r}, ...) no Redis key holds "
                             f"the job id: write the mark under a key made from it, such as "
                             f"welcome-sent:{job_id}")
    for key in keys:
        if client.ttl(key) == -1:
            raise AssertionError(f"the mark {key.decode()!r} has no expiry (TTL -1), so Redis keeps "
                                 "it forever: write it with one, client.set(key, ..., ex=...)")


def _live_idempotent(send_once: Callable[..., Any], client: Any) -> None:
    from dramatiq.middleware import CurrentMessage

    from shared.retries.flaky_smtp import FlakySmtp
    from shared.retries.lab import RetryLab
    from shared.retry_policy import retry_email

    with FlakySmtp(lose_replies=1, dedupe=True) as smtp, RetryLab() as lab:
        @lab.actor(retry_when=retry_email, min_backoff=20)
        def welcome(address):
            job_id = f"{lab.namespace}-{CurrentMessage.get_current_message().message_id}"
            send_once(client, job_id, address, host=smtp.host, port=smtp.port)

        lab.start()
        message = welcome.send("grace@example.com")
        _wait(lab, "the welcome job to finish")
        lab.broker.enqueue(message)  # redelivered, as after a worker crash
        _wait(lab, "the redelivered welcome job to finish")
        received = smtp.received("grace@example.com")
        if received != 1:
            raise AssertionError(f"on a real worker (a lost reply, a retry, then a redelivery) "
                                 f"grace@example.com received {received} emails, expected 1")
        try:
            client.delete(*client.keys(f"*{lab.namespace}*"))
        except Exception:
            pass


# -- requeue_dead_letter --------------------------------------------------------

QUEUE = "default"


def _keys(namespace: str, queue: str = QUEUE) -> dict[str, str]:
    return {"dead": f"{namespace}:{queue}.XQ", "dead_msgs": f"{namespace}:{queue}.XQ.msgs",
            "queue": f"{namespace}:{queue}", "msgs": f"{namespace}:{queue}.msgs"}


def _bury(client: Any, namespace: str, args: tuple, retries: int = 3) -> tuple[str, str]:
    """A dead letter exactly as Dramatiq's nack leaves it; returns (redis_id, message_id)."""
    import time

    from dramatiq import Message

    redis_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    message: Message[Any] = Message(queue_name=QUEUE, actor_name="welcome", args=args, kwargs={},
                      options={"redis_message_id": redis_id, "retries": retries,
                               "traceback": "Traceback (most recent call last): ...",
                               "requeue_timestamp": int(time.time() * 1000), "max_retries": 3},
                      message_id=message_id, message_timestamp=int(time.time() * 1000))
    keys = _keys(namespace)
    client.zadd(keys["dead"], {redis_id: int(time.time() * 1000)})
    client.hset(keys["dead_msgs"], redis_id, message.encode())
    return redis_id, message_id


def _where(client: Any, namespace: str, redis_id: str, message_id: str) -> tuple[bool, int]:
    """(still a dead letter?, how many copies wait on the queue)."""
    from dramatiq import Message

    keys = _keys(namespace)
    dead = client.zscore(keys["dead"], redis_id) is not None
    copies = 0
    for queued in client.lrange(keys["queue"], 0, -1):
        data = client.hget(keys["msgs"], queued)
        if data is not None and Message.decode(data).message_id == message_id:
            copies += 1
    return dead, copies


def test_requeue_dead_letter(ns: dict[str, Any]) -> None:
    import redis

    from shared.grading.redis_spy import Command, SpyRedis
    from shared.redis_server import redis_url

    requeue = function(ns, "requeue_dead_letter")
    namespace = f"grading06-{uuid.uuid4().hex[:10]}"
    plain = redis.Redis.from_url(redis_url())
    try:
        # 1. A crash between any two commands must leave the letter in exactly one place.
        redis_id, message_id = _bury(plain, namespace, ("ada@example.com",))

        def no_half_move(command: Command) -> None:
            dead, copies = _where(plain, namespace, redis_id, message_id)
            if dead and copies:
                raise _HalfMove(
                    f"after {command.name} the letter was both a dead letter and on the queue: a "
                    "your process killed right then leaves it to be requeued again and run twice; move "
                    "it in one atomic step (one Lua script, or MULTI/EXEC)")
            if not dead and not copies:
                raise _HalfMove(
                    f"after {command.name} the letter was neither a dead letter nor on the queue: "
                    "your process killed right then loses it for good; move it in one atomic step "
                    "(one Lua script, or MULTI/EXEC)")

        spy = SpyRedis(redis_url(), after=no_half_move)
        try:
            new_id = call(requeue, spy, namespace, QUEUE, redis_id)
        except _HalfMove as half:
            raise AssertionError(str(half)) from None
        finally:
            spy.close()
        new_id = new_id.decode() if isinstance(new_id, bytes) else new_id
        _check_requeued(plain, namespace, redis_id, message_id, new_id)

        # 2. A letter requeued already is refused, and nothing is queued twice.
        expect_raises(ValueError, "it is not a dead letter any more: it was requeued already",
                      requeue, plain, namespace, QUEUE, redis_id)
        dead, copies = _where(plain, namespace, redis_id, message_id)
        if copies != 1:
            raise AssertionError(f"requeueing the same letter twice put {copies} copies on the "
                                 "queue, expected 1")

        # 3. Two calls racing: the second runs whole between two commands of the first.
        redis_id, message_id = _bury(plain, namespace, ("grace@example.com",))
        outcomes: list[str] = []

        def second_call(command: Command) -> None:
            if outcomes:
                return
            try:
                requeue(plain, namespace, QUEUE, redis_id)
                outcomes.append("requeued")
            except ValueError:
                outcomes.append("refused")
            except Exception as exc:
                outcomes.append(f"raised {describe(exc)}")

        spy = SpyRedis(redis_url(), after=second_call)
        try:
            try:
                requeue(spy, namespace, QUEUE, redis_id)
                outcomes.append("requeued")
            except NotImplementedError:
                raise
            except ValueError:
                outcomes.append("refused")
            except Exception as exc:
                raise AssertionError(
                    f"while another call requeued the same letter, requeue_dead_letter raised "
                    f"{describe(exc)}: refuse with ValueError") from None
        finally:
            spy.close()
        dead, copies = _where(plain, namespace, redis_id, message_id)
        if copies != 1 or outcomes.count("requeued") != 1:
            raise AssertionError(
                f"two calls racing to requeue one letter: {' and '.join(outcomes)}, and it waits "
                f"on the queue {copies} time(s); expected exactly one requeue and one copy: make the "
                "move depend on the letter still being dead, in the same atomic step (ZREM answers "
                "1 to one caller only)")
        _live_requeue(requeue)
    finally:
        found = list(plain.scan_iter(match=f"{namespace}*", count=500))
        if found:
            plain.delete(*found)
        plain.close()


class _HalfMove(BaseException):
    """Raised from inside the learner's call, past any ``except Exception`` it has."""


def _check_requeued(client: Any, namespace: str, redis_id: str, message_id: str,
                    new_id: Any) -> None:
    from dramatiq import Message

    keys = _keys(namespace)
    if not isinstance(new_id, str):
        raise AssertionError(f"requeue_dead_letter returned {new_id!r}: return the new Redis "
                             "message id (a str)")
    if client.zscore(keys["dead"], redis_id) is not None:
        raise AssertionError(f"the letter is still in {keys['dead']}: take it out of the dead letters")
    if client.hexists(keys["dead_msgs"], redis_id):
        raise AssertionError(f"the letter's body is still in {keys['dead_msgs']}: remove it too")
    queued = [q.decode() for q in client.lrange(keys["queue"], 0, -1)]
    if queued.count(new_id) != 1:
        raise AssertionError(f"the queue list {keys['queue']} holds {queued!r}, expected the id "
                             f"you returned, {new_id!r}, once")
    data = client.hget(keys["msgs"], new_id)
    if data is None:
        raise AssertionError(f"{keys['msgs']} has no body for {new_id!r}: a worker fetches the id "
                             "from the list and the body from that hash")
    message = Message.decode(data)
    if message.message_id != message_id or tuple(message.args) != ("ada@example.com",):
        raise AssertionError("the queued message is not the dead letter (another message_id or "
                             "args): keep its message_id, actor and args")
    stale = [key for key in ("traceback", "requeue_timestamp") if key in message.options]
    if message.options.get("retries", 0) != 0 or stale:
        raise AssertionError(
            f"the queued message still says retries={message.options.get('retries')!r}"
            f"{' and carries the old traceback' if 'traceback' in message.options else ''}"
            f"{' and the old requeue_timestamp' if 'requeue_timestamp' in message.options else ''}: "
            "drop the delivery options (retries, traceback, requeue_timestamp) so it starts with "
            "fresh retries")
    if message.options.get("redis_message_id") != new_id:
        raise AssertionError(
            f"the queued message's options say redis_message_id="
            f"{message.options.get('redis_message_id')!r} but it is queued as {new_id!r}: the "
            "worker acknowledges it by that option, so they must be equal")


def _live_requeue(requeue: Callable[..., Any]) -> None:
    from shared.retries.lab import RetryLab

    broken = {"cause": True}
    with RetryLab() as lab:
        @lab.actor(max_retries=1, min_backoff=10, max_backoff=20)
        def welcome(address):
            if broken["cause"]:
                raise ConnectionRefusedError(111, "Connection refused")

        lab.start()
        welcome.send("alan@example.com")
        _wait(lab, "the message to die (1 retry, then the dead letters)")
        [letter] = lab.dead_letters()
        broken["cause"] = False  # the cause, fixed
        before = len(lab.attempts())
        call(requeue, lab.broker.client, lab.namespace, QUEUE, letter.redis_id)
        try:
            lab.wait_until(lambda: len(lab.attempts()) > before, LIVE_DEADLINE,
                           "the requeued message to run")
        except TimeoutError:
            raise AssertionError(f"a real worker did not run the requeued message within "
                                 f"{LIVE_DEADLINE:g} s") from None
        attempt = lab.attempts()[-1]
        if (attempt.number, attempt.outcome) != (1, "done"):
            raise AssertionError(f"on a real worker the requeued message ran as attempt "
                                 f"{attempt.number} and ended {attempt.outcome}, expected attempt 1 "
                                 "(fresh retries) and done")


# -- shared -------------------------------------------------------------------

def _wait(lab: Any, what: str) -> None:
    try:
        lab.wait(timeout=LIVE_DEADLINE, what=what)
    except TimeoutError:
        raise AssertionError(f"waited {LIVE_DEADLINE:g} s for {what} on a real worker") from None


EXERCISES = [
    Exercise("backoff_window", 2, test_backoff_window, timeout=40),
    Exercise("retry_transient", 3, test_retry_transient, timeout=40),
    Exercise("idempotent_welcome", 3, test_idempotent_welcome, timeout=40),
    Exercise("requeue_dead_letter", 3, test_requeue_dead_letter, timeout=40),
]
