"""The outbox: the store's claims, the relay, and the dramatiq mode with outbox=1 through a Redis outage."""

from __future__ import annotations

import threading

import pytest

from shared.app import create_app, state
from shared.job import Job, new_jobs
from shared.modes.dramatiq.outbox import OutboxRelay
from shared.net import free_port
from shared.processes import wait_until
from shared.redis_server import EmbeddedRedis
from shared.store import AccountExists, Store

DEADLINE = 30.0


@pytest.fixture
def store():
    made = Store.fresh()
    yield made
    made.remove()


def _signup(store: Store, email: str) -> list[Job]:
    jobs = new_jobs(email, "r1")
    store.create_account(email, jobs, outbox=True)
    return jobs


def test_the_outbox_rows_are_written_with_the_account_or_not_at_all(store):
    _signup(store, "ada@example.com")
    assert store.unsent() == 2
    with pytest.raises(AccountExists):
        _signup(store, "ADA@example.com")  # taken: the whole transaction is rolled back
    assert store.unsent() == 2
    store.create_account("alan@example.com", new_jobs("alan@example.com", "r2"))
    assert store.unsent() == 2  # without outbox=True, no rows


def test_two_relays_never_claim_the_same_row_and_a_dead_relays_lease_runs_out(store):
    for i in range(10):
        _signup(store, f"user{i}@example.com")
    first = store.claim_unsent("a", limit=7, lease_seconds=30)
    second = store.claim_unsent("b", limit=100, lease_seconds=30)
    assert len(first) == 7 and len(second) == 13
    assert not {r.id for r in first} & {r.id for r in second}
    assert [r.id for r in store.claim_unsent("a", limit=100)] == [r.id for r in first]  # its own
    expired = store.claim_unsent("c", limit=100, lease_seconds=-1)  # nothing free for c
    assert expired == []
    store.mark_sent(first[0].id)
    assert first[0].id not in [r.id for r in store.claim_unsent("a", limit=100)]


def test_a_dead_relays_claims_go_to_another_relay_once_the_lease_ran_out(store):
    _signup(store, "ada@example.com")
    assert len(store.claim_unsent("dead", lease_seconds=-1)) == 2  # a lease already over
    assert len(store.claim_unsent("alive")) == 2


def test_a_relay_keeps_the_rows_a_failed_send_could_not_send_and_sends_them_later_in_order(store):
    jobs = [job for i in range(5) for job in _signup(store, f"user{i}@example.com")]
    sent: list[str] = []
    down = threading.Event()
    down.set()

    def send(job: Job) -> None:
        if down.is_set() and len(sent) >= 3:
            raise ConnectionError("broker down")
        sent.append(job.id)

    relay = OutboxRelay(store, send, pause=0.01).start()
    try:
        wait_until(lambda: relay.failed_passes >= 2, DEADLINE, "the relay to fail twice")
        assert sent == [job.id for job in jobs[:3]] and store.unsent() == 7
        assert relay.alive, "an error must end the pass, not the thread"
        down.clear()
        wait_until(lambda: store.unsent() == 0, DEADLINE, "the relay to send the rest")
    finally:
        relay.stop()
    assert sent == [job.id for job in jobs]  # each once, in signup order
    assert not relay.alive


def test_the_dramatiq_mode_with_the_outbox_answers_202_while_redis_is_down_and_mails_everyone_once(
        fast_sink):
    port = free_port()
    redis = EmbeddedRedis(port).start()
    app = create_app("dramatiq", redis_url=redis.url, smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=2, outbox=1)
    runner, store = state(app).runner, state(app).store
    client = app.test_client()
    try:
        assert runner.uses_outbox and "outbox on" in runner.describe()
        before = [client.post("/signup", json={"email": f"up{i}@example.com"}) for i in range(3)]
        assert [r.status_code for r in before] == [202] * 3
        wait_until(lambda: len(fast_sink.inbox) == 3, DEADLINE, "3 emails sent before the outage")
        redis.stop()
        during = [client.post("/signup", json={"email": f"down{i}@example.com"}) for i in range(4)]
        assert [r.status_code for r in during] == [202] * 4, [r.get_json() for r in during]
        assert store.unsent() == 8  # 4 signups x 2 jobs wait in the outbox
        redis.start()  # same port, empty
        wait_until(lambda: len(fast_sink.inbox) == 7, DEADLINE, "7 emails once Redis is back")
        assert runner.wait(DEADLINE), store.counts()
        assert store.unsent() == 0
        recipients = sorted(r for message in fast_sink.inbox for r in message.recipients)
        assert recipients == sorted([f"up{i}@example.com" for i in range(3)] +
                                    [f"down{i}@example.com" for i in range(4)])
    finally:
        closed = state(app).close(timeout=DEADLINE)
        redis.stop()
    assert closed.unfinished == 0
    assert not runner.relay.alive


