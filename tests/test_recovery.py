"""shared.recovery: how many broker calls until Dramatiq's maintenance requeues a dead worker's message."""

import pytest
import redis

from shared.recovery import calls_until_requeue


def test_maintenance_on_every_call_requeues_at_the_first_fetch(redis_url):
    run = calls_until_requeue(redis_url, 1_000_000, trials=2)
    assert run.calls == (1, 1)


def test_a_rare_maintenance_takes_more_calls_and_leaves_no_key(redis_url):
    rare = calls_until_requeue(redis_url, 20_000, trials=3, most=5_000)
    assert all(1 <= calls <= 5_000 for calls in rare.calls)
    assert sum(rare.calls) > 3, "with a 2% chance, three trials all at the first call is unlikely"
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match="recovery-*")) == []
    finally:
        client.close()


@pytest.mark.parametrize("chance", [0, 1_000_001])
def test_a_chance_outside_one_per_million_to_always_is_refused(redis_url, chance):
    with pytest.raises(ValueError, match="per million"):
        calls_until_requeue(redis_url, chance)
