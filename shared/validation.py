"""Checks on what a client sends to POST /signup, before any work is done."""

from __future__ import annotations

import json
import re

MAX_BODY_BYTES = 1024
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


class InvalidSignup(ValueError):
    """The request cannot be a signup; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_signup(content_type: str | None, body: bytes) -> str:
    """Return the email address in a signup request, or raise InvalidSignup."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype != "application/json":
        raise InvalidSignup(415, "send JSON: set the header Content-Type: application/json")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidSignup(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidSignup(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidSignup(400, 'the body must be a JSON object like {"email": "ada@example.com"}')
    email = data.get("email")
    if not isinstance(email, str):
        raise InvalidSignup(400, 'the field "email" is missing or not a string')
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidSignup(400, f"{email[:60]!r} does not look like an email address")
    return email
