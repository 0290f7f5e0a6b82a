"""The outbox: the store's claims, the relay, and the dramatiq mode with outbox=1 through a Redis outage."""

from __future__ import annotations

import threading
import time

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
    assert not store.mark_sent(first[0].id, "b"), "b does not hold a's claim"
    assert store.mark_sent(first[0].id, "a")
    assert not store.mark_sent(first[0].id, "a"), "marked once"
    assert first[0].id not in [r.id for r in store.claim_unsent("a", limit=100)]


def test_a_dead_relays_claims_go_to_another_relay_once_the_lease_ran_out(store):
    _signup(store, "ada@example.com")
    assert len(store.claim_unsent("dead", lease_seconds=-1)) == 2  # a lease already over
    assert len(store.claim_unsent("alive")) == 2


def test_a_relay_that_outlives_its_lease_loses_the_claim_and_the_row_goes_out_twice(store):
    """At least once: the slow relay's row is sent again by the relay that took it over; the
    slow relay's mark does not count, and it stops its pass there."""
    jobs = [job for i in range(2) for job in _signup(store, f"user{i}@example.com")]
    sent: list[tuple[str, str]] = []
    other = OutboxRelay(store, lambda job: sent.append(("other", job.id)))

    def slow_send(job: Job) -> None:
        if not sent:
            time.sleep(0.3)  # longer than the lease
            assert other.relay_once() == 4, "the other relay takes over every row"
        sent.append(("slow", job.id))

    slow = OutboxRelay(store, slow_send, lease=0.1)
    assert slow.relay_once() == 1  # sent one row, then found its claim gone
    assert sent == [("other", job.id) for job in jobs] + [("slow", jobs[0].id)]
    assert store.unsent() == 0


def test_a_relay_stops_its_pass_when_its_lease_runs_out_and_claims_again(store):
    jobs = [job for i in range(2) for job in _signup(store, f"user{i}@example.com")]
    sent: list[str] = []

    def send(job: Job) -> None:
        time.sleep(0.15)
        sent.append(job.id)

    relay = OutboxRelay(store, send, lease=0.2)
    first = relay.relay_once()
    assert 1 <= first < 4, "the pass ends once the lease is over"
    while store.unsent():
        relay.relay_once()  # its own rows, claimed again with a fresh lease
    assert sent == [job.id for job in jobs]  # each once, in order


def test_a_storm_of_signups_does_not_cut_the_relays_backoff_short(store):
    _signup(store, "ada@example.com")
    tries = 0

    def send(job: Job) -> None:
        nonlocal tries
        tries += 1
        raise ConnectionError("broker down")

    relay = OutboxRelay(store, send, pause=0.01).start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            relay.wake()  # every signup wakes the relay
            time.sleep(0.001)
    finally:
        relay.stop()
    # backoff 0.02, 0.04, ... 0.64 s: at most 7 tries in a second (hundreds if wake cut it short)
    assert 2 <= tries <= 8, tries
    assert store.unsent() == 2


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
    from dramatiq import Message

    from shared.production.commit import CommitLab, NoSuchAccount

    saved = dramatiq.worker.CONSUMER_RESTART_DELAY_SECS
    lab = CommitLab().start()
    try:
        def welcome_job(email):
            if lab.store.account(email) is None:
                raise NoSuchAccount(email)

        welcome = lab.actor(welcome_job, actor_name="welcome", max_retries=0)
        retried = lab.actor(welcome_job, actor_name="retried", max_retries=2, min_backoff=10)
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
        # a rolled-back signup's job fails on every retry; wait() waits for the last one
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO accounts (email, created_at) VALUES (?, ?)",
                   ("gone@example.com", time.time()))
        retried.send("gone@example.com")
        db.execute("ROLLBACK")
        lab.wait(DEADLINE)
        tries = lab.worker.attempts(actor="retried")
        assert [a.outcome for a in tries] == ["retry", "retry", "dead"]
        assert lab.no_account(tries) == 3
        # one message sent twice runs twice, and wait() waits for both copies
        lab.store.create_account("twice@example.com")
        copy = Message(queue_name="default", actor_name="welcome", args=("twice@example.com",),
                       kwargs={}, options={}, message_id="sent-twice")
        lab.worker.broker.enqueue(copy)
        lab.worker.broker.enqueue(copy)
        lab.wait(DEADLINE)
        assert len(lab.worker.attempts(args=("twice@example.com",))) == 2
    finally:
        left = lab.close()
    assert left.total == 0, left
    assert dramatiq.worker.CONSUMER_RESTART_DELAY_SECS == saved
