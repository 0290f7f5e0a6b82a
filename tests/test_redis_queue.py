"""The hand-written Redis queue: real Redis, real worker processes, real crashes."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from shared.job import Job, new_jobs
from shared.redis_queue import RedisQueue, reap
from shared.redis_queue.demo import kill_mid_job, kill_on_delivery, lost, wait_for
from shared.redis_queue.pickle_demo import crafted_payload
from shared.redis_queue.pool import WorkerPool
from shared.redis_server import redis_url
from shared.settings import Settings
from shared.smtp_sink import SmtpSink
from shared.store import Store

DEADLINE = 30.0
TTL = 1.0  # short heartbeats keep these tests quick


@pytest.fixture
def queue():
    q = RedisQueue.fresh(redis_url())
    yield q
    q.delete()
    q.close()


def _settings(sink: SmtpSink, store: Store, queue: RedisQueue) -> Settings:
    return Settings(smtp_host=sink.host, smtp_port=sink.port, store_path=str(store.path),
                    redis_url=queue.url)


def _email_jobs(store: Store, n: int, tag: str = "user") -> list[Job]:
    jobs = [new_jobs(f"{tag}{i}@example.com", f"r{i}", ("welcome_email",))[0] for i in range(n)]
    for job in jobs:
        store.create_account(job.email, [job])
    return jobs


def _pool(queue, settings, **kwargs) -> WorkerPool:
    return WorkerPool(queue, settings, heartbeat_ttl=TTL, **kwargs)


# -- the queue and the reaper, without processes ---------------------------------

def test_enqueue_pushes_the_job_as_json_and_delete_removes_every_key(queue, store):
    [job] = _email_jobs(store, 1)
    queue.enqueue(job)
    assert queue.waiting() == 1
    assert Job.from_json(queue.redis.lindex(queue.queue, 0)) == job
    assert queue.keys() == [queue.queue]
    assert queue.delete() == 1
    assert queue.keys() == [] and queue.waiting() == 0


def test_fresh_queues_never_share_keys():
    url = redis_url()
    first, second = RedisQueue.fresh(url), RedisQueue.fresh(url)
    assert first.prefix != second.prefix and first.queue != second.queue


@pytest.mark.parametrize("prefix", ["", "a b", "defer:*"])
def test_a_prefix_with_wildcards_or_spaces_is_refused(prefix):
    with pytest.raises(ValueError, match="prefix"):
        RedisQueue(redis_url(), prefix)


def test_reap_requeues_only_the_jobs_of_workers_without_a_heartbeat(queue):
    r = queue.redis
    r.sadd(queue.workers, "dead", "alive")
    r.lpush(queue.processing("dead"), b"job-of-dead")
    r.lpush(queue.processing("alive"), b"job-of-alive")
    r.set(queue.heartbeat("alive"), 1, px=10_000)
    r.lpush(queue.queue, b"waiting")
    recovered = reap(queue)
    assert [(x.worker, x.jobs) for x in recovered] == [("dead", 1)]
    assert r.lrange(queue.queue, 0, -1) == [b"waiting", b"job-of-dead"]  # next in line
    assert r.llen(queue.processing("dead")) == 0
    assert r.lrange(queue.processing("alive"), 0, -1) == [b"job-of-alive"]
    assert r.smembers(queue.workers) == {b"alive"}
    assert reap(queue) == []


def test_reap_leaves_a_worker_whose_heartbeat_came_back_after_the_first_look(queue, monkeypatch):
    """The first look says dead; by the move the heartbeat is back: the job must stay."""
    r = queue.redis
    r.sadd(queue.workers, "lapsed")
    r.lpush(queue.processing("lapsed"), b"its-job")
    r.set(queue.heartbeat("lapsed"), 1, px=10_000)  # back, after the reaper's first look
    monkeypatch.setattr(queue, "alive", lambda name: False)  # that first look
    assert reap(queue) == []
    assert r.lrange(queue.processing("lapsed"), 0, -1) == [b"its-job"]
    assert r.smembers(queue.workers) == {b"lapsed"}
    assert r.llen(queue.queue) == 0


def test_a_heartbeat_survives_a_redis_restart_and_registers_again(capfd):
    """Before the fix, the first failed beat ended the thread: the worker lived on, unwatched."""
    from shared.redis_server import EmbeddedRedis
    from shared.redis_queue.worker import Heartbeat

    ttl = 0.4
    server = EmbeddedRedis().start()
    port = server.port
    queue = RedisQueue(server.url, "defer:restart")
    try:
        with Heartbeat(queue, "w1", ttl=ttl) as heartbeat:
            server.stop()  # Redis goes away, and with it every key: the worker set too
            time.sleep(ttl * 3)
            assert heartbeat._thread.is_alive() and heartbeat.failures > 0
            server = EmbeddedRedis(port=port).start()  # back, empty, on the same port
            wait_for("the worker to beat and register again",
                     lambda: queue.alive("w1") and queue.redis.sismember(queue.workers, "w1"),
                     DEADLINE)
            assert heartbeat.failures == 0
        err = capfd.readouterr().err
        assert err.count("w1: heartbeat failed (") == 1, err  # said once, not once per retry
        assert err.count("w1: heartbeat back after ") == 1, err
        assert queue.keys() == []  # deregistered on the way out
    finally:
        queue.close()
        server.stop()


def test_a_heartbeat_that_failed_thousands_of_times_keeps_retrying(closed_port):
    """2 ** failures overflowed a float at 1,025 failures, inside the except: the thread died."""
    from shared.redis_queue.worker import Heartbeat

    queue = RedisQueue(f"redis://127.0.0.1:{closed_port}/0", "defer:down")
    heartbeat = Heartbeat(queue, "w1", ttl=0.2)
    heartbeat.failures = 2000  # a long outage already
    heartbeat._thread.start()  # not __enter__: its first beat would raise here
    try:
        wait_for("a few more failed beats", lambda: heartbeat.failures >= 2003, DEADLINE)
        assert heartbeat._thread.is_alive()
    finally:
        heartbeat._stop.set()
        heartbeat._thread.join(DEADLINE)
        heartbeat.redis.close()
        queue.close()


def test_a_worker_leaving_with_a_job_in_hand_hands_it_back(queue):
    from shared.redis_queue.worker import Heartbeat

    with Heartbeat(queue, "w9", ttl=5.0):
        assert queue.alive("w9") and queue.held() == {"w9": 0}
        queue.redis.lpush(queue.processing("w9"), b"job")  # as if handle() raised
    assert queue.redis.lrange(queue.queue, 0, -1) == [b"job"]
    assert queue.keys() == [queue.queue]  # deregistered, heartbeat gone


# -- real worker processes ----------------------------------------------------------

def test_workers_run_jobs_and_record_them_in_the_store(queue, store):
    with SmtpSink(delay=0) as sink, _pool(queue, _settings(sink, store, queue)) as pool:
        workers = pool.start(2)
        assert all(queue.alive(w.name) for w in workers)
        for job in _email_jobs(store, 4):
            queue.enqueue(job)
        wait_for("4 jobs done", lambda: store.counts()["done"] == 4, DEADLINE)
        assert sorted(m.recipients[0] for m in sink.inbox) == [f"user{i}@example.com" for i in range(4)]
        assert all(j.attempts == 1 for j in store.jobs())
        wait_for("the acks", lambda: sum(queue.held().values()) == 0, DEADLINE)
    assert not any(w.running for w in pool.workers)
    assert queue.keys() == []  # stopped workers deregister and delete their heartbeat


def test_a_killed_naive_worker_loses_the_job_it_held(queue, store):
    with SmtpSink(delay=5) as sink, _pool(queue, _settings(sink, store, queue), style="naive") as pool:
        for job in _email_jobs(store, 3):
            queue.enqueue(job)
        [first] = pool.start(1)
        kill_mid_job(first, store, DEADLINE)
        sink.delay = 0
        pool.start(1)
        wait_for("the other two jobs", lambda: store.counts()["done"] == 2, DEADLINE)
        wait_for("an empty queue", lambda: queue.waiting() == 0, DEADLINE)
        assert lost(store, queue) == 1
        assert store.counts() == {"queued": 0, "running": 1, "done": 2, "failed": 0}
        assert len(sink.inbox) == 2  # the killed job's email never went out


def test_a_killed_reliable_worker_loses_nothing_once_reaped(queue, store):
    with SmtpSink(delay=5) as sink, _pool(queue, _settings(sink, store, queue)) as pool:
        for job in _email_jobs(store, 3):
            queue.enqueue(job)
        [first] = pool.start(1)
        kill_mid_job(first, store, DEADLINE)
        assert queue.held() == {first.name: 1} and queue.waiting() == 2
        sink.delay = 0
        pool.start(1)
        wait_for("the dead worker's heartbeat to expire", lambda: reap(queue), DEADLINE)
        wait_for("all three jobs", lambda: store.counts()["done"] == 3, DEADLINE)
        assert lost(store, queue) == 0
        assert sorted(m.recipients[0] for m in sink.inbox) == [f"user{i}@example.com" for i in range(3)]
        assert [j.attempts for j in store.jobs()] == [2, 1, 1]  # the first one ran twice


def test_a_worker_dropped_from_the_set_while_idle_registers_again_when_it_takes_a_job(queue, store):
    """The hole: an idle worker's heartbeat lapses, the reaper finds its list empty and removes
    it from the set; it then takes a job and dies before its next beat. Unregistered, its list
    was never reaped: the job sat there for good."""
    with SmtpSink(delay=5) as sink, \
            WorkerPool(queue, _settings(sink, store, queue), heartbeat_ttl=60.0) as pool:
        [worker] = pool.start(1)  # beats every 15 s: none lands during this test
        queue.redis.srem(queue.workers, worker.name)  # what REQUEUE_ONE does to an empty list
        [job] = _email_jobs(store, 1)
        queue.enqueue(job)
        kill_mid_job(worker, store, DEADLINE)
        queue.redis.delete(queue.heartbeat(worker.name))  # its heartbeat expires
        assert [(r.worker, r.jobs) for r in reap(queue)] == [(worker.name, 1)]
        assert queue.waiting() == 1 and lost(store, queue) == 0


@pytest.mark.parametrize("idempotent, emails", [(False, 2), (True, 1)])
def test_a_crash_after_delivery_duplicates_the_email_unless_idempotent(queue, store, idempotent,
                                                                       emails):
    with SmtpSink(delay=0) as sink, \
            _pool(queue, _settings(sink, store, queue), idempotent=idempotent) as pool:
        [first] = pool.start(1)
        kill_on_delivery(sink, first)
        [job] = _email_jobs(store, 1)
        queue.enqueue(job)
        wait_for("the crash", lambda: not first.running, DEADLINE)
        pool.start(1)
        wait_for("the requeue", lambda: reap(queue), DEADLINE)
        wait_for("the job to be done", lambda: store.job(job.id).status == "done", DEADLINE)
        wait_for("the ack", lambda: queue.waiting() + sum(queue.held().values()) == 0, DEADLINE)
        assert [m.recipients for m in sink.inbox] == [(job.email,)] * emails
        if idempotent:
            assert 0 < queue.redis.ttl(queue.once(job.id)) <= 24 * 3600


def test_a_pickle_runs_code_when_unpickled_but_the_json_worker_rejects_it(queue, store, tmp_path):
    marker = tmp_path / "pwned"
    queue.redis.lpush(f"{queue.prefix}:pickled", crafted_payload(marker))
    done = subprocess.run([sys.executable, "-m", "shared.redis_queue.pickle_demo", queue.url,
                           f"{queue.prefix}:pickled"], capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    marker.unlink()

    with SmtpSink(delay=0) as sink, _pool(queue, _settings(sink, store, queue)) as pool:
        [worker] = pool.start(1)
        queue.redis.lpush(queue.queue, crafted_payload(marker))
        [job] = _email_jobs(store, 1)
        queue.enqueue(job)
        wait_for("the good job after the bad message", lambda: store.counts()["done"] == 1,
                 DEADLINE)
        assert worker.running
        assert "rejected a message (not JSON" in pool.log_tail(worker)
    assert not marker.exists()


def test_stopping_a_worker_lets_it_finish_the_job_in_hand(queue, store):
    with SmtpSink(delay=0.5) as sink, _pool(queue, _settings(sink, store, queue)) as pool:
        [worker] = pool.start(1)
        [job] = _email_jobs(store, 1)
        queue.enqueue(job)
        wait_for("the job to start", lambda: store.job(job.id).status == "running", DEADLINE)
        pool.stop()
        assert worker.process.returncode == 0
        assert store.job(job.id).status == "done" and len(sink.inbox) == 1
        assert queue.keys() == []  # acknowledged, deregistered


def test_a_worker_survives_a_burst_of_sigterms_and_stops_cleanly(queue, store):
    """A signal handler that takes a lock deadlocks when a second signal lands inside it."""
    with SmtpSink(delay=0) as sink, _pool(queue, _settings(sink, store, queue)) as pool:
        workers = pool.start(3)
        spacing = random.Random(3)
        for _ in range(300):  # spaced so that some land while a handler is running
            for worker in workers:
                os.kill(worker.pid, signal.SIGTERM)
            pause_until = time.perf_counter() + spacing.uniform(0, 50e-6)
            while time.perf_counter() < pause_until:
                pass
        for worker in workers:
            try:
                assert worker.process.wait(DEADLINE) == 0
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker {worker.name} hung after a burst of SIGTERMs") from None


def test_a_worker_without_settings_says_what_to_set():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFER_")}
    done = subprocess.run([sys.executable, "-m", "shared.redis_queue", "--prefix", "x",
                           "--name", "w1"], capture_output=True, text=True, env=env,
                          timeout=DEADLINE)
    assert done.returncode == 2
    assert "DEFER_STORE_PATH" in done.stderr and "Traceback" not in done.stderr


def test_a_pool_refuses_bad_arguments_clearly(queue):
    with pytest.raises(ValueError, match="store_path"):
        WorkerPool(queue, Settings())
    settings = Settings(store_path="/nowhere.sqlite3", redis_url=queue.url)
    with pytest.raises(ValueError, match="style"):
        WorkerPool(queue, settings, style="fast")
    with pytest.raises(ValueError, match="heartbeat_ttl"):
        WorkerPool(queue, settings, heartbeat_ttl=0)


def test_the_mode_replaces_a_killed_worker_and_recovers_its_job(store):
    from shared.app import create_app, state

    with SmtpSink(delay=5) as sink:
        app = create_app("redis-queue", redis_url=redis_url(), smtp_host=sink.host, smtp_port=sink.port, store=store,
                         workers=1, heartbeat_ttl=TTL)
        runner = state(app).runner
        try:
            [job] = _email_jobs(store, 1)
            runner.submit(job)
            [first] = runner.pool.workers
            kill_mid_job(first, store, DEADLINE)
            sink.delay = 0
            wait_for("the job, via the reaper and a new worker",
                     lambda: store.job(job.id).status == "done", DEADLINE)
            assert [w.name for w in runner.pool.running] == ["w2"]
            assert [m.recipients for m in sink.inbox] == [(job.email,)]
        finally:
            closed = state(app).close(timeout=DEADLINE)
        assert closed.unfinished == 0
        assert runner.queue.keys() == []
        assert not any(psutil.pid_exists(w.pid) and psutil.Process(w.pid).status() != "zombie"
                       for w in runner.pool.workers)


def test_the_mode_refuses_zero_workers():
    from shared.app import create_app

    with pytest.raises(ValueError, match="workers >= 1"):
        create_app("redis-queue", redis_url=redis_url(), workers=0)


def test_job_json_stays_a_plain_object(store):
    [job] = _email_jobs(store, 1)
    assert set(json.loads(job.to_json())) == {"id", "kind", "email", "request_id", "enqueued_at"}


# -- what a restart of Redis keeps (lesson 03, section 6) ------------------------------

@pytest.mark.parametrize("settings, words", [
    ({"appendonly": "no", "appendfsync": "everysec", "save": ""}, r"^nothing: every queued job"),
    ({"appendonly": "yes", "appendfsync": "everysec", "save": ""},
     r"append-only file .*about the last second of writes"),
    ({"appendonly": "yes", "appendfsync": "always", "save": "3600 1"}, r"no acknowledged write"),
    ({"appendonly": "no", "appendfsync": "everysec", "save": "3600 1"},
     r"^its last snapshot \(save '3600 1'\): every job queued since .*finished since comes back"),
    ("ResponseError: unknown command 'CONFIG'", r"^this Redis would not say \(ResponseError"),
])
def test_what_a_restart_keeps_follows_the_settings(settings, words):
    from shared.redis_queue.demo import what_a_restart_keeps

    assert re.search(words, what_a_restart_keeps(settings))


def test_persistence_reads_the_servers_settings(queue):
    from shared.redis_queue.demo import persistence

    found = persistence(queue.redis)
    assert isinstance(found, dict) and set(found) == {"appendonly", "appendfsync", "save"}
