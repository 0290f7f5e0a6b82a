"""Exercises of lesson 02, a thread queue by hand.

Each test runs the learner's code against real threads. Every wait has its
own deadline and says what it waited for; the child process that runs the
test is killed at the exercise's timeout, so a hanging answer fails only
its own exercise.
"""

from __future__ import annotations

import queue
import random
import statistics
import threading
import time
from typing import Any

from shared.grading.exercise import Exercise
from shared.grading.testkit import call, describe, expect_raises, function

NOTEBOOK_PREFIX = "02_"
DEADLINE = 5.0


def _wait_for(what: str, predicate, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline:g} s for {what}")
        time.sleep(0.005)


def _threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.is_alive()}


def _in_thread(target, *args) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target(*args)`` in a daemon thread; its result or exception lands in the dict."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _joined(thread: threading.Thread, box: dict[str, Any], what: str) -> Any:
    thread.join(DEADLINE)
    if thread.is_alive():
        raise AssertionError(f"{what} did not return within {DEADLINE:g} s")
    if "error" in box:
        error = box["error"]
        if isinstance(error, NotImplementedError):
            raise error
        raise AssertionError(f"{what} raised {describe(error)}")
    return box.get("result")


# -- worker_pool ---------------------------------------------------------------

def test_worker_pool(ns: dict[str, Any]) -> None:
    pool_class = function(ns, "WorkerPool")
    _starts_its_workers_and_bounds_concurrency(pool_class)
    _runs_in_order_with_one_worker(pool_class)
    _drains_everything_then_stops(pool_class)
    _survives_a_failing_task(pool_class)
    _hands_back_the_queued_tasks_without_drain(pool_class)


def _starts_its_workers_and_bounds_concurrency(pool_class) -> None:
    before = _threads()
    pool = call(pool_class, 3)
    started = _threads() - before
    if len(started) != 3:
        raise AssertionError(f"WorkerPool(3) started {len(started)} threads, expected 3 worker "
                             "threads started in __init__")
    lock, running, most, release = threading.Lock(), [0], [0], threading.Event()

    def task() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(DEADLINE)
        with lock:
            running[0] -= 1

    for _ in range(9):
        call(pool.submit, task)
    _wait_for("3 tasks to run at once on WorkerPool(3) (are the workers taking tasks?)",
              lambda: most[0] >= 3)
    time.sleep(0.1)  # room for a 4th to start, if the pool let it
    if most[0] > 3:
        raise AssertionError(f"WorkerPool(3) ran {most[0]} tasks at once: at most 3 workers may run")
    release.set()
    for _ in range(3):  # still busy when shutdown() is called: only a join waits for these
        call(pool.submit, time.sleep, 1.0)
    thread, box = _in_thread(pool.shutdown)
    _joined(thread, box, "shutdown() after 12 tasks")
    if _threads() - before:
        raise AssertionError("shutdown() returned, but worker threads are still alive: "
                             "join them before returning")


def _runs_in_order_with_one_worker(pool_class) -> None:
    pool, seen = call(pool_class, 1), list[Any]()
    for n in range(20):
        call(pool.submit, seen.append, n)
    thread, box = _in_thread(pool.shutdown)
    _joined(thread, box, "shutdown()")
    if seen != list(range(20)):
        raise AssertionError(f"WorkerPool(1) ran 20 tasks in the order {seen}, expected "
                             "0..19: oldest first (a queue.Queue is first in, first out)")


def _drains_everything_then_stops(pool_class) -> None:
    pool, counts, lock = call(pool_class, 4), [0] * 50, threading.Lock()

    def task(n: int) -> None:
        time.sleep(0.002)
        with lock:
            counts[n] += 1

    for n in range(50):
        call(pool.submit, task, n)
    thread, box = _in_thread(pool.shutdown, True)
    left = _joined(thread, box, "shutdown(drain=True)")
    if counts != [1] * 50:
        missing = [n for n, count in enumerate(counts) if count != 1]
        raise AssertionError(f"after shutdown(drain=True), tasks {missing[:5]} ran "
                             f"{[counts[n] for n in missing[:5]]} times: each must run exactly once")
    if not isinstance(left, list) or left:
        raise AssertionError(f"shutdown(drain=True) returned {left!r}, expected [] (nothing was left)")
    try:
        pool.submit(print, "too late")
    except RuntimeError:
        pass
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"submit() after shutdown raised {describe(exc)}, "
                             "expected RuntimeError") from None
    else:
        raise AssertionError("submit() after shutdown() was accepted: raise RuntimeError instead")


