import io
import smtplib

import pytest
from PIL import Image

from shared.jobs import render_avatar, send_welcome_email


def test_avatar_is_a_png_thumbnail_of_the_asked_size():
    image = Image.open(io.BytesIO(render_avatar("ada@example.com", size=64)))
    assert image.format == "PNG"
    assert image.size == (64, 64)


def test_avatar_is_the_same_for_the_same_address_and_differs_between_addresses():
    assert render_avatar("ada@example.com") == render_avatar("ADA@example.com")
    assert render_avatar("ada@example.com") != render_avatar("bob@example.com")


@pytest.mark.parametrize("size", [0, 7, 5000])
def test_avatar_refuses_silly_sizes(size):
    with pytest.raises(ValueError, match="size"):
        render_avatar("ada@example.com", size=size)


def test_welcome_email_arrives_in_the_sink(fast_sink):
    send_welcome_email("ada@example.com", smtp_host=fast_sink.host, smtp_port=fast_sink.port)
    [message] = fast_sink.inbox
    assert message.recipients == ("ada@example.com",)
    assert message.subject == "Welcome aboard!"
    assert "ada@example.com" in message.body


def test_welcome_email_fails_loudly_when_the_provider_is_down(closed_port):
    with pytest.raises((OSError, smtplib.SMTPException)):
        send_welcome_email("ada@example.com", smtp_host="127.0.0.1", smtp_port=closed_port,
                           timeout=2)
