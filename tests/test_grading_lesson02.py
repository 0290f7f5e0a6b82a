"""Lesson 02's exercises: reference answers pass, plausible wrong ones fail with the reason."""

import pytest

from shared.grading import course_cells, registry, runner


def solution(name: str) -> str:
    return course_cells.answers("02_thread_queue.ipynb")[name]


grade = course_cells.grade


WRONG_ANSWERS = [
    # The pool
    ("worker_pool", "daemon=True) for _ in range(workers)]", "daemon=True) for _ in range(1)]",
     "WorkerPool(3) started 1 threads, expected 3"),
    ("worker_pool", "            try:\n                fn(*args)\n            except Exception:\n"
                    "                pass  # a failing task does not stop its worker\n",
     "            fn(*args)\n",
     "waited 5 s for the task after a failing one to run"),
    ("worker_pool", "        if not drain:\n", "        if False:\n",
     "shutdown(drain=False) still ran 5 queued task(s)"),
    ("worker_pool", "        for thread in self._threads:\n            thread.join()\n", "",
     "shutdown() returned, but worker threads are still alive"),
    ("worker_pool", "            if not self._open:\n                raise RuntimeError(\"the pool is shut down\")\n", "",
     "submit() after shutdown() was accepted"),
    ("worker_pool", "        return left\n", "        return left or None\n",  # None for "nothing left"
     "shutdown(drain=True) returned None, expected []"),
    ("worker_pool", "self._tasks: queue.Queue = queue.Queue()", "self._tasks: queue.Queue = queue.LifoQueue()",
     "WorkerPool(1) ran 20 tasks in the order"),
    # The priority queue with aging
    ("fair_priority_queue", "if oldest[3] >= self.max_overtakes:", "if False:",  # a plain priority queue
     "the avatar never came out, overtaken by 10 later emails"),
    ("fair_priority_queue", "chosen = min(range(len(self._waiting)),\n"
                            "                             key=lambda n: (self._waiting[n][1], self._waiting[n][0]))",
     "chosen = 0",  # first in, first out: priority ignored
     "FairPriorityQueue(10): put a:1 b:0 c:1 d:0 e:2 f:0, then get() x6 gave ['a', 'b', 'c', 'd', 'e', 'f']"),
    ("fair_priority_queue", "(self._waiting[n][1], self._waiting[n][0])",
     "(self._waiting[n][1], -self._waiting[n][0])",  # unstable: newest first among equals
     "then get() x6 gave ['f', 'd', 'b', 'c', 'a', 'e']"),
    ("fair_priority_queue", "(self._waiting[n][1], self._waiting[n][0])",
     "(self._waiting[n][1], self._waiting[n][2])",  # a heap of (priority, item): compares the items
     "three dicts put at equal priority: TypeError: '<' not supported"),
    ("fair_priority_queue", "if oldest[3] >= self.max_overtakes:", "if oldest[3] > self.max_overtakes:",
     "the avatar came out after 4 later emails, expected after exactly 3"),
    ("fair_priority_queue", "if entry[0] < arrival:", "if True:",  # ages by every get, not by overtakes
     "get() number"),
    ("fair_priority_queue", "wait_for(lambda: self._waiting, timeout)", "wait_for(lambda: self._waiting)",
     "get(timeout=0.05) on an empty queue was still waiting after 5 s"),
    # Retries
    ("retry", "rng.uniform(0, min(cap, base * 2 ** attempt))", "min(cap, base * 2 ** attempt)",
     "over 1500 runs, waits before retry 1 ranged"),
    ("retry", "rng.uniform(0, min(cap, base * 2 ** attempt))", "rng.uniform(0, base * 2 ** attempt)",
     "before retry"),
    ("retry", "for attempt in range(retries + 1):", "for attempt in range(retries):",
     "fn failing 3 time(s), retries=3: retry returned None after 3 calls"),
    ("retry", "            if attempt == retries:\n                raise\n",
     "            if attempt == retries:\n                raise RuntimeError('gave up')\n",
     "retry raised RuntimeError: gave up after giving up"),
    ("retry", "except retry_on:", "except Exception:",  # retries what will fail again the same way
     "retry_on=(OSError,), fn raising ValueError: fn was called 4 times and retry slept 3 times"),
    ("retry", "            if deadline is not None and waited + delay > deadline:\n"
              "                raise  # this wait would pass the deadline: give up now, with the last error\n", "",
     "the waits added up to"),
    ("retry", "waited + delay > deadline", "waited > deadline",  # one wait too many
     "past the deadline"),
]


@pytest.mark.parametrize("name, old, new, reason", WRONG_ANSWERS)
def test_wrong_answers_fail_with_a_precise_reason(name, old, new, reason):
    source = solution(name)
    olds, news = ([old], [new]) if isinstance(old, str) else (old, new)
    for before, after in zip(olds, news):
        assert before in source, "the reference solution changed: update this case"
        source = source.replace(before, after)
    result = grade(name, source)
    assert not result.passed
    assert reason in result.reason, result.reason
    assert "\n" not in result.reason


UNLOCKED_QUEUE = """
# Exercise: fair_priority_queue
import itertools
import queue
import time


class FairPriorityQueue:
    def __init__(self, max_overtakes):
        self.max_overtakes = max_overtakes
        self._waiting = []
        self._arrival = itertools.count()

    def put(self, item, priority):
        self._waiting.append([next(self._arrival), priority, item, 0])

    def get(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._waiting:  # no lock: another thread may take the item meanwhile
            if deadline is not None and time.monotonic() > deadline:
                raise queue.Empty
            time.sleep(0.001)
        oldest = self._waiting[0]
        if oldest[3] >= self.max_overtakes:
            chosen = oldest
        else:
            chosen = min(self._waiting, key=lambda entry: (entry[1], entry[0]))
        self._waiting.remove(chosen)
        for entry in self._waiting:
            if entry[0] < chosen[0]:
                entry[3] += 1
        return chosen[2]
"""


def test_a_fair_queue_without_a_lock_fails_under_threads():
    """Right in one thread, wrong with several: the grader catches it every time, not by luck."""
    for _ in range(3):
        result = grade("fair_priority_queue", UNLOCKED_QUEUE)
        assert not result.passed
        assert "put() from 4 threads and get() from 2 threads at once raised" in result.reason \
            or "came out twice" in result.reason, result.reason


def test_a_hanging_pool_fails_its_own_exercise_after_its_deadline():
    source = solution("worker_pool").replace("            thread.join()\n",
                                             "            thread.join()\n        threading.Event().wait()\n")
    module_name, exercise = registry.find_exercise("worker_pool")
    result = runner.grade(source, module_name, exercise, "test cell", timeout=3)
    assert not result.passed
    assert result.reason.startswith("stopped after its 3 s deadline"), result.reason


def test_reference_solutions_pass():
    for name in ("worker_pool", "fair_priority_queue", "retry"):
        result = grade(name, solution(name))
        assert (result.passed, result.reason) == (True, ""), name