def _survives_a_failing_task(pool_class) -> None:
    pool, seen = call(pool_class, 1), list[Any]()

    def broken() -> None:
        raise ValueError("this task fails")

    call(pool.submit, broken)
    call(pool.submit, seen.append, "after")
    _wait_for("the task after a failing one to run (does a failing task kill its worker?)",
              lambda: seen == ["after"])
    thread, box = _in_thread(pool.shutdown)
    _joined(thread, box, "shutdown()")


def _hands_back_the_queued_tasks_without_drain(pool_class) -> None:
    before = _threads()
    pool, started, go, ran = call(pool_class, 1), threading.Event(), threading.Event(), list[Any]()

    def blocker() -> None:
        started.set()
        go.wait(DEADLINE)

    call(pool.submit, blocker)
    _wait_for("the first task to start", started.is_set)
    for n in range(5):
        call(pool.submit, ran.append, n)
    thread, box = _in_thread(pool.shutdown, False)
    time.sleep(0.5)  # shutdown takes the queued tasks out while the worker is busy
    go.set()
    left = _joined(thread, box, "shutdown(drain=False)")
    if ran:
        raise AssertionError(f"shutdown(drain=False) still ran {len(ran)} queued task(s): take them "
                             "out of the queue (get_nowait until queue.Empty) before stopping")
    try:
        handed_back = [tuple(task)[1:] for task in left]
    except TypeError:
        raise AssertionError(f"shutdown(drain=False) returned {left!r}, expected a list of the "
                             "(fn, args) tasks it did not run") from None
    if handed_back != [((n,),) for n in range(5)] and handed_back != [(n,) for n in range(5)]:
        raise AssertionError(f"shutdown(drain=False) returned {left!r}: expected the 5 tasks it did "
                             "not run, oldest first, each as (fn, args)")
    if _threads() - before:
        raise AssertionError("shutdown(drain=False) returned, but worker threads are still alive")


# -- fair_priority_queue -------------------------------------------------------

def _expected_gets(script: list[tuple], max_overtakes: int) -> list[tuple[Any, str]]:
    """What the rule gives for ``script``: ``("put", item, priority)`` and ``("get",)`` steps.

    Returns ``(item, why)`` for each get: ``why`` says whether it aged to the front
    or came by priority, for the message.
    """
    waiting: list[list[Any]] = []  # [arrival, priority, item, times overtaken], oldest first
    gets: list[tuple[Any, str]] = []
    for arrival, step in enumerate(script):
        if step[0] == "put":
            waiting.append([arrival, step[2], step[1], 0])
            continue
        oldest = waiting[0]
        if oldest[3] >= max_overtakes:
            chosen, why = oldest, f"it had been overtaken {max_overtakes} times: it goes next"
        else:
            chosen = min(waiting, key=lambda entry: (entry[1], entry[0]))
            why = "lowest priority, oldest first among equals, while no item is due"
        waiting.remove(chosen)
        for entry in waiting:
            if entry[0] < chosen[0]:
                entry[3] += 1
        gets.append((chosen[2], why))
    return gets


def _play(queue_class, script: list[tuple], max_overtakes: int) -> list[Any]:
    line = call(queue_class, max_overtakes)
    got: list[Any] = []
    for step in script:
        if step[0] == "put":
            call(line.put, step[1], step[2])
        else:
            thread, box = _in_thread(line.get)
            got.append(_joined(thread, box, f"get() with {len(got)} item(s) taken so far and more waiting"))
    return got


def _script_text(script: list[tuple]) -> str:
    return " ".join(f"{step[1]}:{step[2]}" if step[0] == "put" else "get" for step in script)


def test_fair_priority_queue(ns: dict[str, Any]) -> None:
    queue_class = function(ns, "FairPriorityQueue")
    _priority_first(queue_class)
    _no_starvation(queue_class)
    _the_rule_on_a_long_script(queue_class)
    _equals_keep_their_order(queue_class)
    line = call(queue_class, 3)
    _get_gives_up_after_its_timeout(line)
    _get_waits_for_a_put(queue_class)
    _many_threads(queue_class)


def _priority_first(queue_class) -> None:
    script = [("put", item, priority) for item, priority in
              [("a", 1), ("b", 0), ("c", 1), ("d", 0), ("e", 2), ("f", 0)]] + [("get",)] * 6
    got = _play(queue_class, script, 10)
    wanted = [item for item, _ in _expected_gets(script, 10)]
    if got != wanted:
        raise AssertionError(f"FairPriorityQueue(10): put a:1 b:0 c:1 d:0 e:2 f:0, then get() x6 gave {got}, "
                             f"expected {wanted}: lowest priority first, oldest first among equals, "
                             "while no item has been overtaken 10 times")


