import smtplib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.jobs import send_welcome_email
from shared.smtp_sink import SmtpSink
from shared.web import PortInUse


def test_the_sink_takes_at_least_its_delay_to_accept_a_message(sink):
    start = time.perf_counter()
    send_welcome_email("ada@example.com", smtp_host=sink.host, smtp_port=sink.port)
    assert time.perf_counter() - start >= sink.delay
    assert [m.recipients for m in sink.inbox] == [("ada@example.com",)]


def test_the_sink_serves_several_senders_at_once(sink):
    addresses = [f"user{i}@example.com" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda a: send_welcome_email(a, smtp_host=sink.host,
                                                   smtp_port=sink.port), addresses))
    inbox = sink.inbox
    assert sorted(r for m in inbox for r in m.recipients) == addresses
    # All four sat in the sink's delay together: the last arrived before
    # the first could have been followed by three more one at a time.
    spread = max(m.received_at for m in inbox) - min(m.received_at for m in inbox)
    assert spread < 3 * sink.delay


def test_the_sink_calls_back_on_delivery_and_can_be_cleared():
    seen = []
    with SmtpSink(delay=0, on_delivery=seen.append) as sink:
        send_welcome_email("ada@example.com", smtp_host=sink.host, smtp_port=sink.port)
        assert [m.recipients for m in seen] == [("ada@example.com",)]
        sink.clear()
        assert sink.inbox == []


def test_a_taken_port_is_reported_with_the_fix(taken_port):
    with pytest.raises(PortInUse, match="already in use"):
        SmtpSink(port=taken_port).start()


def test_stop_closes_the_port_and_is_idempotent():
    sink = SmtpSink(delay=0).start()
    port = sink.port
    sink.stop()
    sink.stop()
    assert not sink.running
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=2)


def test_negative_delay_is_refused():
    with pytest.raises(ValueError, match="delay"):
        SmtpSink(delay=-1)


# -- refusing attempts (lesson 02 retries, lesson 06 failure rates) -------------

from shared.smtp_sink import refuse_first, refuse_share  # noqa: E402


def _send(sink, address):
    send_welcome_email(address, smtp_host=sink.host, smtp_port=sink.port, timeout=10)


def test_refuse_first_refuses_each_address_k_times_with_a_temporary_error():
    with SmtpSink(delay=0, refuse=refuse_first(2)) as sink:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                _send(sink, "ada@example.com")
            assert refused.value.smtp_code == 451
        _send(sink, "ada@example.com")
        with pytest.raises(smtplib.SMTPDataError):
            _send(sink, "bob@example.com")  # another address gets its own first tries
        attempts = sink.attempts
    assert [(a.recipients[0][:3], a.tries, a.refused) for a in attempts] == [
        ("ada", 1, True), ("ada", 2, True), ("ada", 3, False), ("bob", 1, True)]
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert [m.recipients for m in sink.inbox] == [("ada@example.com",)]


def test_refuse_first_can_count_all_attempts_and_clear_starts_again():
    with SmtpSink(delay=0, refuse=refuse_first(1, per_recipient=False)) as sink:
        with pytest.raises(smtplib.SMTPDataError):
            _send(sink, "ada@example.com")
        _send(sink, "bob@example.com")
        sink.clear()
        assert sink.attempts == [] and sink.inbox == []
        with pytest.raises(smtplib.SMTPDataError):
            _send(sink, "bob@example.com")


def test_refuse_share_refuses_about_that_share_and_repeats_with_its_seed():
    def pattern(seed):
        policy = refuse_share(0.3, seed=seed)
        return [policy(None) for _ in range(2000)]

    first = pattern(7)
    assert first == pattern(7)
    assert 0.2 < sum(first) / len(first) < 0.4
    assert not any(refuse_share(0.0)(None) for _ in range(100))
    assert all(refuse_share(1.0)(None) for _ in range(100))


def test_refusal_policies_reject_bad_arguments_with_the_rule():
    with pytest.raises(ValueError, match=">= 0"):
        refuse_first(-1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        refuse_share(1.5)
    with pytest.raises(ValueError, match="refuse_first"):
        SmtpSink(refuse="yes")
