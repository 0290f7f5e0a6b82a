"""Lesson 07, section 3: the rate-limited provider and the rate-limit experiments, on real parts."""

from __future__ import annotations

import smtplib
import threading
import time

import pytest
from dramatiq.rate_limits import ConcurrentRateLimiter, WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from shared.production.rate_limits import (
    Run, burst, clock_second_leak, peak_per_window, per_window_series, plot_rates,
    rate_lab_leftovers)
from shared.retries.flaky_smtp import RATE_LIMITED, Answer, FlakySmtp
from shared.retries.lab import RetryLab
from shared.retries.mail import send_welcome


def _send(smtp: FlakySmtp, address: str) -> int:
    """Send one email; the provider's code (250 when accepted)."""
    try:
        send_welcome(address, host=smtp.host, port=smtp.port)
    except smtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[address][0]
    return 250


def test_the_provider_takes_k_a_second_and_answers_421_above():
    with FlakySmtp(rate_limit=3) as smtp:
        codes = [_send(smtp, f"u{i}@example.com") for i in range(5)]
        assert codes == [250, 250, 250, 421, 421], codes
        first = smtp.inbox[0].received_at
        time.sleep(max(0.0, first + 1.05 - time.perf_counter()))
        assert _send(smtp, "later@example.com") == 250, "the oldest send left the second"
    assert len(smtp.inbox) == 4
    assert len(smtp.counted) == 4 and peak_per_window(smtp.counted) == 3
    assert [a.code for a in smtp.answers].count(421) == 2
    assert RATE_LIMITED.startswith("421 ")


def test_refused_attempts_do_not_count_toward_the_limit():
    with FlakySmtp(rate_limit=2, bounce={"nobody@example.com"}) as smtp:
        assert _send(smtp, "nobody@example.com") == 550
        assert [_send(smtp, "a@example.com"), _send(smtp, "b@example.com")] == [250, 250]


def test_no_rate_limit_is_the_old_behaviour():
    with FlakySmtp() as smtp:
        assert smtp.rate_limit == 0
        assert [_send(smtp, f"u{i}@example.com") for i in range(30)] == [250] * 30
    with pytest.raises(ValueError, match="rate_limit"):
        FlakySmtp(rate_limit=-1)


def test_peak_per_window_counts_any_one_second_span():
    assert peak_per_window([]) == 0
    assert peak_per_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert peak_per_window([0.0, 1.0, 2.0]) == 1
    assert peak_per_window([0.9] * 5 + [1.1] * 5) == 10


def test_per_window_series_counts_the_second_before_each_step():
    xs, ys = per_window_series([10.0, 10.2, 11.5], start=10.0, end=12.0, step=0.5)
    assert xs == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert ys == [1, 2, 1, 1, 1]


def _run(**overrides) -> Run:
    values = dict(label="x", sent=4, delivered=4, duplicates=0, dead_letters=0, dead_for_550=0,
                  deliverable=4, attempts=4, waits=0, most_retries=0,
                  answers=tuple(Answer(f"u{i}", 250, 100.0 + i * 0.1) for i in range(4)),
                  accepted_at=tuple(100.0 + i * 0.1 for i in range(4)),
                  start=100.0, seconds=0.3, limit=20)
    values.update(overrides)
    return Run(**values)


def test_the_report_prints_clear_cut_counts_and_shares_otherwise():
    text = _run().report()
    assert "emails delivered:" in text and "4 of the 4 with a real mailbox" in text
    assert "within the limit" in text and "provider's 421 answers:" in text
    text = _run(delivered=3, dead_letters=1, limit=2).report()
    assert "75% of the 4" in text and "25%" in text and "over the limit (2.0x of it)" in text
    assert "421" not in _run().report(provider=False)


def test_a_burst_through_a_real_worker_is_counted():
    with FlakySmtp(rate_limit=5, bounce={"user3@example.com"}) as smtp, \
            RetryLab(worker_threads=4) as lab:
        @lab.actor(max_retries=0)
        def send_email(address):
            send_welcome(address, host=smtp.host, port=smtp.port)

        lab.start()
        run = burst(lab, smtp, send_email, 12, label="burst", timeout=15)
    assert run.sent == 12 and run.deliverable == 11
    assert run.dead_for_550 == 1
    # The provider takes 5 in the first second; max_retries=0, so each 421 is a dead letter.
    # (On a very slow machine the 12 sends may spread past one second: more get through.)
    assert 5 <= run.delivered < 11, run.report()
    assert run.dead_letters == 12 - run.delivered
    assert run.refused == 11 - run.delivered
    assert run.busiest_second > run.limit == 5


def test_window_rate_limiter_grants_twice_its_limit_across_a_clock_second():
    with RetryLab() as lab:
        backend = RedisBackend(url=lab.url)
        try:
            limiter = WindowRateLimiter(backend, f"{lab.namespace}:limit:t", limit=5, window=1)
            granted, span = clock_second_leak(limiter)
        finally:
            backend.client.close()
    assert granted == 10, f"expected 5 before the turn and 5 after, got {granted}"
    assert span < 1.0


def test_a_leaked_concurrent_slot_outlives_its_ttl_under_traffic():
    """Section 3's claim: the Redis backend writes the counter back with its ttl on every
    granted acquire and every release, so a slot nobody releases expires only after a quiet
    spell as long as the ttl."""
    with RetryLab() as lab:
        backend = RedisBackend(url=lab.url)
        try:
            slots = ConcurrentRateLimiter(backend, f"{lab.namespace}:limit:t", limit=3, ttl=100)
            assert slots._acquire()  # the killed worker's slot
            start = time.perf_counter()
            while time.perf_counter() - start < 0.4:
                with slots.acquire(raise_on_failure=False) as acquired:
                    assert acquired
                    time.sleep(0.01)
            assert int(backend.client.get(slots.key)) == 1
            assert backend.client.pttl(slots.key) > 50
            time.sleep(0.25)
            assert not backend.client.exists(slots.key)
        finally:
            backend.client.close()


def test_plot_and_leftovers():
    before = threading.active_count()
    figure = plot_rates([_run(), _run(label="y", limit=2)])
    assert len(figure.axes) == 2
    import matplotlib.pyplot as plt
    plt.close(figure)
    with FlakySmtp() as smtp, RetryLab(worker_threads=2) as lab:
        @lab.actor
        def noop():
            pass

        lab.start()
    assert rate_lab_leftovers([smtp], [lab], before).startswith("left behind: 0 ")
