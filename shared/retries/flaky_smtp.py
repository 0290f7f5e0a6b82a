"""Mail providers that fail on purpose, over real SMTP on loopback.

:class:`FlakySmtp` is a real SMTP server (aiosmtpd) whose failures you
choose, each the way real providers fail:

- ``fail_first=k``: the first ``k`` attempts for each address get
  ``451 4.3.0 try again later`` (a *transient* answer: come back later).
- ``refuse_share=0.5``: that share of attempts, picked by a seeded random
  generator, gets the same ``451``.
- ``bounce={"nobody@example.com"}``: those addresses get
  ``550 5.1.1 no such mailbox`` (a *permanent* answer: never retry).
- ``lose_replies=k``: the first ``k`` messages for each address are
  accepted, kept in the inbox, and then the connection breaks before the
  ``250 OK`` reaches the sender. The sender sees an error although the
  email went out: the duplicate-email case.
- ``rate_limit=k``: at most ``k`` recipients accepted in any one-second
  span (a sliding second, not a clock second); an attempt above it gets
  ``421 4.7.0`` (transient: slow down and come back). Refused attempts do
  not count toward the limit.
- ``dedupe=True``: a message whose ``Message-ID`` was already accepted is
  answered ``250`` again but not delivered twice (an idempotency key). This is
  the simulated provider's behaviour, not SMTP's: the protocol promises no
  such thing, and real providers differ.

:class:`SilentSmtp` accepts TCP connections and never says a word: the hung
provider that holds a worker thread forever.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from collections.abc import Iterable

from aiosmtpd.controller import Controller

from shared.smtp_sink import start_controller, stop_controller

TRY_LATER = "451 4.3.0 Mailbox busy, try again later"
NO_SUCH_MAILBOX = "550 5.1.1 No such mailbox here"
RATE_LIMITED = "421 4.7.0 Too many messages this second, slow down"
RATE_WINDOW = 1.0  # seconds: ``rate_limit`` counts accepted recipients over any span this long


@dataclass(frozen=True)
class Delivered:
    """One message the provider accepted (and will deliver)."""

    recipient: str
    subject: str
    message_id: str
    received_at: float  # time.perf_counter(), comparable with the lab's attempts


@dataclass(frozen=True)
class Answer:
    """What the provider answered one attempt for one address."""

    recipient: str
    code: int  # 250, 451, 550; 0 when the reply was lost
    at: float  # time.perf_counter()


class FlakySmtp:
    """A real SMTP server on 127.0.0.1 that fails the way you tell it to.

    >>> with FlakySmtp(fail_first=2) as smtp:
    ...     ...  # the first two attempts for each address get 451, the third 250
    """

    host = "127.0.0.1"

    def __init__(self, *, fail_first: int = 0, refuse_share: float = 0.0, seed: int = 6,
                 bounce: Iterable[str] = (), lose_replies: int = 0, dedupe: bool = False,
                 delay: float = 0.0, port: int = 0, rate_limit: int = 0) -> None:
        if fail_first < 0 or lose_replies < 0:
            raise ValueError("fail_first and lose_replies count attempts: use 0 or more")
        if not 0.0 <= refuse_share <= 1.0:
            raise ValueError(f"refuse_share is a share of attempts between 0 and 1, got {refuse_share}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        if rate_limit < 0:
            raise ValueError(f"rate_limit counts recipients a second: use 0 (none) or more, got {rate_limit}")
        self.rate_limit = rate_limit
        self._recent: deque[float] = deque()  # when recently accepted recipients were accepted
        self._counted: list[float] = []  # when each recipient the rate limit counted was accepted
        self.fail_first = fail_first
        self.refuse_share = refuse_share
        self.bounce = {address.lower() for address in bounce}
        self.lose_replies = lose_replies
        self.dedupe = dedupe
        self.delay = delay
        self.port = port
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self._accepted: Counter[str] = Counter()
        self._seen_ids: set[str] = set()
        self._inbox: list[Delivered] = []
        self._answers: list[Answer] = []
        self._controller: Controller | None = None

    # -- what happened -----------------------------------------------------

    @property
    def inbox(self) -> list[Delivered]:
        """Every message accepted for delivery, oldest first (duplicates included)."""
        with self._lock:
            return list(self._inbox)

    @property
    def answers(self) -> list[Answer]:
        """Every answer given to an attempt, oldest first."""
        with self._lock:
            return list(self._answers)

    @property
    def counted(self) -> list[float]:
        """With ``rate_limit``: when each recipient it counted was accepted (RCPT time), oldest first."""
        with self._lock:
            return list(self._counted)

    def received(self, address: str) -> int:
        """How many copies of a message ``address`` was sent."""
        return sum(1 for m in self.inbox if m.recipient == address.lower())

    def answers_for(self, address: str) -> list[int]:
        """The codes answered to each attempt for ``address``: ``[451, 451, 250]``."""
        return [a.code for a in self.answers if a.recipient == address.lower()]

    # -- the SMTP conversation ----------------------------------------------

    def _answer_rcpt(self, address: str) -> str | None:
        """An error reply for this attempt, or None to accept the address."""
        address = address.lower()
        with self._lock:
            self._attempts[address] += 1
            now = time.perf_counter()
            if address in self.bounce:
                reply = NO_SUCH_MAILBOX
            elif self._over_rate_limit(now):
                reply = RATE_LIMITED
            elif self._attempts[address] <= self.fail_first:
                reply = TRY_LATER
            elif self.refuse_share and self._random.random() < self.refuse_share:
                reply = TRY_LATER
            else:
                if self.rate_limit:
                    self._recent.append(now)
                    self._counted.append(now)
                return None
            self._answers.append(Answer(address, int(reply[:3]), now))
        return reply

    def _over_rate_limit(self, now: float) -> bool:
        """Whether accepting one more recipient now would exceed ``rate_limit`` (under the lock)."""
        if not self.rate_limit:
            return False
        while self._recent and self._recent[0] <= now - RATE_WINDOW:
            self._recent.popleft()
        return len(self._recent) >= self.rate_limit

    def _accept(self, recipients: list[str], subject: str, message_id: str) -> bool:
        """Record the message; True when its reply must be lost."""
        now = time.perf_counter()
        lose = False
        with self._lock:
            duplicate = self.dedupe and bool(message_id) and message_id in self._seen_ids
            self._seen_ids.add(message_id)
            for address in (r.lower() for r in recipients):
                self._accepted[address] += 1
                lose = lose or self._accepted[address] <= self.lose_replies
                if not duplicate:
                    self._inbox.append(Delivered(address, subject, message_id, now))
            for address in (r.lower() for r in recipients):
                self._answers.append(Answer(address, 0 if lose else 250, now))
        return lose

    # -- running -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> FlakySmtp:
        if self._controller is None:
            self.port, self._controller = start_controller(
                _Handler(self), self.host, self.port, server_hostname="flaky.localhost",
                what="the flaky SMTP server")
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        stop_controller(controller)

    def __enter__(self) -> FlakySmtp:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.host}:{self.port}" if self.running else "stopped"
        return f"<FlakySmtp {state} inbox={len(self.inbox)}>"


class _Handler:
    def __init__(self, smtp: FlakySmtp) -> None:
        self._smtp = smtp

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        reply = self._smtp._answer_rcpt(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self._smtp.delay:
            await asyncio.sleep(self._smtp.delay)
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        lose = self._smtp._accept(list(envelope.rcpt_tos), str(message["Subject"] or ""),
                                  str(message["Message-ID"] or ""))
        if lose:
            server.transport.abort()  # accepted, but the "250 OK" never reaches the sender
        return "250 OK: queued"


class SilentSmtp:
    """A server that accepts TCP connections and never answers: a hung provider.

    The kernel completes each TCP handshake, so ``connect()`` succeeds, then
    the client waits for a greeting that never comes. :meth:`stop` closes
    the listening socket, which resets every waiting connection.
    """

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self.port = 0

    def start(self) -> SilentSmtp:
        if self._socket is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((self.host, 0))
            listener.listen(64)
            self._socket, self.port = listener, listener.getsockname()[1]
        return self

    def stop(self) -> None:
        listener, self._socket = self._socket, None
        if listener is not None:
            listener.close()

    @property
    def running(self) -> bool:
        return self._socket is not None

    def __enter__(self) -> SilentSmtp:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SilentSmtp {self.host}:{self.port}>" if self.running else "<SilentSmtp stopped>"

