"""A worker that reaches only URLs: the status store on a server, and the group that uses it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from shared.job import new_jobs
from shared.modes.dramatiq.broker import job_message, make_broker
from shared.processes import wait_until
from shared.production.remote import RedisJobStore, RemoteWorkers
from shared.smtp_sink import SmtpSink, refuse_first
from shared.store import Span


@pytest.fixture
def remote_store(redis_url) -> Iterator[RedisJobStore]:
    store = RedisJobStore(redis_url, f"test-remote-{uuid.uuid4().hex[:12]}")
    yield store
    keys = list(store.client.scan_iter(match=f"{store.prefix}:*"))
    if keys:
        store.client.delete(*keys)
    store.close()


def test_a_job_goes_queued_running_done_and_a_stale_attempt_changes_nothing(remote_store):
    [email_job, avatar_job] = new_jobs("Ada@example.com", "r1")
    remote_store.create_account("Ada@example.com", [email_job, avatar_job])
    assert [job.status for job in remote_store.jobs()] == ["queued", "queued"]
    assert remote_store.start_attempt(email_job.id) == 1
    assert remote_store.start_attempt(email_job.id) == 2  # a retry began on another thread
    remote_store.end_attempt(email_job.id, "failed", "late news", attempt=1)  # stale: ignored
    assert (remote_store.job(email_job.id).status, remote_store.job(email_job.id).error) == (
        "running", None)
    remote_store.end_attempt(email_job.id, "done", attempt=2)
    status = remote_store.job(email_job.id)
    assert (status.status, status.attempts, status.error, status.email) == (
        "done", 2, None, "Ada@example.com")
    assert status.seconds is not None and status.seconds >= 0
    assert remote_store.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0}


def test_an_attempt_of_an_unknown_job_is_a_key_error_and_bad_statuses_are_refused(remote_store):
    with pytest.raises(KeyError, match="no job 'nope'"):
        remote_store.start_attempt("nope")
    assert remote_store.job("nope") is None
    with pytest.raises(ValueError, match="status must be one of"):
        remote_store.end_attempt("nope", "lost")


def test_accounts_and_spans_round_trip_through_the_server(remote_store):
    [job] = new_jobs("ada@example.com", "r1", kinds=("avatar",))
    remote_store.create_account("ada@example.com", [job])
    assert not remote_store.welcomed("ADA@example.com")
    remote_store.mark_welcomed("ada@example.com")
    remote_store.set_avatar("ada@example.com", b"\x89PNG\x00\xff")
    span = Span(job.id, "r1", "avatar", 1, 1.0, 1.5, None)
    remote_store.add_span(span)
    other = RedisJobStore(remote_store.url, remote_store.prefix)  # another process, another host
    try:
        assert other.welcomed("ada@example.com")
        assert other.avatar("ada@example.com") == b"\x89PNG\x00\xff"
        assert other.spans() == [span]
    finally:
        other.close()


@pytest.fixture
def refusing_sink() -> Iterator[SmtpSink]:
    """Refuses each address's first try (a transient 451): the email is retried once."""
    with SmtpSink(delay=0.0, refuse=refuse_first(1)) as running:
        yield running


def test_a_group_told_only_addresses_does_the_signup_work_and_leaves_nothing(redis_url,
                                                                             refusing_sink):
    remote = RemoteWorkers(redis_url, redis_url, smtp_host=refusing_sink.host,
                           smtp_port=refusing_sink.port)
    web = make_broker(redis_url, remote.config)
    signups = ["one@example.com", "two@example.com"]
    try:
        addresses = remote.addresses()
        assert addresses["DEFER_STORE_PATH"] == ""
        assert {addresses["DEFER_REDIS_URL"], addresses["DEFER_STATUS_URL"]} == {redis_url}
        remote.start(timeout=60)
        assert remote.group.command()[3] == "shared.production.remote_worker"
        assert remote.files_open() == []
        for email in signups:
            jobs = new_jobs(email, "r1")
            remote.store.create_account(email, jobs)
            for job in jobs:
                web.enqueue(job_message(job))
        remote.wait_finished(4, timeout=60)
        reader = RedisJobStore.for_run(redis_url, remote.config)
        try:
            assert reader.counts() == {"queued": 0, "running": 0, "done": 4, "failed": 0}
            emails = [job for job in reader.jobs() if job.kind == "welcome_email"]
            assert [job.attempts for job in emails] == [2, 2]  # refused once, then sent
            assert all(reader.welcomed(email) and reader.avatar(email) for email in signups)
        finally:
            reader.close()
        assert sorted(m.recipients[0] for m in refusing_sink.inbox) == signups
    finally:
        web.close()
        remote.stop()
    assert remote.keys_left() == 0
    assert remote.processes_left() == 0


def test_the_remote_worker_refuses_to_start_with_a_store_path(redis_url, tmp_path):
    remote = RemoteWorkers(redis_url, redis_url, smtp_host="127.0.0.1", smtp_port=1)
    env = {**remote.addresses(), "DEFER_STORE_PATH": str(tmp_path / "store.sqlite3")}
    try:
        remote.group.start({**_inherited(), **env})
        wait_until(lambda: not remote.group.running, 60, "the worker group to give up")
        assert "must reach nothing but URLs" in remote.group.log_text()
    finally:
        remote.stop()
    assert remote.processes_left() == 0


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DEFER_")}


def test_stop_deletes_the_runs_status_keys(redis_url):
    remote = RemoteWorkers(redis_url, redis_url, smtp_host="127.0.0.1", smtp_port=1)
    [job] = new_jobs("ada@example.com", "r1", kinds=("avatar",))
    remote.store.create_account("ada@example.com", [job])
    assert remote.keys_left() > 0
    remote.stop()
    assert remote.keys_left() == 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"{remote.store.prefix}:*"))
    finally:
        client.close()
