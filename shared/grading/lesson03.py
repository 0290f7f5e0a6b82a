"""Exercises of lesson 03, a durable queue on Redis by hand.

Every test uses the course's real Redis (``redis_url()``), a queue under a
fresh prefix that it deletes afterwards, and real processes where a crash
matters: a forked process running the learner's code, or a course worker.
The learner's code talks to Redis through a client that records each
command (``redis_spy``), and the test looks at Redis after every one of
them: a worker killed between two commands would leave Redis just so. An
answer that is not atomic therefore fails every time, with the command
named, not only when a kill happens to land in its window.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, call_text, describe, function
from shared.job import Job, new_jobs

NOTEBOOK_PREFIX = "03_"
DEADLINE = 15.0


def _queue():
    from shared.redis_queue import RedisQueue  # noqa: PLC0415 - Redis only for these tests
    from shared.redis_server import redis_url  # noqa: PLC0415

    return RedisQueue.fresh(redis_url())


def _wait(what: str, predicate, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.01)
    return value


def _job(email: str = "ada@example.com", kind: str = "welcome_email") -> Job:
    return new_jobs(email, "grading", (kind,))[0]


def _missing(queue, jobs: list[Any], lists: list[str]) -> list[Any]:
    """The jobs that none of ``lists`` holds: a process killed now would lose them."""
    with queue.redis.pipeline() as pipe:  # one snapshot of every list
        for key in lists:
            pipe.lrange(key, 0, -1)
        held = [raw for found in pipe.execute() for raw in found]
    return [raw for raw in jobs if raw not in held]


# -- take_and_run: the acknowledge step ------------------------------------------------

def test_take_and_run(ns: dict[str, Any]) -> None:
    take_and_run = function(ns, "take_and_run")
    queue = _queue()
    try:
        _check_empty_queue(take_and_run, queue)
        _check_order_and_ack(take_and_run, queue)
        _check_survives_a_kill(take_and_run, queue)
    finally:
        queue.delete()
        queue.close()


def _check_empty_queue(take_and_run, queue) -> None:
    start = time.monotonic()
    got = call(take_and_run, queue, "w1", lambda raw: None, timeout=0.2)
    if got is not False:
        raise AssertionError(f"take_and_run on an empty queue returned {got!r}, expected False")
    if time.monotonic() - start > 5:
        raise AssertionError("take_and_run(..., timeout=0.2) on an empty queue took over 5 s: "
                             "pass timeout to the blocking command")


def _check_order_and_ack(take_and_run, queue) -> None:
    from shared.grading.redis_spy import spied_queue  # noqa: PLC0415

    first, second = _job("first@example.com"), _job("second@example.com")
    queue.enqueue(first)
    queue.enqueue(second)
    jobs, lists = [first.to_json().encode(), second.to_json().encode()], [queue.queue, queue.processing("w1")]
    seen: list[tuple[bytes, list[bytes], list[bytes]]] = []
    lost: list[str] = []

    def handle(raw: bytes) -> None:
        seen.append((raw, queue.redis.lrange(queue.processing("w1"), 0, -1),
                     queue.redis.lrange(queue.queue, 0, -1)))

    def nothing_lost(command) -> None:
        if not seen and not lost and _missing(queue, jobs, lists):
            lost.append(command.name)

    learners = spied_queue(queue, after=nothing_lost)
    try:
        got = call(take_and_run, learners, "w1", handle, timeout=1.0)
    finally:
        learners.close()
    if lost:
        raise AssertionError(f"right after {lost[0]}, before handle ran, a job was in neither the "
                             "queue nor w1's processing list: a worker killed there loses it. Move "
                             "it with one atomic command, BLMOVE (queue RIGHT, processing list "
                             "LEFT), and LREM it only after handle returns")
    if got is not True or len(seen) != 1:
        raise AssertionError(f"take_and_run with two jobs queued returned {got!r} and called "
                             f"handle {len(seen)} time(s); expected True and exactly once")
    raw, held, waiting = seen[0]
    if raw != first.to_json().encode():
        raise AssertionError("handle got the newest job: take the oldest one, from the RIGHT "
                             "end (the producer LPUSHes on the left)")
    if held != [raw]:
        raise AssertionError(f"while handle ran, {queue.processing('w1')!r} held {len(held)} "
                             "job(s), expected the job itself: BLMOVE it there")
    if raw in waiting:
        raise AssertionError("while handle ran, the job was still in the queue too: "
                             "move it, do not copy it")
    if queue.redis.llen(queue.processing("w1")):
        raise AssertionError("after handle returned, the job was still in the processing list: "
                             "acknowledge it with LREM")
    if queue.redis.lrange(queue.queue, 0, -1) != [second.to_json().encode()]:
        raise AssertionError("after one take_and_run, the queue should hold just the other job")
    queue.redis.delete(queue.queue)


def _check_survives_a_kill(take_and_run, queue) -> None:
    job = _job("crash@example.com")
    queue.enqueue(job)
    pid = os.fork()
    if pid == 0:  # a real worker process running the learner's code; it will be SIGKILLed
        try:
            from shared.redis_queue import RedisQueue  # noqa: PLC0415

            take_and_run(RedisQueue(queue.url, queue.prefix), "w2",
                         lambda raw: time.sleep(60), timeout=5.0)
        finally:
            os._exit(0)
    try:
        _wait("the forked worker to take the job",
              lambda: not queue.redis.llen(queue.queue), DEADLINE)
        time.sleep(0.1)  # let it get into handle()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if queue.redis.lrange(queue.processing("w2"), 0, -1) != [job.to_json().encode()]:
        raise AssertionError("a worker killed inside handle() lost its job: it must still be "
                             f"in {queue.processing('w2')!r} for the reaper")


# -- reaper ----------------------------------------------------------------------------

def test_reaper(ns: dict[str, Any]) -> None:
    reap_dead_workers = function(ns, "reap_dead_workers")
    _check_a_heartbeat_that_comes_back(reap_dead_workers)
    _check_a_killed_worker(reap_dead_workers)


LAPSED, DEAD, LIVE = "w-lapsed", "w-dead", "w-live"
#: Commands that read a heartbeat key (alone, in a block, or in a script).
READS = {"EXISTS", "GET", "TTL", "PTTL", "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"}


def _words(text: Any) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return " ".join(text.split())


def _refuse_the_lessons_reaper(spy: Any) -> None:
    """The exercise is to write the reaper: calling the lesson's ``reap``, or running its
    ``REQUEUE_ONE`` script as is, is not an answer. ``spy`` is the answer's SpyRedis."""
    import hashlib  # noqa: PLC0415

    commands = spy.commands
    from shared.redis_queue.reaper import REQUEUE_ONE  # noqa: PLC0415

    sha = hashlib.sha1(REQUEUE_ONE.encode()).hexdigest()
    script = _words(REQUEUE_ONE)
    for command in commands:
        args = [_words(a) for a in command.args]
        if sha in [a.lower() for a in args] or script in args:
            raise AssertionError(
                "your reaper runs the lesson's own script (REQUEUE_ONE, which the lesson's reap() "
                "uses): write the check and the move yourself, as a Lua script of your own or "
                "with WATCH/MULTI/EXEC")


