"""The dramatiq mode's parts: message id = job id, the status middleware, results,
the pickup measurement, and a run that leaves nothing behind in Redis.

Retries, dead letters and requeue through the app: ``tests/test_retries.py`` (its end).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import dramatiq
import psutil
import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Middleware, Retries

from shared.app import create_app, state
from shared.codelines import code_lines, package_modules
from shared.modes.dramatiq.broker import BrokerConfig, job_message, namespace_keys
from shared.job import Job, new_jobs, run_attempt
from shared.modes.dramatiq.status import StoreStatus
from shared.pickup import idle_seconds_to_reach_cap, measure_pickup
from shared.processes import wait_until
from shared.redis_server import redis_url
from shared.smtp_sink import SmtpSink, refuse_share
from shared.settings import Settings
from shared.store import Store

DEADLINE = 30.0


def test_the_message_id_is_the_job_id_and_the_body_is_plain_json():
    [job] = new_jobs("ada@example.com", "r1", kinds=("avatar",))
    message = job_message(job)
    assert message.message_id == job.id
    assert (message.queue_name, message.actor_name) == ("avatars", "avatar")
    assert job_message(new_jobs("ada@example.com", "r1", kinds=("welcome_email",))[0]).queue_name \
        == "email"
    decoded = json.loads(message.encode())
    assert decoded["args"] == [{"id": job.id, "kind": "avatar", "email": "ada@example.com",
                                "request_id": "r1", "enqueued_at": job.enqueued_at}]


def test_broker_config_travels_in_the_environment_and_bad_values_are_named():
    config = BrokerConfig.fresh(heartbeat_timeout=1500, maintenance_chance=7, email_max_retries=3,
                                email_min_backoff=20, email_max_backoff=40)
    assert BrokerConfig.from_env(config.to_env()) == config
    assert BrokerConfig.fresh().namespace != BrokerConfig.fresh().namespace
    with pytest.raises(ValueError, match="DEFER_DRAMATIQ_HEARTBEAT_TIMEOUT='soon' is not a valid int"):
        BrokerConfig.from_env({"DEFER_DRAMATIQ_HEARTBEAT_TIMEOUT": "soon"})


@pytest.mark.parametrize("options, word", [
    ({"workers": 0}, "option workers must be a whole number >= 1"),
    ({"threads": "4"}, "option threads must be a whole number"),
    ({"max_retries": -1}, "option max_retries must be a whole number >= 0"),
    ({"min_backoff": 0}, "option min_backoff must be a whole number >= 1"),
    ({"min_backoff": 500, "max_backoff": 100}, r"max_backoff \(100 ms\) must be >= min_backoff"),
    ({"email_max_retries": 2}, "no option email_max_retries"),
    ({"processes": 2}, "no option processes")])
def test_bad_options_get_a_clear_message_and_start_nothing(options, word):
    redis_url()  # the course's Redis may start now; a worker group must not
    children = set(psutil.Process().children(recursive=True))
    with pytest.raises(ValueError, match=word):
        create_app("dramatiq", redis_url=redis_url(), smtp_port=1, **options)
    assert not {p for p in psutil.Process().children(recursive=True) if p.is_running()} - children


class _Snapshots(Middleware):
    """First in the list, so its after-hooks run last: it sees what StoreStatus wrote."""

    def __init__(self, store: Store) -> None:
        self.store, self.seen = store, []

    def _snap(self, message):
        job = self.store.job(message.message_id)
        self.seen.append((job.status, job.attempts, job.error))

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._snap(message)

    def after_nack(self, broker, message):
        self._snap(message)


def _stub_run(tmp_path, job, actor_fn, send, **actor_options):
    """Run one message on a StubBroker with StoreStatus before Retries, in-process."""
    store = Store(tmp_path / "store.sqlite3")
    store.add_jobs([job])
    broker = StubBroker()
    status = StoreStatus(store)
    snapshots = _Snapshots(store)
    broker.add_middleware(snapshots, before=AgeLimit)
    broker.add_middleware(status, before=Retries)
    actor = dramatiq.actor(lambda *args: actor_fn(store, status, *args), broker=broker,
                           actor_name=job.kind, **actor_options)
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.enqueue(send(actor).copy(message_id=job.id))
        try:
            broker.join(actor.queue_name, timeout=10_000)
        except Exception:  # noqa: BLE001 - a failed message re-raises here; the store says why
            pass
        worker.join()
    finally:
        worker.stop()
    try:
        return store.job(job.id), snapshots.seen, store.spans()
    finally:
        store.close()


def test_the_middleware_fails_a_job_whose_message_never_reached_the_work(tmp_path):
    """A StubBroker and an in-process worker: no Redis needed for the middleware's logic."""
    [job] = new_jobs("ada@example.com", "r1", kinds=("avatar",))

    def avatar(store, status, fields):
        raise KeyError("email")  # as if the arguments were not a job

    final, seen, spans = _stub_run(tmp_path, job, avatar, lambda a: a.message({}), max_retries=0)
    assert (final.status, final.attempts, final.error) == ("failed", 1, "KeyError: 'email'")
    assert seen == [("running", 1, None), ("failed", 1, "KeyError: 'email'")]  # after_process, nack
    assert spans == []  # the work never ran


