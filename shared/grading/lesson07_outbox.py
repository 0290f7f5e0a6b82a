"""Lesson 07's exercise on the outbox: a relay graded on a real Redis (stopped mid-run), a real
Dramatiq worker and a real SMTP server, in the app's own database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from shared.errors import describe
from shared.grading.exercise import Exercise
from shared.grading.testkit import function

DEADLINE = 5.0  # seconds a relay may take to send what it can send
STOP_SECONDS = 2.0  # seconds a relay may take to return once stop is set
OUTAGE_SECONDS = 0.4  # how long Redis stays down
SLOW_SEND = 0.01  # seconds each send takes while two relays race


class _Broker:
    """The learner's broker: the lab's real one, which counts sends, can lose one reply (the
    message is in Redis, then the call raises) and can be slowed down."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.sends: dict[str, list[str]] = {}  # job id (first arg) -> message ids sent for it
        self.lose_reply_for: set[str] = set()
        self.delay = 0.0
        self._lock = threading.Lock()

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        import redis

        if self.delay:
            time.sleep(self.delay)
        sent = self._real.enqueue(message, delay=delay)
        email = message.args[0] if message.args else ""
        with self._lock:
            self.sends.setdefault(email, []).append(message.message_id)
            lose = email in self.lose_reply_for
            self.lose_reply_for.discard(email)
        if lose:
            raise redis.ConnectionError("Connection reset by peer (Redis took the message; "
                                        "its reply was lost)")
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Relay:
    """The learner's relay, running in a thread until :meth:`stop`."""

    def __init__(self, relay: Callable[..., Any], db_path: str, broker: _Broker,
                 relay_id: str) -> None:
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.returned = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        args=(relay, db_path, broker, relay_id))
        self._thread.start()

    def _run(self, relay: Callable[..., Any], db_path: str, broker: _Broker,
             relay_id: str) -> None:
        try:
            relay(db_path, broker, self.stop_event, relay_id)
        except BaseException as exc:  # noqa: BLE001 - reported by check()
            self.error = exc
        self.returned = True

    def check(self, when: str) -> None:
        """Fail if the relay ended while nobody asked it to."""
        if isinstance(self.error, NotImplementedError):
            raise NotImplementedError("relay")
        if self.error is not None:
            raise AssertionError(f"{when}, your relay raised {describe(self.error)} and stopped: "
                                 "an error must end the pass, not the relay (catch it, pause, "
                                 "try again)")
        if self.returned and not self.stop_event.is_set():
            raise AssertionError(f"{when}, your relay returned while stop was not set: it must "
                                 "keep running (an error ends the pass, not the relay)")

    def __enter__(self) -> _Relay:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        """Stop the relay; a failure already on its way is the one reported."""
        if exc is None:
            self.stop()
        else:
            self.stop_event.set()
            self._thread.join(STOP_SECONDS)

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(STOP_SECONDS)
        if self._thread.is_alive():
            raise AssertionError(f"your relay did not return within {STOP_SECONDS:g} s after "
                                 "stop was set: check stop.is_set() (or wait with stop.wait(...))")
        self.check("before stop was set")


def test_outbox_relay(ns: dict[str, Any]) -> None:
    from dramatiq.middleware import CurrentMessage

    from shared.production.commit import CommitLab
    from shared.retries.mail import send_welcome

    relay = function(ns, "relay")
    with CommitLab() as lab:
        ran: set[str] = set()
        guard = threading.Lock()

        @lab.actor(max_retries=0)
        def welcome(email):
            message_id = CurrentMessage.get_current_message().message_id
            with guard:  # an idempotent job (lesson 06): a message id it has run is dropped
                if message_id in ran:
                    return
                ran.add(message_id)
            send_welcome(email, host=lab.sink.host, port=lab.sink.port)

        lab.run()
        broker = _Broker(lab.worker.broker)
        _one_relay(relay, lab, broker)
        _outage(relay, lab, broker)
        _lost_reply(relay, lab, broker)
        _two_relays(relay, lab, broker)
        _dead_relay(relay, lab, broker)


def _signups(lab: Any, prefix: str, count: int) -> dict[str, str]:
    """``count`` signups written with their outbox rows; address -> job id."""
    from shared.job import new_jobs

    made = {}
    for i in range(count):
        email = f"{prefix}{i}@example.com"
        [job] = new_jobs(email, "grader", ("welcome_email",))
        lab.store.create_account(email, [job], outbox=True)
        made[email] = job.id
    return made


def _unsent(lab: Any, jobs: dict[str, str]) -> list[str]:
    db = lab.store._db()
    return [email for email, job_id in jobs.items()
            if db.execute("SELECT sent_at FROM outbox WHERE job_id = ?",
                          (job_id,)).fetchone()[0] is None]