def _check_a_heartbeat_that_comes_back(reap_dead_workers) -> None:
    """Three registered workers: one alive, one dead, and one whose heartbeat has lapsed
    and comes back right after the learner's first command that names its heartbeat key
    (the reaper's check), before whatever comes next (its move)."""
    from shared.grading.redis_spy import spied_queue  # noqa: PLC0415

    queue = _queue()
    r = queue.redis
    try:
        r.sadd(queue.workers, LAPSED, DEAD, LIVE)
        r.rpush(queue.processing(LAPSED), b"lapsed-job-2", b"lapsed-job-1")
        r.rpush(queue.processing(DEAD), b"dead-job")
        r.rpush(queue.processing(LIVE), b"live-job")
        r.set(queue.heartbeat(LIVE), 1, px=60_000)
        beat = queue.heartbeat(LAPSED)
        revived: list[tuple[str, int]] = []  # (the command it came back after, its jobs then)

        def comes_back(command) -> None:
            # After the first command that *reads* the key: a WATCH alone checks nothing yet.
            if revived or not command.mentions(beat) or not READS & set(command.name.split()):
                return
            with r.pipeline() as pipe:  # MULTI SET SADD EXEC, as the course's heartbeat beats
                pipe.set(beat, 1, px=60_000)
                pipe.sadd(queue.workers, LAPSED)
                pipe.execute()
            revived.append((command.name, r.llen(queue.processing(LAPSED))))

        learners = spied_queue(queue, after=comes_back)
        try:
            got = call(reap_dead_workers, learners)
            _refuse_the_lessons_reaper(learners.redis)
        finally:
            learners.close()
        if r.lrange(queue.processing(LIVE), 0, -1) != [b"live-job"]:
            raise AssertionError(f"reap_dead_workers moved the job of {LIVE}, whose heartbeat is "
                                 "alive: leave live workers alone")
        if not revived:
            raise AssertionError(f"reap_dead_workers never read {beat!r}: check each worker's "
                                 "heartbeat key, queue.heartbeat(name)")
        when, held = revived[0]
        left = r.llen(queue.processing(LAPSED))
        if left < held:
            raise AssertionError(
                f"{LAPSED}'s heartbeat came back right after your {when}, yet your reaper then "
                f"moved {held - left} of its job(s): it is alive and running that job, so it will "
                "run twice. Check and move in one atomic step: a Lua script (EXISTS, then LMOVE), "
                "or WATCH the heartbeat, check it, MULTI LMOVE EXEC")
        if not r.sismember(queue.workers, LAPSED):
            raise AssertionError(
                f"{LAPSED}'s heartbeat came back right after your {when}, yet your reaper then "
                "removed it from queue.workers: nobody will reap it if it dies later. Remove a "
                "worker in the same atomic step that finds its heartbeat still gone")
        if r.llen(queue.processing(DEAD)) or r.sismember(queue.workers, DEAD):
            raise AssertionError(f"{DEAD}, whose heartbeat is gone for good, still holds a job or "
                                 "is still in queue.workers: move its jobs back, then SREM it")
        moved = 2 - left
        expected = {DEAD: 1, **({LAPSED: moved} if moved else {})}
        if not isinstance(got, dict) or {k: v for k, v in got.items() if v or k != LAPSED} != expected:
            raise AssertionError(f"reap_dead_workers returned {got!r}, expected {expected!r} "
                                 "(worker name -> jobs it moved back)")
        waiting = r.lrange(queue.queue, 0, -1)
        if sorted(waiting) != sorted([b"dead-job", b"lapsed-job-1", b"lapsed-job-2"][:1 + moved]):
            raise AssertionError(f"after reaping, the queue held {waiting!r}")
    finally:
        queue.delete()
        queue.close()