def test_the_middleware_shows_a_retry_as_queued_with_its_error_then_done(tmp_path, monkeypatch):
    """The actor only runs the work (run_attempt records the span); the middleware writes
    queued after each refused attempt, because Retries has re-enqueued it, then done."""
    [job] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
    failures = [ConnectionRefusedError(111, "Connection refused")] * 2

    def send_welcome_email(*args, **kwargs):
        if failures:
            raise failures.pop()

    monkeypatch.setattr("shared.jobs.send_welcome_email", send_welcome_email)

    def welcome_email(store, status, fields):
        run_attempt(Job.from_json(json.dumps(fields)), store, Settings(), status.attempt())

    final, seen, spans = _stub_run(tmp_path, job, welcome_email,
                                   lambda a: a.message(json.loads(job.to_json())),
                                   max_retries=5, min_backoff=10, max_backoff=20)
    refused = "ConnectionRefusedError: [Errno 111] Connection refused"
    assert seen == [("queued", 1, refused), ("queued", 2, refused), ("done", 3, None)]
    assert (final.status, final.attempts, final.error) == ("done", 3, None)
    assert [(span.attempt, span.error) for span in spans] == [(1, refused), (2, refused), (3, None)]


def test_the_middleware_fails_a_job_given_up_with_the_reason(tmp_path):
    [job] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))

    def welcome_email(store, status, fields):
        raise RuntimeError("a bug, not worth a retry")

    final, seen, _ = _stub_run(tmp_path, job, welcome_email,
                               lambda a: a.message(json.loads(job.to_json())),
                               retry_when=lambda retries, exc: isinstance(exc, OSError),
                               min_backoff=10)
    why = "RuntimeError: a bug, not worth a retry"
    assert seen == [("running", 1, None), ("failed", 1, why)]
    assert (final.status, final.attempts, final.error) == ("failed", 1, why)


def test_a_run_reports_status_and_results_then_leaves_no_key_and_no_process(fast_sink):
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host, smtp_port=fast_sink.port, workers=1,
                     threads=2)
    runner, store = state(app).runner, state(app).store
    try:
        [ok] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
        [broken] = new_jobs("ada@example.com", "r2", kinds=("avatar",))
        store.add_jobs([ok, broken])
        runner.submit(ok)
        runner.broker.enqueue(Message(queue_name="avatars", actor_name="avatar",
                                      args=({"id": broken.id},), kwargs={}, options={},
                                      message_id=broken.id))
        assert runner.wait(DEADLINE), store.counts()
        result = runner.result(ok.id, timeout=DEADLINE)
        assert (result["job"], result["kind"]) == (ok.id, "welcome_email")
        assert result["pid"] in [p.pid for p in runner.worker_processes()]
        assert store.job(ok.id).status == "done"
        failed = store.job(broken.id)
        assert failed.status == "failed" and failed.error.startswith("BadJob: expected a JSON object")
        namespace = runner.broker_config.namespace
        kept = namespace_keys(runner.settings.redis_url, namespace)
        assert f"{namespace}.results:email:welcome_email:{ok.id}" in kept, kept
        assert f"{namespace}:avatars.XQ" in kept, kept  # the broken message's dead letter
        groups = runner.pids
        workers = runner.worker_processes()
    finally:
        closed = state(app).close(timeout=DEADLINE)
    assert closed.unfinished == 0
    assert _scan(runner.settings.redis_url, f"{namespace}*") == []  # not even a result key
    assert not [pid for pid in groups if psutil.pid_exists(pid)]
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_emails_and_avatars_have_their_own_queue_and_worker_group(fast_sink):
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host, smtp_port=fast_sink.port, workers=1,
                     threads=2)
    runner = state(app).runner
    try:
        assert [group.queues for group in runner.groups] == [("email",), ("avatars",)]
        assert len(set(runner.pids)) == 2
        runner.wait_ready(DEADLINE)
        by_group = {group.name: {p.pid for p in group.worker_processes()} for group in runner.groups}
        assert len(by_group["email"]) == 1 and len(by_group["avatars"]) == 1, by_group
        banner = runner.describe()
        assert "welcome emails have their own queue and worker group" in banner
        for group in runner.groups:  # each group's real flags, its main and worker pids
            [worker] = by_group[group.name]
            assert (f"`dramatiq shared.modes.dramatiq.actors --queues {group.queues[0]} -p 1 "
                    f"-t {group.threads} --worker-shutdown-timeout 5000` (pid {group.pid}, "
                    f"workers {worker})") in banner, banner
    finally:
        state(app).close(timeout=DEADLINE)


