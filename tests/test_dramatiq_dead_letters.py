"""Dead letters on the course's Redis: read them, and requeue one atomically (it runs once)."""

from __future__ import annotations

import threading
import uuid

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from shared.modes.dramatiq.broker import delete_namespace
from shared.modes.dramatiq.dead_letters import (NotADeadLetter, dead_letter_keys, dead_letters,
                                                requeue)
from shared.processes import wait_until
from shared.redis_server import redis_url

QUEUE = "letters"


@pytest.fixture
def lab():
    """A broker in a fresh namespace, an actor that fails until told not to, and a worker."""
    url = redis_url()
    namespace = f"test-dead-{uuid.uuid4().hex[:10]}"
    broker = RedisBroker(url=url, namespace=namespace)
    runs: list[str] = []
    broken = threading.Event()
    broken.set()
    lock = threading.Lock()

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def deliver(name: str) -> None:
        with lock:
            runs.append(name)
        if broken.is_set():
            raise RuntimeError(f"cannot deliver {name}")

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        yield broker, deliver, runs, broken
    finally:
        worker.stop(timeout=5_000)
        broker.close()
        delete_namespace(url, namespace)


def test_a_given_up_message_is_a_dead_letter(lab):
    broker, deliver, runs, _ = lab
    sent = deliver.send("ada")
    wait_until(lambda: dead_letters(broker, QUEUE), 10, "ada's message in the dead letters")
    [letter] = dead_letters(broker, QUEUE)
    assert (letter.message_id, letter.actor, letter.args, letter.queue) == (
        sent.message_id, "deliver", ("ada",), QUEUE)
    assert runs == ["ada"]


def test_dead_letters_have_no_redis_ttl_only_dramatiqs_sweep(lab):
    """dead_message_ttl is kept by a maintenance sweep, not by Redis: the keys say TTL -1."""
    broker, deliver, _, _ = lab
    deliver.send("eve")
    wait_until(lambda: dead_letters(broker, QUEUE), 10, "eve's message in the dead letters")
    ids_key, messages_key = dead_letter_keys(broker.namespace, QUEUE)
    assert broker.client.ttl(ids_key) == -1 and broker.client.ttl(messages_key) == -1
    assert broker.dead_message_ttl == 7 * 86_400_000


def test_a_client_and_namespace_read_the_same_letters(lab):
    broker, deliver, _, _ = lab
    deliver.send("bob")
    wait_until(lambda: dead_letters(broker, QUEUE), 10, "bob's message in the dead letters")
    client = redis.Redis.from_url(redis_url())
    try:
        assert dead_letters(client, QUEUE, namespace=broker.namespace) == dead_letters(broker, QUEUE)
        with pytest.raises(ValueError, match="namespace="):
            dead_letters(client, QUEUE)
    finally:
        client.close()


def test_a_requeued_letter_runs_once_and_leaves_the_dead_letters(lab):
    broker, deliver, runs, broken = lab
    deliver.send("cy")
    wait_until(lambda: dead_letters(broker, QUEUE), 10, "cy's message in the dead letters")
    [letter] = dead_letters(broker, QUEUE)
    broken.clear()  # fix the cause first
    queued = requeue(broker, letter)
    assert "retries" not in queued.options and queued.queue_name == QUEUE
    wait_until(lambda: len(runs) == 2, 10, "the requeued message to run")
    with pytest.raises(NotADeadLetter, match="requeued already"):
        requeue(broker, letter)  # a second requeue of the same letter sends nothing
    broker.join(QUEUE, timeout=10_000)
    assert runs == ["cy", "cy"]  # the failed run, then exactly one more
    assert dead_letters(broker, QUEUE) == []


def test_racing_requeues_of_one_letter_send_it_once(lab):
    broker, deliver, runs, broken = lab
    deliver.send("dee")
    wait_until(lambda: dead_letters(broker, QUEUE), 10, "dee's message in the dead letters")
    [letter] = dead_letters(broker, QUEUE)
    broken.clear()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        try:
            requeue(broker, letter)
            outcomes.append("sent")
        except NotADeadLetter:
            outcomes.append("refused")

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["refused"] * 7 + ["sent"]
    wait_until(lambda: len(runs) == 2, 10, "the requeued message to run")
    broker.join(QUEUE, timeout=10_000)
    assert runs == ["dee", "dee"]
    ids_key, messages_key = dead_letter_keys(broker.namespace, QUEUE)
    assert broker.client.zcard(ids_key) == 0 and broker.client.hlen(messages_key) == 0
