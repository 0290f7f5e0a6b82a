"""Which email errors deserve a retry, and the retry policy of the email job.

The app's runtime follows it: the ``dramatiq`` mode's email actor
(:mod:`shared.modes.dramatiq.actors`) has ``retry_when=retry_transient(max_retries)``,
``max_retries`` being ``EMAIL_MAX_RETRIES`` unless the mode is told otherwise.
Lesson 06 (:mod:`shared.retries`) experiments with it; :func:`retry_email` is
that same rule with the default bound.

A retry helps only when the next attempt can go differently. The provider
says which case it is in its reply code: ``4xx`` means "not now, try again
later" (transient), ``5xx`` means "never" (permanent). Network trouble is
transient too: a dropped connection, and any other ``OSError`` (refused, reset,
timed out, no route to host, a name that does not resolve). So is a
``dramatiq.Retry`` the job raised itself: it asks to be tried again later.
Anything else (a ``KeyError``, a ``TypeError``) is a bug in your code:
retrying it only repeats the bug. (``FileNotFoundError`` is an ``OSError``
too, and the rule would retry it; an email job opens no files.)
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import dramatiq

#: At most this many retries (so 1 + 12 attempts) of a transient email error. With a
#: provider that refuses half its attempts at random, an address is still unmailed
#: after all of them once in 8192 (0.5 ** 13).
EMAIL_MAX_RETRIES = 12


def is_transient(exc: BaseException) -> bool:
    """True when another attempt may succeed: a 4xx reply, network trouble, or a ``dramatiq.Retry``."""
    if isinstance(exc, dramatiq.Retry):
        return True  # the job itself asks to be tried again later
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException):
        return False  # e.g. the server lacks a feature we need: it will still lack it
    return isinstance(exc, OSError)  # network trouble: refused, reset, timed out, unreachable, unresolved


def retry_email(retries: int, exc: BaseException) -> bool:
    """``retry_transient(EMAIL_MAX_RETRIES)``, spelt out: transient errors, a bounded number of times.

    ``retries`` is how many retries came before this failure (0 after the first attempt).
    """
    return retries < EMAIL_MAX_RETRIES and is_transient(exc)


def retry_transient(max_retries: int) -> Callable[[int, BaseException], bool]:
    """A ``retry_when`` that retries transient errors, at most ``max_retries`` times."""
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, got {max_retries}")

    def retry_when(retries: int, exc: BaseException) -> bool:
        return retries < max_retries and is_transient(exc)

    return retry_when


#: The email actor's backoff, in ms, unless the mode is told otherwise (``min_backoff``,
#: ``max_backoff``): 0.5-1 s after the first failure, doubling, never over 10 s. The
#: ``dramatiq`` mode's email actor takes these, with ``retry_transient(max_retries)``,
#: from its :class:`~shared.modes.dramatiq.broker.BrokerConfig`.
EMAIL_MIN_BACKOFF, EMAIL_MAX_BACKOFF = 500, 10_000  # ms
