"""Huey as a lesson 08 candidate: its own consumer command, on the course's Redis."""

from __future__ import annotations

import os
import pickle
import signal
import time

import pytest

from shared.compare.base import kill_mid_batch
from shared.compare.huey_queue import HueyCandidate


@pytest.fixture
def candidate(redis_url):
    made = []

    def start(**options) -> HueyCandidate:
        made.append(HueyCandidate(redis_url, concurrency=2, **options).start())
        return made[-1]
    yield start
    for one in made:
        one.stop()
        assert one.leftovers().total == 0, f"{one.name} left {one.leftovers()}"


def test_every_job_runs_once_and_stop_leaves_nothing(candidate):
    huey = candidate()
    ids = [f"n{i}" for i in range(10)]
    for job_id in ids:
        huey.enqueue("noop", job_id)
    deadline = time.monotonic() + 10
    while huey.runs().finished.keys() != set(ids):
        assert time.monotonic() < deadline, f"waited 10 s for 10 noop jobs: {huey.runs()}"
        time.sleep(0.05)
    time.sleep(0.2)  # nothing more runs
    runs = huey.runs()
    assert set(runs.started.values()) == {1} and set(runs.finished.values()) == {1}


def test_the_wire_format_is_a_pickle_naming_the_task_by_its_import_path(candidate):
    wire = candidate().message_bytes()
    assert wire[:1] == pickle.PROTO  # Huey's Serializer pickles (huey/serializer.py)
    # our own message from our own key; that anyone who can write it runs code is the lesson
    message = pickle.loads(wire)  # noqa: S301  (a huey.registry.Message namedtuple)
    assert message.name == "shared.compare.huey_jobs.noop"
    assert message.args == ("wire",) and message.kwargs == {}


@pytest.mark.parametrize("reliable", [False, True], ids=["defaults", "retries+interrupted"])
def test_a_kill_9_loses_what_was_running_and_the_queued_run_after_the_restart(candidate,
                                                                              reliable):
    # no ack: the running tasks were popped (BRPOP); retries and SIGNAL_INTERRUPTED need Python
    huey = candidate(reliable=reliable, sleep_seconds=0.5)
    result = kill_mid_batch(huey, jobs=6, seconds=0.5, deadline=6)  # the restart, then 1 s of work
    assert result.in_flight >= 1, result
    # each of the 2 worker threads had popped one; the 4 left in the list ran after the restart
    assert result.unfinished == 2 and result.duplicated == 0, result
    assert 1 <= result.stuck <= 2, result


def test_a_sigterm_sends_signal_interrupted_and_the_handler_puts_the_task_back(candidate):
    huey = candidate(reliable=True, sleep_seconds=0.5)
    ids = [f"t{i}" for i in range(4)]
    for job_id in ids:
        huey.enqueue("sleep", job_id)
    deadline = time.monotonic() + 5
    while len(huey.runs().started) < 2:
        assert time.monotonic() < deadline, f"waited 5 s for 2 jobs to start: {huey.runs()}"
        time.sleep(0.01)
    assert huey.worker is not None
    os.kill(huey.worker.pid, signal.SIGTERM)  # huey_consumer: SIGTERM stops without waiting
    huey.worker.process.wait(5)
    huey.restart_worker()
    deadline = time.monotonic() + 8
    while huey.runs().finished.keys() != set(ids):
        assert time.monotonic() < deadline, f"waited 8 s for the 4 jobs: {huey.runs()}"
        time.sleep(0.05)
    assert max(huey.runs().started.values()) == 2  # the interrupted ran again from the start