def _wait(predicate: Callable[[], bool], runners: list[_Relay], when: str,
          timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        for runner in runners:
            runner.check(when)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _all_mailed_once(lab: Any, broker: _Broker, jobs: dict[str, str], runners: list[_Relay],
                     when: str) -> None:
    """Wait until every job of ``jobs`` is mailed and its row marked sent; fail saying what is not."""
    def done() -> bool:
        mailed = lab.mailed()
        return all(mailed[email] for email in jobs) and not _unsent(lab, jobs)

    if _wait(done, runners, when):
        lab.wait(what="the worker to run every message your relay sent")
    mailed, unsent = lab.mailed(), _unsent(lab, jobs)
    never = [email for email in jobs if not mailed[email]]
    if never:
        took = [email for email in never if broker.sends.get(email)]
        if took and not [e for e in never if e in unsent]:
            raise AssertionError(
                f"{when}, {len(never)} of {len(jobs)} jobs were never mailed although their rows "
                f"are marked sent ({never[0]}): mark a row only after its send returned")
        raise AssertionError(f"{when}, {len(never)} of {len(jobs)} jobs were never mailed within "
                             f"{DEADLINE:g} s ({never[0]}); {len(unsent)} row(s) still unsent")
    if unsent:
        raise AssertionError(f"{when}, {len(unsent)} of {len(jobs)} jobs were mailed but their rows "
                             f"still have sent_at NULL ({unsent[0]}): mark each row sent after "
                             "its send")
    twice = [email for email in jobs if mailed[email] > 1]
    if twice:
        ids = broker.sends.get(twice[0], [])
        raise AssertionError(
            f"{when}, {len(twice)} job(s) were mailed twice ({twice[0]}, sent with message ids "
            f"{', '.join(repr(i) for i in ids)}): the job drops a message id it has already run, "
            "so send with message_id=job_id")


def _one_relay(relay: Callable[..., Any], lab: Any, broker: _Broker) -> None:
    jobs = _signups(lab, "one", 6)
    with _Relay(relay, str(lab.store.path), broker, "relay-a") as runner:
        _all_mailed_once(lab, broker, jobs, [runner], "with one relay and Redis up")
    for email, job_id in jobs.items():
        ids = broker.sends.get(email, [])
        if any(i != job_id for i in ids):
            raise AssertionError(
                f"the message of job {job_id!r} had message id {ids[0]!r}: send it with "
                "message_id=job_id, so that a copy sent again after a crash is recognised")
        if len(ids) > 1:
            raise AssertionError(f"with one relay and Redis up, job {job_id!r} was sent "
                                 f"{len(ids)} times: send each row once, and mark it sent")


def _outage(relay: Callable[..., Any], lab: Any, broker: _Broker) -> None:
    before = _signups(lab, "before-outage", 4)
    with _Relay(relay, str(lab.store.path), broker, "relay-b") as runner:
        _all_mailed_once(lab, broker, before, [runner], "before the outage")
        with lab.redis_down():
            during = _signups(lab, "during-outage", 4)
            time.sleep(OUTAGE_SECONDS)
            runner.check("while Redis was down")
            marked = [email for email in during if email not in _unsent(lab, during)]
            if marked:
                raise AssertionError(
                    f"while Redis was down, your relay marked {len(marked)} of {len(during)} rows "
                    f"sent ({marked[0]}) that Redis never took: those jobs are lost; mark a row "
                    "only after its send returned")
        _all_mailed_once(lab, broker, during, [runner], "after Redis came back")


def _lost_reply(relay: Callable[..., Any], lab: Any, broker: _Broker) -> None:
    jobs = _signups(lab, "lost-reply", 3)
    broker.lose_reply_for.add(next(iter(jobs)))
    with _Relay(relay, str(lab.store.path), broker, "relay-c") as runner:
        _all_mailed_once(lab, broker, jobs, [runner],
                         "when Redis took a message but its reply was lost")


def _two_relays(relay: Callable[..., Any], lab: Any, broker: _Broker) -> None:
    jobs = _signups(lab, "two-relays", 20)
    broker.delay = SLOW_SEND
    runners = [_Relay(relay, str(lab.store.path), broker, f"relay-{name}") for name in "de"]
    with runners[0], runners[1]:
        _all_mailed_once(lab, broker, jobs, runners, "with two relays running at once")
    broker.delay = 0.0
    twice = [email for email in jobs if len(broker.sends.get(email, [])) > 1]
    if twice:
        raise AssertionError(
            f"two relays running at once sent {len(twice)} of {len(jobs)} jobs twice "
            f"({twice[0]}; the job's guard dropped the copies, a job without one runs twice): "
            "claim rows in one UPDATE before you send, so each row belongs to one relay")


def _dead_relay(relay: Callable[..., Any], lab: Any, broker: _Broker) -> None:
    dead = _signups(lab, "dead-relay", 3)
    held = _signups(lab, "held", 2)
    now = time.time()
    with lab.store._write() as db:  # a relay that died 1 s after its claim ran out; one alive
        db.executemany("UPDATE outbox SET claimed_by = 'relay-that-died', claimed_until = ? "
                       "WHERE job_id = ?", [(now - 1, job_id) for job_id in dead.values()])
        db.executemany("UPDATE outbox SET claimed_by = 'relay-still-busy', claimed_until = ? "
                       "WHERE job_id = ?", [(now + 60, job_id) for job_id in held.values()])
    with _Relay(relay, str(lab.store.path), broker, "relay-f") as runner:
        if not _wait(lambda: not _unsent(lab, dead), [runner], "with a dead relay's claims"):
            raise AssertionError(
                f"{len(_unsent(lab, dead))} of {len(dead)} rows claimed by a relay that died "
                "(its claimed_until passed 1 s ago) were never sent: let a claim run out "
                "(claimed_until < now), or a dead relay's rows wait forever")
        lab.wait(what="the worker to run the dead relay's jobs")
    taken = [email for email in held if broker.sends.get(email)]
    if taken:
        raise AssertionError(
            f"your relay sent {len(taken)} row(s) another relay still held (claimed_by "
            f"'relay-still-busy', claimed_until a minute ahead): skip rows claimed by another "
            "relay until their claim runs out, or both relays send them")


EXERCISES = [
    Exercise("outbox_relay", 4, test_outbox_relay, timeout=40,
             waits_for="your relay to send the outbox through a Redis outage"),
]