def _no_starvation(queue_class) -> None:
    script: list[tuple] = [("put", "the avatar", 1)]
    for n in range(10):  # each time the worker takes a job, one more email arrives
        script += [("put", f"email {n}", 0), ("get",)]
    got = _play(queue_class, script, 3)
    setting = ("FairPriorityQueue(3): the avatar (priority 1), put first, then 10 times an email "
               "(priority 0) put and get()")
    if "the avatar" not in got:
        raise AssertionError(f"{setting}: the avatar never came out, overtaken by 10 later emails; "
                             "with max_overtakes=3 it must come out after 3 of them")
    overtaken = got.index("the avatar")
    if overtaken != 3:
        raise AssertionError(f"{setting}: the avatar came out after {overtaken} later emails, expected "
                             "after exactly 3 (priority decides until an item has been overtaken "
                             "max_overtakes times; then it goes next)")


def _the_rule_on_a_long_script(queue_class) -> None:
    rng, script, size = random.Random(5), list[tuple](), 0
    for n in range(60):
        if size and rng.random() < 0.45:
            script.append(("get",))
            size -= 1
        else:
            script.append(("put", f"i{n}", rng.randint(0, 2)))
            size += 1
    script += [("get",)] * size
    for max_overtakes in (0, 2):
        got = _play(queue_class, script, max_overtakes)
        wanted = _expected_gets(script, max_overtakes)
        for number, (item, (expected, why)) in enumerate(zip(got, wanted), start=1):
            if item != expected:
                raise AssertionError(
                    f"FairPriorityQueue({max_overtakes}) on the script {_script_text(script)[:80]}...: "
                    f"get() number {number} gave {item!r}, expected {expected!r} ({why})")


def _equals_keep_their_order(queue_class) -> None:
    line = call(queue_class, 5)
    try:
        for n in range(3):
            line.put({"job": n}, 5)  # dicts cannot be compared with <
        got = [line.get() for _ in range(3)]
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"three dicts put at equal priority: {describe(exc)}: order by (priority, "
                             "arrival number), so that the items themselves are never compared") from None
    if got != [{"job": 0}, {"job": 1}, {"job": 2}]:
        raise AssertionError(f"three dicts at equal priority came out as {got}: keep arrival order "
                             "(a sequence number) so items themselves are never compared")


def _get_gives_up_after_its_timeout(line) -> None:
    thread, box = _in_thread(lambda: line.get(timeout=0.05))
    thread.join(DEADLINE)
    if thread.is_alive():
        raise AssertionError(f"get(timeout=0.05) on an empty queue was still waiting after "
                             f"{DEADLINE:g} s: give up after timeout seconds")
    error = box.get("error")
    if isinstance(error, NotImplementedError):
        raise error
    if not isinstance(error, queue.Empty):
        got = f"raised {describe(error)}" if error else f"returned {box.get('result')!r}"
        raise AssertionError(f"get(timeout=0.05) on an empty queue {got}, expected queue.Empty")


def _get_waits_for_a_put(queue_class) -> None:
    line = call(queue_class, 3)
    thread, box = _in_thread(line.get)
    time.sleep(0.1)
    if not thread.is_alive():
        raise AssertionError(f"get() on an empty queue returned {box.get('result', box.get('error'))!r} "
                             "at once: it must wait for an item")
    call(line.put, "late", 3)
    if _joined(thread, box, "get() waiting on an empty queue") != "late":
        raise AssertionError(f"get() waiting on an empty queue returned {box.get('result')!r}, "
                             "expected 'late'")


class _Yielding(int):
    """A priority that lets other threads run each time it is compared, so that a put() or
    get() that is not thread-safe is caught in the middle, every time, not once in a while."""

    def __lt__(self, other: object) -> bool:
        time.sleep(0)
        return int(self) < int(other)  # type: ignore[call-overload]

    def __gt__(self, other: object) -> bool:
        time.sleep(0)
        return int(self) > int(other)  # type: ignore[call-overload]

    def __le__(self, other: object) -> bool:
        time.sleep(0)
        return int(self) <= int(other)  # type: ignore[call-overload]

    def __ge__(self, other: object) -> bool:
        time.sleep(0)
        return int(self) >= int(other)  # type: ignore[call-overload]

    __hash__ = int.__hash__


