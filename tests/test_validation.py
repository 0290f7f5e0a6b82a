import json

import pytest

from shared.validation import MAX_BODY_BYTES, InvalidSignup, parse_signup

JSON = "application/json"


def test_a_good_signup_gives_the_address():
    assert parse_signup(JSON, b'{"email": "ada@example.com"}') == "ada@example.com"
    assert parse_signup("application/json; charset=utf-8",
                        json.dumps({"email": "b@c.io"}).encode()) == "b@c.io"


@pytest.mark.parametrize("content_type, body, status", [
    ("text/plain", b'{"email": "ada@example.com"}', 415),
    (None, b'{"email": "ada@example.com"}', 415),
    (JSON, b"x" * (MAX_BODY_BYTES + 1), 413),
    (JSON, b"{", 400),
    (JSON, b"\xff\xfe", 400),
    (JSON, b"[1, 2]", 400),
    (JSON, b'"ada@example.com"', 400),
    (JSON, b"{}", 400),
    (JSON, b'{"email": 42}', 400),
    (JSON, b'{"email": "not-an-address"}', 400),
    (JSON, b'{"email": "a b@example.com"}', 400),
    (JSON, b'{"email": "ada@example"}', 400),
    (JSON, json.dumps({"email": "a" * 250 + "@example.com"}).encode(), 400),
])
def test_bad_signups_are_refused_with_the_right_status(content_type, body, status):
    with pytest.raises(InvalidSignup) as refused:
        parse_signup(content_type, body)
    assert refused.value.status == status
    assert str(refused.value)  # a message a client can act on
