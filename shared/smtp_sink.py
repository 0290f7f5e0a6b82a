"""A local SMTP server that accepts every message, slowly, like a remote provider.

Real email providers often take hundreds of milliseconds to accept a message.
The sink waits ``delay`` seconds before it answers ``250 OK`` to the message
data, so code that sends email sees that cost for real, over a real SMTP
conversation on loopback. What arrives is kept in :attr:`SmtpSink.inbox`.

A provider also says "not now" at times. ``refuse=`` takes a policy, a
function of each :class:`Attempt` that returns True to refuse it with a
temporary error (``451``, which ``smtplib`` raises as ``SMTPDataError``):
:func:`refuse_first` refuses each address's first tries, :func:`refuse_share`
a random share of all attempts. :attr:`SmtpSink.attempts` lists every
attempt, refused or not, with when it began.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

from shared.net import PortInUse, free_port


@dataclass(frozen=True)
class Delivered:
    """One message the sink accepted."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    received_at: float  # time.time()


@dataclass(frozen=True)
class Attempt:
    """One message a client tried to hand over, refused or not."""

    number: int  # counted from 1 over the sink's life
    recipients: tuple[str, ...]
    tries: int  # attempts for these same recipients so far, this one included
    started_at: float  # time.time() when the message data arrived
    refused: bool = False


RefusalPolicy = Callable[[Attempt], bool]
REFUSAL = "451 4.3.0 Try again later: the provider is busy"


def refuse_first(k: int, *, per_recipient: bool = True) -> RefusalPolicy:
    """Refuse the first ``k`` attempts for each address (or, ``per_recipient=False``,
    the sink's first ``k`` attempts in all); accept every later one."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a whole number >= 0, got {k!r}")

    def refuses(attempt: Attempt) -> bool:
        return (attempt.tries if per_recipient else attempt.number) <= k

    refuses.__name__ = f"refuse_first({k})"
    return refuses


def refuse_share(share: float, *, seed: int = 0) -> RefusalPolicy:
    """Refuse each attempt with probability ``share``, from a seeded random source."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be between 0 and 1, got {share!r}")
    rng, lock = random.Random(seed), threading.Lock()

    def refuses(attempt: Attempt) -> bool:
        with lock:
            return rng.random() < share

    refuses.__name__ = f"refuse_share({share:g})"
    return refuses


class _SlowHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        if self._sink._attempt(tuple(envelope.rcpt_tos)).refused:
            return REFUSAL
        await asyncio.sleep(self._sink.delay)
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        self._sink._deliver(Delivered(
            sender=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            subject=str(message["Subject"] or ""),
            body=body.get_content() if body is not None else "",
            received_at=time.time(),
        ))
        return "250 OK: queued"


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps what it receives.

    >>> with SmtpSink(delay=0.5) as sink:
    ...     send_welcome_email("ada@example.com", smtp_host=sink.host, smtp_port=sink.port)
    ...     sink.inbox[0].subject
    """

    host = "127.0.0.1"

    def __init__(self, delay: float = 0.5, port: int = 0,
                 on_delivery: Callable[[Delivered], None] | None = None,
                 refuse: RefusalPolicy | None = None) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        if refuse is not None and not callable(refuse):
            raise ValueError("refuse must be a function of an Attempt, such as refuse_first(2)")
        self.delay = delay
        self.port = port
        self.on_delivery = on_delivery
        self.refuse = refuse
        self._inbox: list[Delivered] = []
        self._attempts: list[Attempt] = []
        self._tries: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def inbox(self) -> list[Delivered]:
        """A copy of every message received so far, oldest first."""
        with self._lock:
            return list(self._inbox)

    @property
    def attempts(self) -> list[Attempt]:
        """A copy of every attempt so far (delivered, refused or in progress), oldest first."""
        with self._lock:
            return list(self._attempts)

    def clear(self) -> None:
        """Forget what arrived and every attempt (the refusal counts start again)."""
        with self._lock:
            self._inbox.clear()
            self._attempts.clear()
            self._tries.clear()

    def _attempt(self, recipients: tuple[str, ...]) -> Attempt:
        with self._lock:  # the policy runs under the lock too: numbers never repeat
            tries = self._tries[recipients] = self._tries.get(recipients, 0) + 1
            attempt = Attempt(len(self._attempts) + 1, recipients, tries, time.time())
            if self.refuse is not None and self.refuse(attempt):
                attempt = Attempt(attempt.number, recipients, tries, attempt.started_at, True)
            self._attempts.append(attempt)
        return attempt

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        if self._controller is None:
            self.port, self._controller = start_controller(
                _SlowHandler(self), self.host, self.port, server_hostname="sink.localhost",
                what="the SMTP sink")
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        stop_controller(controller)

    def _deliver(self, message: Delivered) -> None:
        with self._lock:
            self._inbox.append(message)
        if self.on_delivery is not None:
            self.on_delivery(message)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.host}:{self.port}" if self.running else "stopped"
        refuse = f" refuse={getattr(self.refuse, '__name__', 'custom')}" if self.refuse else ""
        return f"<SmtpSink {state} delay={self.delay}s{refuse} inbox={len(self.inbox)}>"


def start_controller(handler, host: str, asked_port: int, *, server_hostname: str,
                     what: str) -> tuple[int, Controller]:
    """Start an aiosmtpd server for ``handler``; return its port and controller.

    ``asked_port`` 0 picks a free port (and another if that one is taken
    meanwhile); a taken ``asked_port`` raises :class:`PortInUse` naming ``what``.
    ``server_hostname`` skips a reverse-DNS lookup that can hang offline.
    """
    if asked_port and _taken(host, asked_port):  # aiosmtpd would take ready_timeout to say so
        raise PortInUse(host, asked_port, what=what)
    for _ in range(5):
        port = asked_port or free_port(host)
        controller = Controller(handler, hostname=host, port=port,
                                server_hostname=server_hostname, ready_timeout=5.0)
        try:
            controller.start()
        except OSError as exc:
            _close_loop(controller)
            if exc.errno != errno.EADDRINUSE:
                raise
            if asked_port:
                raise PortInUse(host, asked_port, what=what) from None
            continue  # a free port was taken meanwhile: pick another
        except BaseException:  # e.g. aiosmtpd's TimeoutError: its server may be up already
            try:
                controller.stop(no_assert=True)
            finally:
                _close_loop(controller)
            raise
        return port, controller
    raise RuntimeError(f"could not find a free port for {what}")


def _taken(host: str, port: int) -> bool:
    """Whether a server already listens on ``port`` (bound as asyncio binds: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def stop_controller(controller: Controller | None) -> None:
    """Stop a server :func:`start_controller` started (None: nothing to do)."""
    if controller is not None:
        controller.stop()
        _close_loop(controller)


def _close_loop(controller: Controller) -> None:
    loop = controller.loop
    if not loop.is_closed() and not loop.is_running():
        loop.close()
