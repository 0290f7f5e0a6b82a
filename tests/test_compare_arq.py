"""arq as a lesson 08 candidate: its own worker command, on the course's Redis."""

from __future__ import annotations

import pickle
import time

import pytest

from shared.compare.arq_queue import ArqCandidate


@pytest.fixture
def candidate(redis_url):
    made = []

    def start(**options) -> ArqCandidate:
        made.append(ArqCandidate(redis_url, concurrency=2, **options).start())
        return made[-1]
    yield start
    for one in made:
        one.stop()
        assert one.leftovers().total == 0, f"{one.name} left {one.leftovers()}"


def test_every_job_runs_once_and_stop_leaves_nothing(candidate):
    arq = candidate()
    ids = [f"n{i}" for i in range(10)]
    for job_id in ids:
        arq.enqueue("noop", job_id)
    deadline = time.monotonic() + 8
    while arq.runs().finished.keys() != set(ids):
        assert time.monotonic() < deadline, f"waited 8 s for 10 noop jobs: {arq.runs()}"
        time.sleep(0.05)
    time.sleep(0.6)  # more than one poll (0.5 s): nothing runs again
    runs = arq.runs()
    assert set(runs.started.values()) == {1} and set(runs.finished.values()) == {1}


def test_the_wire_format_is_a_pickle_naming_the_function(candidate):
    raw = candidate().message_bytes()
    assert raw.startswith(b"\x80"), raw[:16]  # a pickle's PROTO opcode
    # bytes this test just made; from anyone who can write to Redis, loading a pickle runs
    # their code, and the worker does exactly this (arq.jobs.deserialize_job_raw)
    body = pickle.loads(raw)  # noqa: S301
    assert body["f"] == "noop" and body["a"] == ("wire",) and body["k"] == {}
    assert isinstance(body["et"], int)  # the enqueue time, in ms
