import random
import statistics
import threading

import pytest

from shared.backoff import Backoff, backoff_ceiling, backoff_delay


def test_the_ceiling_doubles_from_base_until_the_cap():
    ceilings = [backoff_ceiling(n, base=0.1, cap=1.0) for n in range(1, 8)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff_ceiling(10_000, base=0.1, cap=5.0) == 5.0  # no overflow


def test_delays_stay_between_zero_and_the_ceiling_and_spread_over_it():
    rng = random.Random(3)
    for retry in (1, 2, 3, 6):
        ceiling = backoff_ceiling(retry, base=0.2, cap=1.0)
        delays = [backoff_delay(retry, base=0.2, cap=1.0, rng=rng) for _ in range(2000)]
        assert 0.0 <= min(delays) and max(delays) <= ceiling
        # Full jitter: uniform on [0, ceiling], so mean ~ ceiling/2, and both ends are used.
        assert statistics.mean(delays) == pytest.approx(ceiling / 2, rel=0.1)
        assert min(delays) < 0.1 * ceiling and max(delays) > 0.9 * ceiling


def test_a_seeded_backoff_repeats_and_is_safe_across_threads():
    assert [Backoff(0.1, 1.0, seed=5).delay(3) for _ in range(3)] == [Backoff(0.1, 1.0, seed=5).delay(3)] * 3
    shared, delays = Backoff(0.1, 1.0, seed=1), []
    threads = [threading.Thread(target=lambda: delays.extend(shared.delay(2) for _ in range(200)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(delays) == 800 and all(0 <= d <= 0.2 for d in delays)


@pytest.mark.parametrize("retry, base, cap, rule", [
    (0, 0.1, 1.0, "counts from 1"), (True, 0.1, 1.0, "counts from 1"),
    (1, 0.0, 1.0, "base must be more than 0"), (1, 0.5, 0.1, "cap must be at least base"),
])
def test_bad_arguments_name_the_rule(retry, base, cap, rule):
    with pytest.raises(ValueError, match=rule):
        backoff_delay(retry, base=base, cap=cap)