def test_a_welcome_email_does_not_wait_behind_a_backlog_of_avatars(fast_sink):
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host, smtp_port=fast_sink.port, workers=1,
                     threads=1)
    runner, store = state(app).runner, state(app).store
    try:
        runner.wait_ready(DEADLINE)
        avatars = [new_jobs(f"a{n}@example.com", f"a{n}", kinds=("avatar",))[0] for n in range(30)]
        [email] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
        store.add_jobs([*avatars, email])
        for job in [*avatars, email]:  # the email is sent last
            runner.submit(job)
        wait_until(lambda: store.job(email.id).status == "done", DEADLINE, "the email job",
                   interval=0.01)
        avatars_done = sum(store.job(job.id).status == "done" for job in avatars)
        assert runner.wait(DEADLINE * 2), store.counts()
    finally:
        state(app).close(timeout=DEADLINE)
    assert avatars_done < len(avatars) // 2, f"{avatars_done} avatars ran before the email"


def test_a_provider_refusing_half_the_attempts_still_gets_every_address_once():
    """Lesson 06's retry policy in the mode: refused attempts are retried, none is sent twice."""
    emails = [f"r{n}@example.com" for n in range(6)]
    with SmtpSink(delay=0.0, refuse=refuse_share(0.5, seed=7)) as sink:
        # The policy's retry decision, on a 20-200 ms backoff instead of 0.5-10 s.
        app = create_app("dramatiq", redis_url=redis_url(), smtp_host=sink.host, smtp_port=sink.port, workers=1,
                         threads=2, min_backoff=20, max_backoff=200)
        runner, store = state(app).runner, state(app).store
        try:
            ids = []
            for n, email in enumerate(emails):
                jobs = new_jobs(email, f"r{n}", kinds=("welcome_email",))
                store.add_jobs(jobs)
                for job in jobs:
                    runner.submit(job)
                ids += [job.id for job in jobs]
            assert runner.wait(90.0), f"waited 90 s for every email job: {store.counts()}"
            statuses = {store.job(i).status for i in ids}
            assert statuses == {"done"}, [store.job(i) for i in ids]
            mailed = sorted(m.recipients[0] for m in sink.inbox)
            refused = [a for a in sink.attempts if a.refused]
            retried = [store.job(i) for i in ids if store.job(i).attempts > 1]
        finally:
            state(app).close(timeout=DEADLINE)
    assert mailed == sorted(emails)  # every address, exactly once
    assert refused and retried, "the sink refused nothing: the test proved no retry"
    assert len(refused) == sum(job.attempts - 1 for job in retried)