def _check_a_killed_worker(reap_dead_workers) -> None:
    from shared.grading.redis_spy import spied_queue  # noqa: PLC0415
    from shared.redis_queue.demo import Demo, kill_mid_job  # noqa: PLC0415
    from shared.redis_server import redis_url  # noqa: PLC0415

    demo = Demo(redis_url(), email_delay=10)  # the provider holds every message: jobs stay held
    try:
        pool = demo.pool("reliable", heartbeat_ttl=1.0)
        demo.enqueue_emails(["held@example.com", "taken@example.com", "waiting@example.com"])
        [dead] = pool.start(1)
        kill_mid_job(dead, demo.store, DEADLINE)  # a real worker, SIGKILLed mid-job
        [alive] = pool.start(1)
        queue = demo.queue
        _wait("the live worker to take a job", lambda: queue.held().get(alive.name))
        jobs = queue.redis.lrange(queue.processing(dead.name), 0, -1)
        lists = [queue.queue, queue.processing(dead.name), queue.processing(alive.name)]
        seen: list[Any] = []
        lost: list[str] = []

        def nothing_lost(command) -> None:
            if not lost and _missing(queue, jobs, lists):
                lost.append(command.name)

        learners = spied_queue(queue, after=nothing_lost)

        def reaped() -> Any:
            seen.append(call(reap_dead_workers, learners))
            if seen[-1] and alive.name in seen[-1]:
                raise AssertionError(f"reap_dead_workers moved the jobs of {alive.name}, whose "
                                     "heartbeat is alive")
            return seen[-1] or lost

        try:
            recovered = _wait("the dead worker's heartbeat to expire", reaped, DEADLINE)
        except AssertionError as exc:
            last = seen[-1] if seen else None
            raise AssertionError(f"{exc}; reap_dead_workers kept returning {last!r}") from None
        finally:
            learners.close()
        _refuse_the_lessons_reaper(learners.redis)
        if lost:
            raise AssertionError(f"right after {lost[0]}, the dead worker's job was in neither its "
                                 "processing list nor the queue: a reaper that dies there loses "
                                 "it. Move each job with one atomic command, LMOVE (processing "
                                 "list RIGHT, queue RIGHT)")
        if recovered != {dead.name: 1}:
            raise AssertionError(f"reap_dead_workers returned {recovered!r}, expected "
                                 f"{{{dead.name!r}: 1}} (worker name -> jobs moved back)")
        line = [Job.from_json(raw).email for raw in queue.redis.lrange(queue.queue, 0, -1)]
        if line != ["waiting@example.com", "held@example.com"]:
            raise AssertionError("the dead worker's job is not next in line: move it to the "
                                 "RIGHT end of the queue, where workers take from")
        if queue.redis.llen(queue.processing(dead.name)):
            raise AssertionError(f"{queue.processing(dead.name)!r} still holds a job")
        if queue.redis.sismember(queue.workers, dead.name):
            raise AssertionError(f"{dead.name} is still in {queue.workers!r}: remove it (SREM)")
        if queue.held().get(alive.name) != 1:
            raise AssertionError(f"the live worker {alive.name} lost its job")
        again = call(reap_dead_workers, queue)
        if again:
            raise AssertionError(f"a second reap_dead_workers returned {again!r}, expected {{}}")
    finally:
        for worker in demo.pools[0].workers if demo.pools else []:
            demo.pools[0].kill(worker)  # they hold slow emails: no point waiting for them
        demo.close()


