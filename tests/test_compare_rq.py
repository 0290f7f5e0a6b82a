"""RQ as a lesson 08 candidate: its own ``rq worker`` command, on the course's Redis."""

from __future__ import annotations

import pickle
import time
import zlib

import pytest
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared.compare.base import kill_mid_batch
from shared.compare.rq_queue import RqCandidate


@pytest.fixture
def candidate(redis_url):
    made = []

    def start(**options) -> RqCandidate:
        made.append(RqCandidate(redis_url, concurrency=2, **options).start())
        return made[-1]
    yield start
    for one in made:
        one.stop()
        assert one.leftovers().total == 0, f"{one.name} left {one.leftovers()}"


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(0.05)


def test_every_job_runs_once_and_stop_leaves_nothing(candidate):
    rq = candidate()
    ids = [f"n{i}" for i in range(10)]
    for job_id in ids:
        rq.enqueue("noop", job_id)
    wait_for(lambda: rq.runs().finished.keys() == set(ids), 10,
             f"10 noop jobs to finish: {rq.runs()}")
    time.sleep(0.2)  # nothing more runs
    runs = rq.runs()
    assert set(runs.started.values()) == {1} and set(runs.finished.values()) == {1}


def test_the_wire_format_is_a_zlib_compressed_pickle_naming_the_function(candidate):
    data = candidate().message_bytes()
    assert data[:2] == b"x\x9c"  # a zlib stream
    raw = zlib.decompress(data)
    assert raw[:1] == b"\x80"  # a pickle (protocol 2 or later)
    assert b"shared.compare.rq_jobs.noop" in raw
    func_name, instance, args, kwargs = pickle.loads(raw)  # noqa: S301 (bytes this test made)
    assert func_name == "shared.compare.rq_jobs.noop" and instance is None
    assert args[-1] == "wire" and kwargs == {}


def cut_off(rq: RqCandidate) -> list[str]:
    """The jobs whose body began and never ended: check that the kill left each STARTED in the
    StartedJobRegistry, expiring no sooner than a heartbeat's ttl (min(job_timeout,
    job_monitoring_interval) + 60 s) from now."""
    runs = rq.runs()
    stuck = [j for j in runs.started if runs.finished.get(j, 0) == 0]
    registry = StartedJobRegistry(rq.tag, connection=rq.client)
    entries = rq.client.zrange(registry.key, 0, -1, withscores=True)
    now = time.time()
    assert all(score - now > 50 for _, score in entries), entries
    in_registry = {key.decode().split(":")[0] for key, _ in entries}
    assert {f"{rq.tag}-{j}" for j in stuck} <= in_registry, (stuck, in_registry)
    return stuck


def test_by_default_the_jobs_cut_off_are_failed_as_abandoned_and_never_rerun(candidate):
    rq = candidate(sleep_seconds=0.5)
    result = kill_mid_batch(rq, jobs=6, seconds=0.5, deadline=3)
    assert result.stuck >= 1 and result.duplicated == 0, result
    stuck = cut_off(rq)
    # what the registry cleanup does once their heartbeat expired (90 s, and a worker
    # cleans only every 10 min): run it as if 2 minutes had passed
    StartedJobRegistry(rq.tag, connection=rq.client).cleanup(timestamp=time.time() + 120)
    failed = FailedJobRegistry(rq.tag, connection=rq.client).get_job_ids()
    assert {f"{rq.tag}-{j}" for j in stuck} <= set(failed), (stuck, failed)
    time.sleep(1.0)
    runs = rq.runs()
    assert all(j not in runs.finished and runs.started[j] == 1 for j in stuck), runs


def test_with_retries_the_cleanup_puts_the_jobs_cut_off_back_in_the_queue(candidate):
    rq = candidate(reliable=True, sleep_seconds=0.5)
    result = kill_mid_batch(rq, jobs=6, seconds=0.5, deadline=3)
    assert result.stuck >= 1, result
    stuck = cut_off(rq)
    # the workers clean every second, but the entries expire only 61 s after the kill:
    # run the same cleanup as if that time had passed
    StartedJobRegistry(rq.tag, connection=rq.client).cleanup(timestamp=time.time() + 120)
    wait_for(lambda: all(j in rq.runs().finished for j in stuck), 5,
             f"the requeued jobs {stuck} to run again: {rq.runs()}")
    runs = rq.runs()
    assert all(runs.started[j] == 2 and runs.finished[j] == 1 for j in stuck), runs
