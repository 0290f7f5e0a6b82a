"""The contract every way of running jobs keeps. A new mode joins MODES and gets these tests."""

import threading

import httpx
import psutil
import pytest

from shared.app import create_app, state
from shared.modes import MODES, redis_url_for
from shared.processes import wait_until
from shared.web import BackgroundServer

RUNS_JOBS = [mode for mode, runner in MODES.items() if runner.kinds]
DEADLINE = 30.0


def _run(mode: str, smtp_port: int, smtp_host: str = "127.0.0.1", **options):
    app = create_app(mode, redis_url=redis_url_for(mode), smtp_host=smtp_host, smtp_port=smtp_port, **options)
    server = BackgroundServer(app).start()
    return app, server


@pytest.mark.parametrize("mode", RUNS_JOBS)
def test_a_signup_gets_its_email_and_avatar(mode, fast_sink, redis_url):
    # redis_url: the run's shared Redis (maybe an embedded one) runs before the snapshot
    # below; it is not the mode's child.
    threads_before = set(threading.enumerate())
    children_before = set(psutil.Process().children(recursive=True))
    app, server = _run(mode, fast_sink.port)
    try:
        response = httpx.post(server.url + "/signup", json={"email": "ada@example.com"},
                              timeout=DEADLINE)
        assert response.status_code in (201, 202)
        store = state(app).store
        wait_until(lambda: [j.status for j in store.jobs()] == ["done"] * 2, DEADLINE,
                   "both jobs to be done")
        assert store.avatar("ada@example.com").startswith(b"\x89PNG")
        assert store.account("ada@example.com").welcomed
        assert [m.recipients for m in fast_sink.inbox] == [("ada@example.com",)]
        if state(app).runner.tells_job_ids:
            ids = response.json()["jobs"]
            assert sorted(ids) == ["avatar", "welcome_email"]
            for kind, job_id in ids.items():
                status = httpx.get(f"{server.url}/jobs/{job_id}").json()
                assert (status["kind"], status["status"], status["attempts"]) == (kind, "done", 1)
                assert status["enqueued_at"] <= status["started_at"] <= status["finished_at"]
    finally:
        server.stop()
        closed = state(app).close(timeout=DEADLINE)
    assert closed.unfinished == 0
    wait_until(lambda: not {t for t in threading.enumerate() if t.is_alive()} - threads_before,
               10, "the mode's threads to end")
    assert not set(psutil.Process().children(recursive=True)) - children_before


@pytest.mark.parametrize("mode", RUNS_JOBS)
def test_a_down_provider_fails_the_email_job_with_a_readable_error(mode, closed_port):
    # A refused connection is transient: a mode that retries it gets one retry here,
    # so it gives up within the deadline (its default would back off for a minute).
    retries = {"max_retries": 1} if "max_retries" in MODES[mode].options else {}
    app, server = _run(mode, closed_port, **retries)
    try:
        httpx.post(server.url + "/signup", json={"email": "ada@example.com"}, timeout=DEADLINE)
        store = state(app).store
        wait_until(lambda: store.counts()["done"] + store.counts()["failed"] == 2, DEADLINE,
                   "both jobs to finish")
        by_kind = {job.kind: job for job in store.jobs()}
        assert by_kind["welcome_email"].status == "failed"
        assert "Connection refused" in by_kind["welcome_email"].error
        assert by_kind["avatar"].status == "done"  # one job failing does not sink the other
    finally:
        server.stop()
        state(app).close(timeout=DEADLINE)


def test_wait_never_skips_a_job_added_while_it_checked(store):
    """A job queued just after wait() saw everything finished is waited for next time."""
    from shared.job import new_jobs
    from shared.modes.base import Runner
    from shared.settings import Settings

    runner = Runner(store, Settings())
    check = store.progress_since
    calls = []

    def check_then_a_signup_lands(seq):
        answer = check(seq)
        calls.append(answer)
        if len(calls) == 2:  # wait()'s first check, which finds everything finished
            store.add_jobs(new_jobs("late@example.com", "late", kinds=("avatar",)))
        return answer

    store.progress_since = check_then_a_signup_lands
    assert runner.wait(timeout=1.0)
    store.progress_since = check
    assert not runner.wait(timeout=0.1), "the late job is still queued: wait() must not skip it"