def test_a_job_waiting_for_its_retry_shows_queued_with_its_error_then_failed_when_given_up(
        closed_port):
    """No provider at all: each attempt is refused; two retries, then dead-lettered."""
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host="127.0.0.1", smtp_port=closed_port, workers=1,
                     threads=1, max_retries=2, min_backoff=50, max_backoff=100)
    runner, store = state(app).runner, state(app).store
    try:
        [job] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
        store.add_jobs([job])
        runner.submit(job)
        seen = set()

        def failed() -> bool:
            status = store.job(job.id)
            if status.status == "queued" and status.attempts >= 1:
                seen.add((status.attempts, status.error))
            return status.status == "failed"

        wait_until(failed, DEADLINE, "the job to fail")
        status = store.job(job.id)
        assert status.attempts == 3 and "Connection refused" in status.error
        assert any("Connection refused" in error for _, error in seen), seen
    finally:
        state(app).close(timeout=DEADLINE)


def _scan(url: str, pattern: str) -> list[bytes]:
    """The keys a real SCAN finds, with a pattern wider than the cleaner's."""
    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def test_a_lower_worker_timeout_picks_jobs_up_sooner_and_polls_more():
    prefix = f"test-pickup-{uuid.uuid4().hex[:8]}"
    default, lowered = measure_pickup(redis_url(), [1000, 20], queues=6, prefix=prefix)
    assert len(default.waits) == len(lowered.waits) == 6
    assert default.p50 > 3 * lowered.p50, (default.waits, lowered.waits)
    assert lowered.idle_calls_per_second > 5 * default.idle_calls_per_second
    client = redis.Redis.from_url(redis_url())
    try:
        assert not list(client.scan_iter(f"{prefix}*")), "measure_pickup left keys in Redis"
    finally:
        client.close()


def test_idle_time_to_reach_the_cap_grows_with_the_cap():
    assert idle_seconds_to_reach_cap(20) == 0.5  # never less than the counting window
    assert 1.5 < idle_seconds_to_reach_cap(1000) < 3
    with pytest.raises(ValueError, match="milliseconds"):
        measure_pickup(redis_url(), [0])