def test_the_outbox_option_takes_0_or_1():
    with pytest.raises(ValueError, match="outbox must be 0 or 1"):
        create_app("dramatiq", redis_url="redis://127.0.0.1:1/0", outbox=2)


def test_without_the_outbox_a_send_that_fails_after_the_commit_loses_the_signup(fast_sink):
    """The bug the outbox fixes: 500, the account committed, its jobs queued for good, and a
    retry by the client is refused (409)."""
    redis = EmbeddedRedis(free_port()).start()
    app = create_app("dramatiq", redis_url=redis.url, smtp_host=fast_sink.host,
                     smtp_port=fast_sink.port, workers=1, threads=2)
    store, client = state(app).store, app.test_client()
    try:
        redis.stop()
        answer = client.post("/signup", json={"email": "lost@example.com"})
        assert answer.status_code == 500
        assert store.account("lost@example.com") is not None
        assert store.counts()["queued"] == 2 and store.unsent() == 0
        redis.start()
        assert client.post("/signup", json={"email": "lost@example.com"}).status_code == 409
        for job in store.jobs():
            store.set_status(job.id, "failed", "lost: never sent")  # so close() need not wait
    finally:
        state(app).close(timeout=DEADLINE)
        redis.stop()


def test_make_serve_turns_the_outbox_on_for_the_dramatiq_mode_only():
    from shared.serve import _mode_options, _parse

    assert _mode_options(_parse(["--mode", "dramatiq"]))["outbox"] == 1
    assert "outbox" not in _mode_options(_parse(["--mode", "redis-queue"]))


# -- the lesson's lab (shared.production.commit) ---------------------------------------------


def test_the_lab_counts_the_race_the_lost_sends_and_leaves_nothing_behind():
    import time

    import dramatiq.worker
    import redis as redis_client

    from shared.production.commit import CommitLab, NoSuchAccount

    saved = dramatiq.worker.CONSUMER_RESTART_DELAY_SECS
    lab = CommitLab().start()
    try:
        @lab.actor(max_retries=0)
        def welcome(email):
            if lab.store.account(email) is None:
                raise NoSuchAccount(email)

        lab.run()
        db = lab.connect()
        for i in range(3):  # the transaction stays open far longer than the worker's pickup
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO accounts (email, created_at) VALUES (?, ?)",
                       (f"in{i}@example.com", time.time()))
            welcome.send(f"in{i}@example.com")
            time.sleep(0.3)
            db.execute("COMMIT")
        lab.wait(DEADLINE)
        assert lab.no_account() >= 1, "no job ran before its commit, with a 0.3 s window"
        for i in range(3):
            lab.store.create_account(f"after{i}@example.com")
            welcome.send(f"after{i}@example.com")
        lab.wait(DEADLINE)
        after = lab.outcomes([f"after{i}@example.com" for i in range(3)])
        assert after["job failed: no such account"] == 0
        failed = 0
        with lab.redis_down():
            for i in range(2):
                lab.store.create_account(f"down{i}@example.com")
                try:
                    welcome.send(f"down{i}@example.com")
                except redis_client.ConnectionError:
                    failed += 1
        lab.wait(DEADLINE)  # only what Redis took is waited for
        assert failed == 2
        assert lab.outcomes([f"down{i}@example.com" for i in range(2)])["never sent"] == 2
        assert len(lab.accounts()) == 8
    finally:
        left = lab.close()
    assert left.total == 0, left
    assert dramatiq.worker.CONSUMER_RESTART_DELAY_SECS == saved