# -- idempotent_email --------------------------------------------------------------------

def test_idempotent_email(ns: dict[str, Any]) -> None:
    send_welcome_once = function(ns, "send_welcome_once")
    from shared.grading.redis_spy import SpyRedis  # noqa: PLC0415
    from shared.smtp_sink import SmtpSink  # noqa: PLC0415

    queue = _queue()
    job, other, raced = _job("grace@example.com"), _job("grace@example.com"), _job("race@example.com")
    failed = _job("refused@example.com")
    forever: list[tuple[str, str]] = []  # (command, key): a claim left with no expiry

    def claims_expire(command) -> None:
        for key in command.mentions(job.id):
            if not forever and queue.redis.ttl(key) == -1:
                forever.append((command.name, key))

    r = SpyRedis(queue.url, after=claims_expire)
    try:
        with SmtpSink(delay=0.0) as sink:
            args = {"smtp_host": sink.host, "smtp_port": sink.port}
            first = call(send_welcome_once, r, job, **args)
            second = call(send_welcome_once, r, job, **args)
            text = call_text("send_welcome_once", "r", job, **args)
            if len(sink.inbox) != 1:
                raise AssertionError(f"calling {text} twice sent {len(sink.inbox)} emails, "
                                     "expected 1")
            if (first, second) != (True, False):
                raise AssertionError(f"the two calls returned {first!r} and {second!r}, "
                                     "expected True (sent) then False (skipped)")
            keys = _keys_naming(queue, job)
            if len(keys) != 1:
                raise AssertionError(f"expected one Redis key holding the job id {job.id}, "
                                     f"found {len(keys)}")
            ttl = queue.redis.ttl(keys[0])
            if not 0 < ttl <= 30 * 24 * 3600:
                raise AssertionError(f"the key {keys[0].decode()!r} has TTL {ttl}: give it an "
                                     "expiry (EX), or Redis keeps it forever")
            if forever:
                command, key = forever[0]
                raise AssertionError(f"right after {command}, the key {key!r} existed with no "
                                     "expiry: a worker killed there leaves it forever. Claim and "
                                     "expire in one atomic command: SET key value NX EX seconds")
            if call(send_welcome_once, r, other, **args) is not True:
                raise AssertionError("a different job for the same address was skipped: "
                                     "key on the job id, not the address")
            _check_race(send_welcome_once, queue, sink, args, raced)
            _check_a_failed_send(send_welcome_once, queue, r, sink, args, failed)
    finally:
        r.close()
        for used in (job, other, raced, failed):  # the learner's keys live outside the queue's prefix
            for leftover in _keys_naming(queue, used):
                queue.redis.delete(leftover)
        queue.delete()
        queue.close()


def _check_a_failed_send(send_welcome_once, queue, r, sink, args, job: Job) -> None:
    """A send that raises went nowhere, and this worker knows it: the claim must be given
    back (and the error raised on), or every retry skips an email that never went out."""
    from shared.net import closed_port  # noqa: PLC0415

    with closed_port() as port:  # the provider refuses the connection
        refused = {**args, "smtp_port": port}
        text = call_text("send_welcome_once", "r", job, **refused)
        try:
            returned = send_welcome_once(r, job, **refused)
        except Exception:  # noqa: BLE001 - any error is the right answer here
            pass
        else:
            raise AssertionError(f"{text}, with a provider that refuses the connection, returned "
                                 f"{returned!r}: let the error propagate, so the job is recorded "
                                 "as failed and can be retried")
    if left := _keys_naming(queue, job):
        raise AssertionError(f"after a send that raised, the claim {left[0].decode()!r} was still "
                             "in Redis: every retry will skip an email that never went out. "
                             "Delete the claim when the send raises, then raise again")
    before = len(sink.inbox)
    if call(send_welcome_once, r, job, **args) is not True or len(sink.inbox) != before + 1:
        raise AssertionError("after a failed send, a retry of the same job did not send its email")