def _many_threads(queue_class) -> None:
    """4 producers and 2 consumers at once: every item must come out exactly once."""
    line, rng = call(queue_class, 1000), random.Random(2)
    plans = [[(f"p{p}-{n}", _Yielding(rng.randint(0, 3))) for n in range(60)] for p in range(4)]
    total = sum(len(plan) for plan in plans)
    taken: list[list[Any]] = [[], []]

    def produce(plan) -> None:
        for item, priority in plan:
            line.put(item, priority)

    def consume(mine: list[Any]) -> None:
        while len(taken[0]) + len(taken[1]) < total:  # or until nothing comes for a second
            try:
                mine.append(line.get(timeout=1))
            except queue.Empty:
                return

    workers = [_in_thread(consume, mine) for mine in taken] + [_in_thread(produce, plan) for plan in plans]
    for thread, box in workers:
        try:
            _joined(thread, box, "put() from 4 threads and get() from 2 threads at once")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: guard put() and get() with one lock "
                                 "(a threading.Condition lets get() wait on it, too)") from None
    got = taken[0] + taken[1]
    twice = sorted({item for item in got if got.count(item) > 1})
    if twice:
        raise AssertionError(f"4 threads put {total} items while 2 threads took them: {twice[:3]} came out "
                             "twice: guard put() and get() with one lock (a threading.Condition)")
    if len(got) != total:
        raise AssertionError(f"4 threads put {total} items while 2 threads took them: only {len(got)} came "
                             "out: is put() thread-safe?")


# -- retry ---------------------------------------------------------------------

