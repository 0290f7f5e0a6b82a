"""The thread-queue mode beyond the common contract: bound, 503, order, retries, stopping."""

import threading
import time

import httpx
import pytest

from shared.app import create_app, state
from shared.job import new_jobs
from shared.modes import QueueFull
from shared.modes.thread_pool import DROPPED, ThreadQueue
from shared.processes import wait_until
from shared.settings import Settings
from shared.smtp_sink import SmtpSink, refuse_first
from shared.web import BackgroundServer

DEADLINE = 30.0
SMALL = Settings(avatar_canvas=300)  # a cheap avatar: these tests are about the queue


def _runner(store, sink, **options):
    settings = Settings(smtp_port=sink.port, store_path=str(store.path), avatar_canvas=300)
    return ThreadQueue(store, settings, **options)


def _signup(store, runner, email):
    jobs = new_jobs(email, email.split("@")[0])
    store.create_account(email, jobs)
    runner.submit_all(jobs)
    return jobs


def _worker_threads():
    return [t for t in threading.enumerate() if t.name.startswith("thread-queue-worker")]


def test_a_signup_goes_in_whole_or_not_at_all(store, fast_sink):
    runner = _runner(store, fast_sink, queue_size=3, start_workers=False)
    try:
        _signup(store, runner, "a@example.com")
        with pytest.raises(QueueFull, match=r"full \(2 of 3 places taken; this signup needs 2\)") as refused:
            _signup(store, runner, "b@example.com")  # 2 jobs, room for 1: neither goes in
        assert refused.value.retry_after >= 1
        assert runner.depth == 2
        runner.submit(new_jobs("c@example.com", "c", ("avatar",))[0])  # one job still fits
        assert runner.depth == 3
    finally:
        runner.close(timeout=0, drain=False)


def test_a_full_queue_answers_503_with_retry_after_and_the_retry_succeeds(fast_sink):
    app = create_app("thread-queue", settings=Settings(smtp_port=fast_sink.port, avatar_canvas=300),
                     workers=1, queue_size=2, start_workers=False)
    try:
        with BackgroundServer(app) as server:
            first = httpx.post(server.url + "/signup", json={"email": "a@example.com"})
            second = httpx.post(server.url + "/signup", json={"email": "b@example.com"})
            assert first.status_code == 202
            assert second.status_code == 503
            assert second.headers["Retry-After"] == "1"
            assert "queue is full" in second.json()["error"]
            store = state(app).store
            # The refused signup left nothing behind: no account, no job stuck "queued".
            assert store.account("b@example.com") is None
            assert [j.email for j in store.jobs()] == ["a@example.com"] * 2
            state(app).runner.start()
            assert state(app).runner.wait(DEADLINE)
            again = httpx.post(server.url + "/signup", json={"email": "b@example.com"})
            assert again.status_code == 202
            assert state(app).runner.wait(DEADLINE)
            assert store.counts() == {"queued": 0, "running": 0, "done": 4, "failed": 0}
    finally:
        state(app).close(DEADLINE)


def _start_order(store):
    jobs = sorted(store.jobs(), key=lambda j: j.started_at)
    return [(j.kind, j.email[0]) for j in jobs]


@pytest.mark.parametrize("priority, expected", [
    (False, [("welcome_email", "a"), ("avatar", "a"), ("welcome_email", "b"), ("avatar", "b"),
             ("welcome_email", "c"), ("avatar", "c")]),
    (True, [("welcome_email", "a"), ("welcome_email", "b"), ("welcome_email", "c"),
            ("avatar", "a"), ("avatar", "b"), ("avatar", "c")]),
])
def test_one_worker_takes_jobs_oldest_first_or_emails_first(store, fast_sink, priority, expected):
    runner = _runner(store, fast_sink, workers=1, priority=priority, start_workers=False)
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        _signup(store, runner, email)
    runner.start()
    assert runner.wait(DEADLINE), "the jobs did not finish"
    assert runner.close(DEADLINE).unfinished == 0
    assert _start_order(store) == expected


def test_enqueued_at_is_when_the_job_joined_the_queue_so_it_sorts_in_queue_order(store, fast_sink):
    runner = _runner(store, fast_sink, workers=1, start_workers=False)
    first, second = new_jobs("a@example.com", "a"), new_jobs("b@example.com", "b")
    store.create_account("a@example.com", first)
    store.create_account("b@example.com", second)
    runner.submit_all(second)  # made second, queued first
    runner.submit_all(first)
    runner.start()
    assert runner.wait(DEADLINE), "the jobs did not finish"
    assert runner.close(DEADLINE).unfinished == 0
    jobs = store.jobs()
    by_enqueued = [j.email[0] for j in sorted(jobs, key=lambda j: j.enqueued_at)]
    by_start = [j.email[0] for j in sorted(jobs, key=lambda j: j.started_at)]
    assert by_enqueued == by_start == ["b", "b", "a", "a"]
    assert all(j.enqueued_at <= j.started_at for j in jobs)


def test_close_drains_the_queue_then_stops_every_worker(store, fast_sink):
    before = len(_worker_threads())
    runner = _runner(store, fast_sink, workers=3, start_workers=False)
    for n in range(5):
        _signup(store, runner, f"u{n}@example.com")
    closed = runner.close(DEADLINE)  # starts the pool, which drains before the sentinels
    assert closed.unfinished == 0
    assert store.counts()["done"] == 10
    assert len(_worker_threads()) == before
    with pytest.raises(QueueFull, match="shutting down"):
        _signup(store, runner, "late@example.com")


