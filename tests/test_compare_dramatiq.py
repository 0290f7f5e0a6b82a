"""Dramatiq as a lesson 08 candidate: its own worker command, on the course's Redis."""

from __future__ import annotations

import json
import time

import pytest

from shared.compare.base import kill_mid_batch
from shared.compare.dramatiq_queue import DramatiqCandidate


@pytest.fixture
def candidate(redis_url):
    made = []

    def start(**options) -> DramatiqCandidate:
        made.append(DramatiqCandidate(redis_url, concurrency=2, **options).start())
        return made[-1]
    yield start
    for one in made:
        one.stop()
        assert one.leftovers().total == 0, f"{one.name} left {one.leftovers()}"


def test_every_job_runs_once_and_stop_leaves_nothing(candidate):
    dramatiq = candidate()
    ids = [f"n{i}" for i in range(10)]
    for job_id in ids:
        dramatiq.enqueue("noop", job_id)
    deadline = time.monotonic() + 15
    while dramatiq.runs().finished.keys() != set(ids):
        assert time.monotonic() < deadline, f"waited 15 s for 10 jobs: {dramatiq.runs()}"
        time.sleep(0.05)
    time.sleep(0.2)  # nothing more runs
    runs = dramatiq.runs()
    assert set(runs.started.values()) == {1} and set(runs.finished.values()) == {1}


def test_the_wire_format_is_json_naming_the_actor(candidate):
    body = json.loads(candidate().message_bytes())
    assert body["actor_name"] == "noop" and body["args"] == ["wire"]


def test_with_a_short_heartbeat_a_killed_workers_jobs_all_run_and_only_the_cut_off_twice(candidate):
    result = kill_mid_batch(candidate(reliable=True, sleep_seconds=0.5), jobs=6, seconds=0.5,
                            deadline=30)
    assert result.in_flight >= 1, result
    assert result.unfinished == 0, f"jobs did not finish within 30 s of the kill: {result}"
    assert result.duplicated == result.in_flight, result  # cut off mid-job, so run again