class _Flaky:
    """Fails ``failures`` times with a fresh OSError, then returns ``"sent"``."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls, self.errors = failures, 0, list[Any]()

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            error = OSError(f"451 try again later (failure {self.calls})")
            self.errors.append(error)
            raise error
        return "sent"


def _ceiling(n: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** (n - 1))


def test_retry(ns: dict[str, Any]) -> None:
    retry = function(ns, "retry")
    flaky, slept = _Flaky(0), list[float]()
    got = call(retry, flaky, retries=3, base=0.1, cap=1.0, sleep=slept.append, rng=random.Random(1))
    if (got, flaky.calls, slept) != ("sent", 1, []):
        raise AssertionError(f"a call that works at once: retry returned {got!r} after {flaky.calls} "
                             f"call(s) and slept {slept}, expected 'sent', 1 call, no sleep")
    for failures in (1, 3):
        flaky, slept = _Flaky(failures), []
        got = call(retry, flaky, retries=3, base=0.1, cap=1.0, sleep=slept.append, rng=random.Random(1))
        if got != "sent" or flaky.calls != failures + 1 or len(slept) != failures:
            raise AssertionError(f"fn failing {failures} time(s), retries=3: retry returned {got!r} "
                                 f"after {flaky.calls} calls and {len(slept)} sleeps, expected 'sent' "
                                 f"after {failures + 1} calls and {failures} sleeps")
        _check_bounds(slept, 0.1, 1.0)
    flaky, slept = _Flaky(99), []
    try:
        retry(flaky, retries=2, base=0.1, cap=1.0, sleep=slept.append, rng=random.Random(1))
    except NotImplementedError:
        raise
    except OSError as exc:
        if exc is not flaky.errors[-1]:
            raise AssertionError(f"retry raised {describe(exc)} after giving up; expected the last "
                                 f"error itself ({flaky.errors[-1]})") from None
    except Exception as exc:
        raise AssertionError(f"retry raised {describe(exc)} after giving up; expected the "
                             "last OSError itself") from None
    else:
        raise AssertionError("fn always fails, retries=2: retry returned instead of raising the last error")
    if flaky.calls != 3:
        raise AssertionError(f"fn always fails, retries=2: fn was called {flaky.calls} times, expected 3 "
                             "(the first try and 2 retries)")
    flaky, slept = _Flaky(99), []
    expect_raises(OSError, "retries=0 means one try", retry, flaky, retries=0, base=0.1, cap=1.0,
                  sleep=slept.append, rng=random.Random(1))
    if flaky.calls != 1 or slept:
        raise AssertionError(f"retries=0: fn was called {flaky.calls} times and retry slept {slept}, "
                             "expected 1 call and no sleep")
    flaky, slept = _Flaky(12), []
    call(retry, flaky, retries=12, base=0.1, cap=0.5, sleep=slept.append, rng=random.Random(4))
    _check_bounds(slept, 0.1, 0.5)
    _check_jitter(retry)
    _check_retry_on(retry)
    _check_deadline(retry)


class _Permanent:
    """Fails every time with the same ValueError: not worth another try."""

    def __init__(self) -> None:
        self.calls, self.error = 0, ValueError("550 no such mailbox")

    def __call__(self) -> str:
        self.calls += 1
        raise self.error


def _check_retry_on(retry) -> None:
    flaky, slept = _Flaky(2), list[float]()
    got = call(retry, flaky, retries=3, base=0.1, cap=1.0, retry_on=(OSError,), sleep=slept.append,
               rng=random.Random(1))
    if got != "sent" or flaky.calls != 3:
        raise AssertionError(f"retry_on=(OSError,), fn failing twice with OSError: retry returned {got!r} "
                             f"after {flaky.calls} calls, expected 'sent' after 3")
    permanent, slept = _Permanent(), []
    try:
        retry(permanent, retries=3, base=0.1, cap=1.0, retry_on=(OSError,), sleep=slept.append,
              rng=random.Random(1))
    except NotImplementedError:
        raise
    except ValueError as exc:
        if exc is not permanent.error:
            raise AssertionError(f"retry_on=(OSError,), fn raising ValueError: retry raised another "
                                 f"ValueError ({exc}), expected fn's own") from None
    except Exception as exc:
        raise AssertionError(f"retry_on=(OSError,), fn raising ValueError: retry raised {describe(exc)}, "
                             "expected fn's ValueError itself") from None
    else:
        raise AssertionError("retry_on=(OSError,), fn always raising ValueError: retry returned instead "
                             "of raising it")
    if permanent.calls != 1 or slept:
        raise AssertionError(f"retry_on=(OSError,), fn raising ValueError: fn was called {permanent.calls} "
                             f"times and retry slept {len(slept)} times; an error not in retry_on is "
                             "raised at once, after 1 call and no wait")


def _check_deadline(retry) -> None:
    flaky, slept = _Flaky(1_000), list[float]()
    try:
        retry(flaky, retries=100, base=0.1, cap=0.1, deadline=2.0, sleep=slept.append,
              rng=random.Random(3))
    except NotImplementedError:
        raise
    except OSError as exc:
        if exc is not flaky.errors[-1]:
            raise AssertionError(f"deadline=2: retry raised {describe(exc)} when it gave up; expected "
                                 "the last error itself") from None
    except Exception as exc:
        raise AssertionError(f"deadline=2: retry raised {describe(exc)} when it gave up; expected "
                             "the last OSError itself") from None
    else:
        raise AssertionError("fn always fails, deadline=2: retry returned instead of raising the last error")
    total = sum(slept)
    if total > 2.0 + 1e-9:
        raise AssertionError(f"deadline=2, base=cap=0.1: the waits added up to {total:.3g} s, past the "
                             "deadline; when the next wait would pass it, raise the last error instead")
    if total < 1.9:
        raise AssertionError(f"deadline=2, base=cap=0.1: retry gave up after {total:.3g} s of waits, "
                             "before a wait of at most 0.1 s could pass the deadline")
    if flaky.calls != len(slept) + 1:
        raise AssertionError(f"deadline=2: fn was called {flaky.calls} times around {len(slept)} waits, "
                             "expected one call more than waits")


def _check_bounds(slept: list, base: float, cap: float) -> None:
    for n, delay in enumerate(slept, start=1):
        ceiling = _ceiling(n, base, cap)
        if not isinstance(delay, (int, float)) or not 0 <= delay <= ceiling + 1e-12:
            raise AssertionError(f"before retry {n} (base={base:g}, cap={cap:g}) retry slept {delay!r}: "
                                 f"expected between 0 and {ceiling:g}")


def _check_jitter(retry) -> None:
    """Full jitter: each wait uniform on [0, ceiling]; check the spread over many runs."""
    rng, firsts, thirds = random.Random(7), [], []
    for _ in range(1500):
        flaky, slept = _Flaky(3), list[float]()
        retry(flaky, retries=3, base=0.2, cap=10.0, sleep=slept.append, rng=rng)
        firsts.append(slept[0])
        thirds.append(slept[2])
    for n, delays, ceiling in ((1, firsts, 0.2), (3, thirds, 0.8)):
        mean = statistics.mean(delays)
        if not 0.4 * ceiling <= mean <= 0.6 * ceiling or min(delays) > 0.1 * ceiling \
                or max(delays) < 0.9 * ceiling:
            raise AssertionError(
                f"over 1500 runs, waits before retry {n} ranged {min(delays):.3g}..{max(delays):.3g} s "
                f"with mean {mean:.3g} s; full jitter spreads them evenly over 0..{ceiling:g} s "
                f"(mean about {ceiling / 2:g} s)")


EXERCISES = [
    Exercise("worker_pool", 3, test_worker_pool, timeout=30,
             waits_for="the pool's worker threads to run the tasks and end"),
    Exercise("fair_priority_queue", 3, test_fair_priority_queue, timeout=20,
             waits_for="get() to return items put from other threads"),
    Exercise("retry", 2, test_retry, timeout=20),
]
