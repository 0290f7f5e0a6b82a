"""Exercises of lesson 04, Dramatiq on Redis.

``status_middleware`` and ``choose_settings`` are checked against real
Dramatiq workers on the real Redis; ``stub_broker_test`` runs the learner's
unit test against a correct actor and against broken ones.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq

from shared.modes.dramatiq.broker import BrokerConfig, delete_namespace, make_broker
from shared.grading.exercise import Exercise
from shared.grading.testkit import call, call_text, describe, function

NOTEBOOK_PREFIX = "04_"
DEADLINE = 10.0

# -- status_middleware --------------------------------------------------------

EXPECTED_FINAL = {"ok": "done", "slow": "done", "boom": "failed: ValueError: no avatar today",
                  "old": "skipped"}
HOOKS = {"ok": "after_process_message", "slow": "after_process_message",
         "boom": "after_process_message with an exception", "old": "after_skip_message"}


def test_status_middleware(ns: dict[str, Any]) -> None:
    recorder_class = ns.get("StatusRecorder")
    if recorder_class is None:
        raise AssertionError("StatusRecorder is not defined — did you rename it?")
    if not (isinstance(recorder_class, type) and issubclass(recorder_class, dramatiq.Middleware)):
        raise AssertionError("StatusRecorder must be a class that subclasses dramatiq.Middleware")
    try:
        recorder: Any = recorder_class()
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"StatusRecorder() raised {describe(exc)}") from None
    if not isinstance(getattr(recorder, "statuses", None), dict):
        raise AssertionError("StatusRecorder() must set self.statuses to a dict")

    from shared.redis_server import redis_url  # noqa: PLC0415 - a real Redis only when graded

    url = redis_url()
    namespace = f"grading-{uuid.uuid4().hex[:12]}"
    broker = make_broker(url, BrokerConfig(namespace=namespace))
    broker.add_middleware(recorder)
    release = threading.Event()

    def ok() -> None:
        pass

    def slow() -> None:
        release.wait(DEADLINE)

    def boom() -> None:
        raise ValueError("no avatar today")

    def old() -> None:
        pass

    actors = {fn.__name__: dramatiq.actor(broker=broker, max_retries=0)(fn)
              for fn in (ok, slow, boom, old)}
    worker = None
    try:
        ids = {name: actor.send().message_id for name, actor in actors.items() if name != "old"}
        ids["old"] = actors["old"].send_with_options(max_age=1).message_id  # 1 ms: too old
        time.sleep(0.02)
        seen = {name: recorder.statuses.get(message_id) for name, message_id in ids.items()}
        if seen != {name: "queued" for name in ids}:
            raise AssertionError(f"after send() and before any worker ran, statuses were {seen}, "
                                 "expected 'queued' for each (hook: after_enqueue)")
        worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
        worker.start()
        _wait_for(lambda: recorder.statuses.get(ids["slow"]) == "running",
                  f"the slow job's status to be 'running' while it runs (hook: "
                  f"before_process_message); it was {recorder.statuses.get(ids['slow'])!r}",
                  deadline=5.0)
        release.set()
        _settle(lambda: [recorder.statuses.get(i) for i in ids.values()])
        final = {name: recorder.statuses.get(message_id) for name, message_id in ids.items()}
        for name, expected in EXPECTED_FINAL.items():
            if final[name] != expected:
                raise AssertionError(f"the {name!r} job ended as {final[name]!r}, expected "
                                     f"{expected!r} (hook: {HOOKS[name]}; all statuses: {final})")
    finally:
        release.set()
        if worker is not None:
            worker.stop()
        broker.close()
        delete_namespace(url, namespace)


def _settle(read: Callable[[], list], quiet: float = 1.0, deadline: float = DEADLINE) -> None:
    """Wait until the statuses stop changing for ``quiet`` seconds (or the deadline)."""
    end = time.monotonic() + deadline
    last, since = read(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and all(s not in ("running",) for s in now):
            return


def _wait_for(predicate: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline:g} s for {what}")  # says what it waited for
        time.sleep(0.01)


# -- stub_broker_test ---------------------------------------------------------

def _declare(append: Callable[[list, str], None], *, strict: bool = True):
    """A ``declare_welcome(broker, outbox)`` whose actor does ``append(outbox, email)``."""

    def declare_welcome(broker, outbox):
        def welcome(email: str) -> None:
            if strict and "@" not in email:
                raise ValueError(f"not an email address: {email!r}")
            append(outbox, email)

        return dramatiq.actor(welcome, broker=broker, max_retries=0)

    return declare_welcome


CORRECT = _declare(lambda outbox, email: outbox.append(f"Welcome, {email}!"))
BROKEN = {
    "sends nothing": _declare(lambda outbox, email: None),
    "sends it twice": _declare(lambda outbox, email: outbox.extend([f"Welcome, {email}!"] * 2)),
    "gets the text wrong": _declare(lambda outbox, email: outbox.append(f"Welcome {email}")),
    "accepts an address without @": _declare(
        lambda outbox, email: outbox.append(f"Welcome, {email}!"), strict=False),
}


def test_stub_broker_test(ns: dict[str, Any]) -> None:
    check_welcome = function(ns, "check_welcome")
    baseline = _live_threads()
    try:
        check_welcome(CORRECT)
    except NotImplementedError:
        raise
    except BaseException as exc:  # noqa: BLE001 - an assertion here is the learner's bug
        raise AssertionError(f"check_welcome(correct declare_welcome) raised {describe(exc)}: "
                             "your test fails a correct actor") from None
    _expect_threads_gone(baseline, "check_welcome(correct declare_welcome)")
    for flaw, declare in BROKEN.items():
        try:
            check_welcome(declare)
        except NotImplementedError:
            raise
        except Exception:  # noqa: BLE001 - any failure is the right answer
            _expect_threads_gone(baseline, f"check_welcome(an actor that {flaw})")
            continue
        raise AssertionError(f"check_welcome passed an actor that {flaw}: your test must fail it")


def _live_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


def _expect_threads_gone(baseline: set[threading.Thread], what: str) -> None:
    end = time.monotonic() + 5
    while (left := _live_threads() - baseline) and time.monotonic() < end:
        time.sleep(0.05)
    if left:
        raise AssertionError(f"{what} left {len(left)} thread(s) running: stop the Worker "
                             "(worker.stop() in a finally block)")


# -- choose_settings ----------------------------------------------------------

#: (p50 goal in ms, pickup share, jobs per second, seconds per job). The shares span the 3/8 that
#: lesson 04 derives from compute_backoff (0.375): one below it, the rest at it or above (a margin for
#: the fixed fetch overhead). The rule under test is the decision, share x timeout <= goal.
CASES = [(100, 0.4, 20, 0.5), (40, 0.45, 5, 0.2), (250, 0.3, 3, 2.0), (60, 0.55, 50, 0.05),
         (30, 0.375, 1, 1.0)]
LIVE_SHARE = 0.45  # the share the live check plans with: 3/8 plus a margin for the fetch overhead


def expected_threads(jobs_per_second: float, job_seconds: float) -> int:
    return math.ceil(jobs_per_second * job_seconds / 0.8)


def largest_timeout(goal: float, share: float) -> int:
    """The largest whole ms whose predicted median, share x timeout, meets the goal."""
    timeout = math.floor(goal / share)
    while share * (timeout + 1) <= goal:  # guard against float error in the division
        timeout += 1
    while timeout > 0 and share * timeout > goal:
        timeout -= 1
    return timeout


def test_choose_settings(ns: dict[str, Any]) -> None:
    choose_settings = function(ns, "choose_settings")
    for goal, share, rate, seconds in CASES:
        text = call_text("choose_settings", goal, share, rate, seconds)
        got = call(choose_settings, goal, share, rate, seconds)
        if not isinstance(got, dict) or sorted(got) != ["threads", "worker_timeout"]:
            raise AssertionError(f"{text} returned {got!r}, expected a dict with the keys "
                                 "worker_timeout and threads")
        timeout, threads = got["worker_timeout"], got["threads"]
        for name, value in got.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise AssertionError(f"{text}: {name} must be a whole number, got {value!r}")
        most = largest_timeout(goal, share)
        if timeout > most:
            raise AssertionError(
                f"{text}: worker_timeout={timeout} ms predicts a median wait of "
                f"{share:g} x {timeout} = {share * timeout:g} ms, over the {goal} ms goal: "
                f"use the pickup_share you are given; {most} ms is the largest that meets it")
        if timeout < most - 1:
            raise AssertionError(
                f"{text}: worker_timeout={timeout} ms predicts a median wait of only "
                f"{share * timeout:g} ms; {most} ms still meets the {goal} ms goal "
                f"({share:g} x {most} = {share * most:g} ms), and a shorter cap pays idle "
                "Redis calls for nothing")
        least = expected_threads(rate, seconds)
        if not least <= threads <= 2 * least:
            raise AssertionError(
                f"{text}: threads={threads}; {rate} jobs/s of {seconds} s keep "
                f"{rate * seconds:g} threads busy on average, so at most 80% busy needs "
                f"ceil({rate * seconds:g} / 0.8) = {least}, and more than twice that wastes memory")
    _measure_live(choose_settings)


def _measure_live(choose_settings: Callable[..., Any]) -> None:
    """The learner's worker_timeout for a 60 ms goal, on a real idle worker."""
    from shared.pickup import measure_pickup  # noqa: PLC0415
    from shared.redis_server import redis_url  # noqa: PLC0415

    goal = 60
    timeout = call(choose_settings, goal, LIVE_SHARE, 5, 0.2)["worker_timeout"]
    [pickup] = measure_pickup(redis_url(), [timeout], queues=8)
    if pickup.p50 * 1000 > goal * 2.5:  # a wide margin: the grader may share a busy machine
        raise AssertionError(f"with worker_timeout={timeout} ms a real idle worker picked jobs "
                             f"up after {pickup.p50 * 1000:.0f} ms (p50), far over the {goal} ms goal")


EXERCISES = [
    Exercise("status_middleware", 3, test_status_middleware, timeout=40.0),
    Exercise("stub_broker_test", 3, test_stub_broker_test, timeout=40.0),
    Exercise("choose_settings", 2, test_choose_settings, timeout=30.0),
]