def test_code_lines_skip_blanks_comments_and_docstrings(tmp_path, monkeypatch):
    package = tmp_path / "counted"
    package.mkdir()
    (package / "__init__.py").write_text('"""Doc\nstring."""\n\nX = 1  # one\n# only a comment\n')
    (package / "demo.py").write_text("def f():\n    '''doc'''\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert code_lines("counted") == 1
    assert code_lines("counted.demo") == 2
    assert package_modules("counted", skip=("demo",)) == ["counted"]
    with pytest.raises(ValueError, match="no module named 'nowhere_at_all'"):
        code_lines("nowhere_at_all")


def test_closing_the_course_broker_closes_its_redis_connections(redis_url):
    """Dramatiq's RedisBroker.close() does nothing; the course's broker closes its sockets."""
    from shared.modes.dramatiq.broker import BrokerConfig, make_broker

    broker = make_broker(redis_url, BrokerConfig.fresh())
    broker.client.ping()
    backend_client = broker.get_results_backend().client
    backend_client.ping()
    assert broker.client.connection_pool._created_connections >= 1
    broker.close()
    for client in (broker.client, backend_client):
        pool = client.connection_pool
        assert all(c._sock is None for c in pool._available_connections), "a socket stayed open"


# -- lesson 07: load shedding and the workers' CPU priority -------------------------------


def _finish(store: Store, jobs: list[Job]) -> None:
    for job in jobs:
        store.start_attempt(job.id)
        store.end_attempt(job.id, "done")


def test_the_backlog_is_unfinished_jobs_over_their_recent_rate_or_a_generous_guess_without_one():
    from shared.modes.dramatiq.shedding import MIN_COMPLETIONS, read_backlogs  # noqa: PLC0415

    store = Store.fresh()
    try:
        jobs = [new_jobs(f"b{n}@example.com", f"b{n}", kinds=("avatar",))[0] for n in range(20)]
        store.add_jobs(jobs)
        with sqlite3.connect(store.path) as db:
            [before] = read_backlogs(db)
            assert (before.kind, before.unfinished, before.measured) == ("avatar", 20, False)
            # no rate yet: one job per oldest_age seconds, so 20 jobs are 20 ages of work
            assert before.seconds == pytest.approx(20 * before.oldest_age)
            _finish(store, jobs[:MIN_COMPLETIONS + 2])
            [after] = read_backlogs(db)
        assert after.unfinished == 20 - MIN_COMPLETIONS - 2 and after.measured
        assert after.seconds == pytest.approx(after.unfinished / after.rate)
    finally:
        store.remove()


def test_shedding_refuses_past_its_bound_with_a_retry_after_and_never_when_off():
    from shared.modes.base import QueueFull  # noqa: PLC0415
    from shared.modes.dramatiq.shedding import Shedding  # noqa: PLC0415

    store = Store.fresh()
    try:
        store.add_jobs([new_jobs(f"s{n}@example.com", f"s{n}", kinds=("avatar",))[0]
                        for n in range(5)])
        with sqlite3.connect(store.path) as db:  # the oldest job 4 s old, nothing finished
            db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 4")
        off, on = Shedding(store.path, 0), Shedding(store.path, 10)
        off.check()  # 0: never refuses
        with pytest.raises(QueueFull, match="too much work queued: 5 avatar jobs") as refused:
            on.check()
        assert refused.value.retry_after >= 10 and on.refused == 1
        off.close()
        on.close()
    finally:
        store.remove()


def test_signups_let_in_while_nothing_is_unfinished_still_count_against_the_bound():
    # a crowd that starts when the last jobs are done: the kind has a pace and no backlog row
    from shared.modes.base import QueueFull  # noqa: PLC0415
    from shared.modes.dramatiq.shedding import MIN_COMPLETIONS, Shedding, read_backlogs  # noqa: PLC0415

    store = Store.fresh()
    try:
        jobs = [new_jobs(f"d{n}@example.com", f"d{n}", kinds=("avatar",))[0]
                for n in range(MIN_COMPLETIONS)]
        store.add_jobs(jobs)
        _finish(store, jobs)
        with sqlite3.connect(store.path) as db:
            [idle] = read_backlogs(db)
        assert (idle.kind, idle.unfinished, idle.measured, idle.seconds) == ("avatar", 0, True, 0.0)
        shedding = Shedding(store.path, 1.0)
        admitted = 0
        with pytest.raises(QueueFull):
            for _ in range(10_000):
                shedding.check()
                admitted += 1
        assert admitted <= idle.rate * 1.0 + 1  # about the bound's worth at that pace, not all
        shedding.close()
    finally:
        store.remove()


def test_signups_let_in_between_two_reads_of_the_store_count_against_the_bound():
    from shared.modes.base import QueueFull  # noqa: PLC0415
    from shared.modes.dramatiq.shedding import REFRESH_SECONDS, Shedding  # noqa: PLC0415

    store = Store.fresh()
    try:
        store.add_jobs([new_jobs("a@example.com", "a", kinds=("avatar",))[0]])
        with sqlite3.connect(store.path) as db:  # 1 job, 1 s old, none finished: 1 s of work
            db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 1")
        shedding = Shedding(store.path, 3.5)
        started = time.monotonic()
        for _ in range(3):  # 1, 2 and 3 s of work, counting the signups let in: under 3.5 s
            shedding.check()
        with pytest.raises(QueueFull):  # 4 s: nothing new in the store, but refused
            shedding.check()
        assert time.monotonic() - started < REFRESH_SECONDS, "too slow to test between reads"
        shedding.close()
    finally:
        store.remove()


def test_an_orphan_row_queued_for_good_does_not_refuse_every_signup_forever(caplog):
    # A job whose message was lost stays 'queued' in the store. Nothing finishes, so there is no
    # measured rate: the guess must not count that row, or its age would grow into ever more
    # seconds of work, every signup be refused, and nothing ever finish again.
    from shared.modes.dramatiq.shedding import RATE_WINDOW_SECONDS, Shedding, read_backlogs  # noqa: PLC0415

    store = Store.fresh()
    try:
        orphan = new_jobs("orphan@example.com", "o", kinds=("avatar",))[0]
        store.add_jobs([orphan])
        with sqlite3.connect(store.path) as db:  # queued 600 s ago, never sent
            db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 600")
            [backlog] = read_backlogs(db)
        assert (backlog.unfinished, backlog.stale, backlog.seconds) == (1, 1, 0.0)
        assert backlog.oldest_age > RATE_WINDOW_SECONDS
        shedding = Shedding(store.path, 5)
        with caplog.at_level("WARNING", logger="shared.modes.dramatiq.shedding"):
            for _ in range(3):
                shedding.check()  # admitted
                shedding._read_at = -math.inf  # read the store again each time
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "leaves out 1 avatar jobs" in warnings[0], warnings
        # a fresh burst next to the orphan is still judged on the guess, and refused past it
        store.add_jobs([new_jobs(f"n{n}@example.com", f"n{n}", kinds=("avatar",))[0]
                        for n in range(10)])
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 2 WHERE email != ?",
                       ("orphan@example.com",))
            [burst] = read_backlogs(db)
        assert burst.counted == 10 and burst.seconds == pytest.approx(20, rel=0.05)
        shedding.close()
    finally:
        store.remove()