def _keys_naming(queue, job: Job) -> list[bytes]:
    return list(queue.redis.scan_iter(match=f"*{job.id}*", count=1000))


def _check_race(send_welcome_once, queue, sink, args, job: Job) -> None:
    """Run a second attempt of ``job`` between the first attempt's first command and its next."""
    from shared.grading.redis_spy import SpyRedis  # noqa: PLC0415

    before = len(sink.inbox)
    between: list[str] = []
    errors: list[str] = []

    def second_attempt(command) -> None:
        if between:
            return
        between.append(command.name)
        try:
            send_welcome_once(r, job, **args)  # its own commands run no second_attempt
        except Exception as exc:  # noqa: BLE001
            errors.append(describe(exc))

    r = SpyRedis(queue.url, after=second_attempt)
    try:
        call(send_welcome_once, r, job, **args)
    finally:
        r.close()
    if not between:
        raise AssertionError("send_welcome_once sent no command through its client r: claim the "
                             "job with r, in Redis")
    if errors:
        raise AssertionError(f"a second attempt of the same job, run right after the first one's "
                             f"{between[0]}, raised {errors[0]}")
    sent = len(sink.inbox) - before
    if sent != 1:
        raise AssertionError(f"a second attempt of the same job, run right after the first one's "
                             f"{between[0]}, made it {sent} emails, expected 1: check and claim in "
                             "one atomic command (SET key value NX EX seconds)")


# -- strict_decoder ------------------------------------------------------------------------

def test_strict_decoder(ns: dict[str, Any]) -> None:
    decode_job = function(ns, "decode_job")
    good = _job("ada@example.com", "avatar")
    got = call(decode_job, good.to_json().encode())
    if got != good:
        raise AssertionError(f"decode_job(<a valid job>) returned {got!r}, expected {good!r}")
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "ran"
        from shared.redis_queue.pickle_demo import crafted_payload  # noqa: PLC0415

        _expect_error(decode_job, crafted_payload(marker), "json", "a pickled message")
        if marker.exists():
            raise AssertionError("decoding a pickled message ran its code: never unpickle")
    fields = {"id": "j1", "kind": "avatar", "email": "ada@example.com", "request_id": "r1",
              "enqueued_at": 1.5}
    cases = [
        (b"\xff\xfe", "json", "bytes that are not UTF-8"),
        (b"{not json", "json", "malformed JSON"),
        (b"[1, 2]", "", "a JSON array"),  # refused; the spec asks for no word
        (_dump({k: v for k, v in fields.items() if k != "email"}), "email", "a missing key"),
        (_dump({**fields, "args": "rm -rf"}), "args", "an unexpected key"),
        (_dump({**fields, "kind": "format_disk"}), "format_disk", "an unknown kind"),
        (_dump({**fields, "email": 42}), "email", "a number as the email"),
        (_dump({**fields, "enqueued_at": "yesterday"}), "enqueued_at", "a string as enqueued_at"),
        (_dump({**fields, "enqueued_at": True}), "enqueued_at", "true as enqueued_at"),
    ]
    for raw, word, what in cases:
        _expect_error(decode_job, raw, word, what)


def _dump(data: dict) -> bytes:
    import json  # noqa: PLC0415

    return json.dumps(data).encode()


def _expect_error(decode_job, raw: bytes, word: str, what: str) -> None:
    try:
        returned = decode_job(raw)
    except NotImplementedError:
        raise
    except ValueError as exc:
        if not str(exc).strip():
            raise AssertionError(f"decode_job(<{what}>) raised a ValueError with no message: "
                                 "say what is wrong") from None
        if word.lower() not in str(exc).lower():
            raise AssertionError(f"decode_job(<{what}>) raised ValueError({str(exc)!r}); "
                                 f"say what is wrong: the message should mention {word!r}") from None
        return
    except Exception as exc:
        raise AssertionError(f"decode_job(<{what}>) raised {describe(exc)}, expected a "
                             "ValueError that says what is wrong") from None
    raise AssertionError(f"decode_job(<{what}>) returned {returned!r}, expected a ValueError")


EXERCISES = [
    Exercise("take_and_run", 3, test_take_and_run, timeout=30),
    Exercise("reaper", 3, test_reaper, timeout=40),
    Exercise("idempotent_email", 2, test_idempotent_email, timeout=30),
    Exercise("strict_decoder", 2, test_strict_decoder, timeout=15),
]
