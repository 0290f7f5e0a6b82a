"""One way to put an exception into words, for logs, job status and messages."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """``"ConnectionRefusedError: [Errno 111] Connection refused"``, or the bare type."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