def test_close_without_drain_drops_the_queued_jobs_and_says_why(store, fast_sink):
    runner = _runner(store, fast_sink, workers=2, start_workers=False)
    for n in range(4):
        _signup(store, runner, f"u{n}@example.com")
    closed = runner.close(DEADLINE, drain=False)
    assert closed.unfinished == 8 and runner.dropped == 8
    assert {(j.status, j.error) for j in store.jobs()} == {("failed", DROPPED)}
    assert fast_sink.inbox == []


def test_a_close_deadline_drops_what_is_still_queued_and_leaves_nothing_queued(store):
    with SmtpSink(delay=1.0) as slow:
        runner = _runner(store, slow, workers=1)
        for n in range(3):
            _signup(store, runner, f"u{n}@example.com")
        wait_until(lambda: slow.attempts, DEADLINE, "the first email to be sent")
        closed = runner.close(timeout=0.2)
        assert closed.unfinished >= 1  # the email in flight, and what was queued behind it
        wait_until(lambda: not _worker_threads(), 10, "the worker to finish its email and stop")
    counts = store.counts()
    assert counts["queued"] == 0 and counts["running"] == 0
    assert counts["failed"] >= 4 and runner.dropped == counts["failed"]


def test_a_refused_email_is_retried_with_backoff_until_it_is_accepted(store):
    with SmtpSink(delay=0, refuse=refuse_first(2)) as picky:
        runner = _runner(store, picky, retries=3, backoff_base=0.02, backoff_cap=0.1, seed=1)
        [email, avatar] = _signup(store, runner, "ada@example.com")
        assert runner.wait(DEADLINE)
        runner.close(DEADLINE)
        assert [m.recipients for m in picky.inbox] == [("ada@example.com",)]
    status = store.job(email.id)
    assert (status.status, status.attempts) == ("done", 3)
    spans = [s for s in store.spans() if s.job_id == email.id]
    assert [s.attempt for s in spans] == [1, 2, 3]
    assert ["451" in (s.error or "") for s in spans] == [True, True, False]
    assert all(later.start >= earlier.end for earlier, later in zip(spans, spans[1:]))
    assert store.job(avatar.id).attempts == 1


def test_retries_give_up_with_the_last_error(store):
    with SmtpSink(delay=0, refuse=refuse_first(9)) as picky:
        runner = _runner(store, picky, retries=2, backoff_base=0.01, backoff_cap=0.02)
        [email, _] = _signup(store, runner, "ada@example.com")
        assert runner.wait(DEADLINE)
        runner.close(DEADLINE)
    status = store.job(email.id)
    assert (status.status, status.attempts) == ("failed", 3)
    assert "451" in status.error


@pytest.mark.parametrize("options, rule", [
    ({"workers": 0}, "workers to be a whole number >= 1"),
    ({"queue_size": -1}, "queue_size to be a whole number >= 0"),
    ({"retries": 1.5}, "retries to be a whole number >= 0"),
    ({"threads": 4}, "no option threads"),
])
def test_bad_options_name_the_option_and_the_rule(store, options, rule):
    with pytest.raises(ValueError, match=rule):
        ThreadQueue(store, SMALL, **options)


def test_the_banner_line_tells_pool_size_and_bound(store, fast_sink):
    runner = _runner(store, fast_sink, workers=3, queue_size=50, start_workers=False)
    try:
        assert runner.describe().startswith("3 worker threads")
        assert "at most 50 waiting" in runner.describe()
        assert runner.describe().endswith("a full queue answers 503")
    finally:
        runner.close(DEADLINE)


def test_with_no_bound_the_banner_promises_no_503(store, fast_sink):
    runner = _runner(store, fast_sink, queue_size=0, start_workers=False)
    try:
        assert "no bound" in runner.describe()
        assert "503" not in runner.describe()
    finally:
        runner.close(DEADLINE)


def test_accepting_turns_false_as_soon_as_close_begins(store, fast_sink):
    runner = _runner(store, fast_sink, workers=1, start_workers=False)
    _signup(store, runner, "a@example.com")
    assert runner.accepting
    seen = []
    closing = threading.Thread(target=lambda: seen.append(runner.close(DEADLINE)))
    closing.start()
    wait_until(lambda: not runner.accepting, DEADLINE, "close() to begin")
    with pytest.raises(QueueFull, match="shutting down"):
        _signup(store, runner, "b@example.com")
    closing.join(DEADLINE)
    assert seen and seen[0].unfinished == 0


def test_an_app_process_with_held_workers_runs_nothing_until_released(store):
    from shared.app_process import AppProcess  # noqa: PLC0415 - only this test starts a child

    with SmtpSink(delay=0.0) as sink:
        with AppProcess("thread-queue", smtp_port=sink.port, store_path=store.path, workers=1,
                        avatar_canvas=300, hold_workers=True) as app:
            for n in range(3):
                answer = httpx.post(f"{app.url}/signup", json={"email": f"held{n}@example.com"}, timeout=30)
                assert answer.status_code == 202
            time.sleep(0.3)  # time enough for a started worker to take a job
            assert store.counts() == {"queued": 6, "running": 0, "done": 0, "failed": 0}
            app.release_workers()
            wait_until(lambda: store.counts()["done"] == 6, 30, "the released worker to run all 6 jobs")
        assert len(sink.inbox) == 3