def test_a_shedding_app_lets_signups_in_again_past_an_orphan_row(fast_sink):
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=1, max_backlog_seconds=5)
    store = state(app).store
    try:
        store.add_jobs([new_jobs("lost@example.com", "l", kinds=("avatar",))[0]])  # no message
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 600")
        with app.test_client() as client:
            answers = [client.post("/signup", json={"email": f"after{n}@example.com"})
                       for n in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202]
        state(app).runner.wait_ready(DEADLINE)
        wait_until(lambda: store.counts()["done"] == 6, DEADLINE, "the 3 signups' jobs to run")
        assert store.counts()["queued"] == 1  # the orphan: its message was never sent
    finally:
        state(app).close(timeout=1)


def test_a_shedding_app_answers_503_with_retry_after_and_keeps_no_refused_signup(fast_sink):
    settings = Settings(smtp_host=fast_sink.host, smtp_port=fast_sink.port, avatar_canvas=3000)
    app = create_app("dramatiq", settings=settings, redis_url=redis_url(), workers=1, threads=1,
                     max_backlog_seconds=1)
    runner, store = state(app).runner, state(app).store
    try:
        assert "answers 503" in runner.describe()
        with app.test_client() as client:
            answers = [client.post("/signup", json={"email": f"shed{n}@example.com"})
                       for n in range(60)]
            # the first ones go through: nothing is queued yet
            assert answers[0].status_code == 202
            refused = [a for a in answers if a.status_code == 503]
            assert refused, "60 signups at once never found the backlog past 1 s"
            assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
            accepted = sum(a.status_code == 202 for a in answers)
            assert store.counts()["queued"] + store.counts()["running"] + store.counts()["done"] \
                == 2 * accepted  # a refused signup left no job behind
    finally:
        state(app).close(timeout=1)


def test_a_refused_signup_writes_nothing_so_the_outbox_relay_cannot_send_its_jobs(fast_sink):
    # The relay may claim and send an outbox row as soon as it is committed. Play that race out
    # every time: after each account's commit, the relay runs a pass at once. A refused signup
    # must not have been committed at all (shedding refuses before the account is written).
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=1, outbox=1,
                     max_backlog_seconds=1)
    runner, store = state(app).runner, state(app).store
    try:
        store.add_jobs([new_jobs(f"old{n}@example.com", f"o{n}", kinds=("avatar",))[0]
                        for n in range(5)])  # in the store only: 5 unfinished, none finished
        with sqlite3.connect(store.path) as db:  # the oldest 4 s old: 20 s of work, past 1 s
            db.execute("UPDATE jobs SET enqueued_at = enqueued_at - 4")
        committed = []
        create_account = store.create_account

        def commit_then_relay(email, jobs=(), **kwargs):
            create_account(email, jobs, **kwargs)
            committed.append(email)
            runner.relay.relay_once()  # the relay wins the race to the fresh rows

        store.create_account = commit_then_relay
        with app.test_client() as client:
            answer = client.post("/signup", json={"email": "late@example.com"})
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
        assert committed == [] and runner.relay.sent == 0
        assert store.account("late@example.com") is None and store.unsent() == 0
    finally:
        state(app).close(timeout=1)


def test_a_nice_option_lowers_every_worker_process_and_is_checked(fast_sink):
    from shared.modes.dramatiq.niceness import priority_of  # noqa: PLC0415

    with pytest.raises(ValueError, match="option nice must be 0 to 19"):
        create_app("dramatiq", redis_url=redis_url(), nice=20)
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=1, nice=7)
    runner = state(app).runner
    try:
        runner.wait_ready(DEADLINE)
        assert "worker groups at nice 7" in runner.describe()
        processes = [psutil.Process(pid) for pid in runner.pids] + runner.worker_processes()
        assert len(processes) == 4
        for process in processes:
            nice, autogroup = priority_of(process.pid)
            assert nice == 7 and autogroup in (None, 7), (process, nice, autogroup)
    finally:
        state(app).close(timeout=DEADLINE)


