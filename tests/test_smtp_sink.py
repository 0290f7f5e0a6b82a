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
