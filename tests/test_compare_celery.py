"""Celery as a lesson 08 candidate: its own worker command, on the course's Redis."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis

from shared.compare.base import kill_mid_batch
from shared.compare.celery_queue import CeleryCandidate


@pytest.fixture
def candidate(redis_url):
    made = []

    def start(**options) -> CeleryCandidate:
        made.append(CeleryCandidate(redis_url, concurrency=2, **options).start())
        return made[-1]
    yield start
    for one in made:
        one.stop()
        assert one.leftovers().total == 0, f"{one.name} left {one.leftovers()}"


def test_every_job_runs_once_and_stop_leaves_nothing(candidate):
    celery = candidate()
    ids = [f"n{i}" for i in range(10)]
    for job_id in ids:
        celery.enqueue("noop", job_id)
    deadline = time.monotonic() + 10
    while celery.runs().finished.keys() != set(ids):
        assert time.monotonic() < deadline, f"waited 10 s for 10 noop jobs: {celery.runs()}"
        time.sleep(0.05)
    time.sleep(0.2)  # nothing more runs
    runs = celery.runs()
    assert set(runs.started.values()) == {1} and set(runs.finished.values()) == {1}


def test_the_wire_format_is_json_naming_the_task_with_a_base64_json_body(candidate):
    envelope = json.loads(candidate().message_bytes())
    assert envelope["content-type"] == "application/json"
    assert envelope["headers"]["task"] == "noop"
    assert envelope["properties"]["body_encoding"] == "base64"
    args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    assert args == ["wire"] and kwargs == {}


def test_by_default_the_jobs_cut_off_are_gone_and_the_prefetched_wait_in_unacked(candidate,
                                                                                  redis_url):
    celery = candidate(sleep_seconds=0.5)
    result = kill_mid_batch(celery, jobs=6, seconds=0.5, deadline=3)
    assert result.in_flight >= 1 and result.duplicated == 0, result
    client = redis.Redis.from_url(redis_url)
    try:
        parked = client.hlen(f"{celery.prefix}:unacked")  # back only after visibility_timeout
    finally:
        client.close()
    finished = len(celery.runs().finished)
    # acked as a pool process took them (acks early), so never delivered again: those cut off,
    # and those a process took in the moment before the kill, before their body recorded a start
    gone = 6 - parked - finished
    assert result.stuck >= result.in_flight >= 1 and gone >= result.in_flight, (result, parked, finished)


def test_acking_late_with_a_short_visibility_timeout_runs_every_job(candidate):
    # about 7 s on a quiet machine (5 s visibility_timeout, then a 1 s restore sweep); a loaded
    # one needs more, so the deadline is generous: the function returns once all are done
    result = kill_mid_batch(candidate(reliable=True, sleep_seconds=0.5), jobs=6, seconds=0.5,
                            deadline=40)
    assert result.in_flight >= 1, result
    assert result.unfinished == 0, f"jobs did not finish within 40 s of the kill: {result}"
    assert result.duplicated == result.in_flight, result  # cut off mid-job, so run again