THREADED = ("import threading, time\n"
            "ready = threading.Event()\n"
            "for _ in range(3):\n"
            "    threading.Thread(target=lambda: (ready.set(), time.sleep(60)), daemon=True).start()\n"
            "ready.wait()\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="per-thread nice: Linux only")
def test_lower_priority_lowers_every_thread_already_running_and_priority_of_sees_the_least_nice():
    import subprocess  # noqa: PLC0415

    from shared.modes.dramatiq.niceness import lower_priority, priority_of  # noqa: PLC0415

    child = subprocess.Popen([sys.executable, "-c", THREADED], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)  # its own session: its own autogroup
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        tids = [int(t.name) for t in Path(f"/proc/{child.pid}/task").iterdir()]
        assert len(tids) == 4  # the main thread and three started before the call
        # psutil's nice() (setpriority of the pid) lowers the main thread only
        psutil.Process(child.pid).nice(3)
        nices = {tid: os.getpriority(os.PRIO_PROCESS, tid) for tid in tids}
        assert nices[child.pid] == 3 and sorted(nices.values()) == [0, 0, 0, 3]
        assert priority_of(child.pid)[0] == 0  # the least nice thread
        lower_priority(child.pid, 9)
        assert {os.getpriority(os.PRIO_PROCESS, tid) for tid in tids} == {9}
        nice, autogroup = priority_of(child.pid)
        assert nice == 9 and autogroup in (None, 9)
    finally:
        child.kill()
        child.wait()


def test_lower_priority_logs_an_autogroup_it_cannot_write(monkeypatch, caplog):
    from shared.modes.dramatiq import niceness  # noqa: PLC0415

    child = subprocess_sleeper()
    try:
        monkeypatch.setattr(niceness, "autogroups_on", lambda: True)

        def refuse(self, text):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(niceness.Path, "write_text", refuse)
        with caplog.at_level("WARNING", logger="shared.modes.dramatiq.niceness"):
            niceness.lower_priority(child.pid, 5)  # no crash
        assert "could not lower the autogroup" in caplog.text
        assert psutil.Process(child.pid).nice() == 5
        niceness.lower_priority(999_999_999, 5)  # no such process: nothing to do, no crash
    finally:
        child.kill()
        child.wait()


def subprocess_sleeper():
    import subprocess  # noqa: PLC0415

    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)


# -- metrics (lesson 07): off by default, on 127.0.0.1 when asked ---------------------------------

def test_metrics_are_off_by_default_and_the_option_is_checked(tmp_path):
    from shared.modes.dramatiq.metrics import add_metrics, group_env  # noqa: PLC0415

    with pytest.raises(ValueError, match="option metrics must be 0 or 1, got 2"):
        create_app("dramatiq", redis_url=redis_url(), smtp_port=1, metrics=2)
    stub = StubBroker()
    assert add_metrics(stub, {}) is False
    assert not any(type(m).__name__ == "Prometheus" for m in stub.middleware)
    env = group_env(9999, tmp_path)
    assert env["dramatiq_prom_host"] == "127.0.0.1" and env["dramatiq_prom_port"] == "9999"
    assert env["dramatiq_prom_db"] == str(tmp_path)


def test_make_serve_turns_metrics_on_for_the_dramatiq_mode_only(fast_sink):
    from shared.serve import _metrics_lines, _mode_options, _parse  # noqa: PLC0415

    assert _mode_options(_parse(["--mode", "dramatiq"]))["metrics"] == 1
    assert "metrics" not in _mode_options(_parse(["--mode", "blocking"]))
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=1)
    try:
        assert state(app).runner.metrics_urls == {}
        assert _metrics_lines(state(app).runner) == ""
    finally:
        state(app).close(timeout=DEADLINE)
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=1, metrics=1)
    try:
        lines = _metrics_lines(state(app).runner).splitlines()
        assert [line.split()[1].startswith("http://127.0.0.1:") for line in lines] == [True, True]
    finally:
        state(app).close(timeout=DEADLINE)

