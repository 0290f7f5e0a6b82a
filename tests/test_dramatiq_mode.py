"""The dramatiq mode's parts: message id = job id, the status middleware, results,
the pickup measurement, and a run that leaves nothing behind in Redis."""

from __future__ import annotations

import json
import time
import uuid

import dramatiq
import psutil
import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from shared.app import create_app, state
from shared.codelines import code_lines, package_modules
from shared.modes.dramatiq.broker import BrokerConfig, job_message, namespace_keys
from shared.job import new_jobs
from shared.pickup import idle_seconds_to_reach_cap, measure_pickup
from shared.redis_server import redis_url
from shared.smtp_sink import SmtpSink, refuse_share
from shared.status_middleware import StoreStatus
from shared.store import Store
from shared.web import free_port

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
    config = BrokerConfig.fresh(heartbeat_timeout=1500, maintenance_chance=7, email_max_retries=3)
    assert BrokerConfig.from_env(config.to_env()) == config
    assert BrokerConfig.fresh().namespace != BrokerConfig.fresh().namespace
    with pytest.raises(ValueError, match="DEFER_DRAMATIQ_HEARTBEAT_TIMEOUT='soon' is not a valid int"):
        BrokerConfig.from_env({"DEFER_DRAMATIQ_HEARTBEAT_TIMEOUT": "soon"})


@pytest.mark.parametrize("options, word", [({"workers": 0}, "workers"), ({"threads": "4"}, "threads"),
                                           ({"processes": 2}, "no option processes")])
def test_bad_options_get_a_clear_message_and_start_nothing(options, word):
    redis_url()  # the course's Redis may start now; a worker group must not
    children = set(psutil.Process().children(recursive=True))
    with pytest.raises(ValueError, match=word):
        create_app("dramatiq", redis_url=redis_url(), smtp_port=1, **options)
    assert not {p for p in psutil.Process().children(recursive=True) if p.is_running()} - children


def test_the_middleware_fails_a_job_whose_message_never_reached_run_job(tmp_path):
    """A StubBroker and an in-process worker: no Redis needed for the middleware's logic."""
    store = Store(tmp_path / "store.sqlite3")
    [job] = new_jobs("ada@example.com", "r1", kinds=("avatar",))
    store.add_jobs([job])
    broker = StubBroker()
    broker.add_middleware(StoreStatus(store))

    def avatar(fields):
        raise KeyError("email")  # as if the arguments were not a job

    actor = dramatiq.actor(avatar, broker=broker, max_retries=0)
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.enqueue(actor.message({}).copy(message_id=job.id))
        with pytest.raises(KeyError):
            broker.join(actor.queue_name, timeout=10_000)
        worker.join()
    finally:
        worker.stop()
        store.close()
    status = Store(tmp_path / "store.sqlite3").job(job.id)
    assert (status.status, status.error) == ("failed", "KeyError: 'email'")


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
        assert namespace_keys(runner.settings.redis_url, runner.broker_config.namespace)
        groups = runner.pids
        workers = runner.worker_processes()
    finally:
        closed = state(app).close(timeout=DEADLINE)
    assert closed.unfinished == 0
    assert namespace_keys(runner.settings.redis_url, runner.broker_config.namespace) == []
    assert not [pid for pid in groups if psutil.pid_exists(pid)]
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_emails_and_avatars_have_their_own_queue_and_worker_group(fast_sink):
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host=fast_sink.host, smtp_port=fast_sink.port, workers=1,
                     threads=2)
    runner = state(app).runner
    try:
        assert [group.queues for group in runner.groups] == [("email",), ("avatars",)]
        assert len(set(runner.pids)) == 2
        assert "welcome emails have their own queue and worker group" in runner.describe()
        runner.wait_ready(DEADLINE)
        by_group = {group.name: {p.pid for p in group.worker_processes()} for group in runner.groups}
        assert len(by_group["email"]) == 1 and len(by_group["avatars"]) == 1, by_group
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
        deadline = time.monotonic() + DEADLINE
        while store.job(email.id).status != "done":
            assert time.monotonic() < deadline, f"waited {DEADLINE:g} s for the email job"
            time.sleep(0.01)
        avatars_done = sum(store.job(job.id).status == "done" for job in avatars)
        assert runner.wait(DEADLINE * 2), store.counts()
    finally:
        state(app).close(timeout=DEADLINE)
    assert avatars_done < len(avatars) // 2, f"{avatars_done} avatars ran before the email"


def test_a_provider_refusing_half_the_attempts_still_gets_every_address_once():
    """Lesson 06's retry policy in the mode: refused attempts are retried, none is sent twice."""
    emails = [f"r{n}@example.com" for n in range(6)]
    with SmtpSink(delay=0.0, refuse=refuse_share(0.5, seed=7)) as sink:
        app = create_app("dramatiq", redis_url=redis_url(), smtp_host=sink.host, smtp_port=sink.port, workers=1,
                         threads=2)
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


def test_a_job_waiting_for_its_retry_shows_queued_with_its_error_then_failed_when_given_up():
    """No provider at all: each attempt is refused; two retries, then dead-lettered."""
    app = create_app("dramatiq", redis_url=redis_url(), smtp_host="127.0.0.1", smtp_port=free_port(), workers=1,
                     threads=1, email_max_retries=2)
    runner, store = state(app).runner, state(app).store
    try:
        [job] = new_jobs("ada@example.com", "r1", kinds=("welcome_email",))
        store.add_jobs([job])
        runner.submit(job)
        seen = set()
        deadline = time.monotonic() + DEADLINE
        while (status := store.job(job.id)).status != "failed":
            assert time.monotonic() < deadline, f"waited {DEADLINE:g} s for the job to fail: {status}"
            if status.status == "queued" and status.attempts >= 1:
                seen.add((status.attempts, status.error))
            time.sleep(0.02)
        assert status.attempts == 3 and "Connection refused" in status.error
        assert any("Connection refused" in error for _, error in seen), seen
    finally:
        state(app).close(timeout=DEADLINE)


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
