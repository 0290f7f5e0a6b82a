"""The two email actors of lesson 05, declared on whichever broker you give.

``send_reset_email`` is urgent: a person is waiting, on the login page, for
a link. ``send_newsletter`` is bulk: thousands of copies, nobody waits for
any one of them. Both really send over SMTP, and both note when they started
and finished in a Redis list (``<namespace>:log``), so whoever sent them can
measure waits across processes (``time.perf_counter`` is one clock for every
process on Linux).
"""

from __future__ import annotations

import json
import os
import smtplib
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared.modes.dramatiq.broker import BrokerConfig
from shared.priorities.design import Design
from shared.settings import Settings

#: What run_design puts in each worker process's environment, besides Settings.
NAMESPACE_VAR = "DEFER_PRIORITIES_NAMESPACE"  # the run's Redis key prefix
DESIGN_VAR = "DEFER_PRIORITIES_DESIGN"  # the Design, as JSON
GROUP_VAR = "DEFER_PRIORITIES_GROUP"  # which worker group of the design this process is

__all__ = ["RESET", "NEWSLETTER", "EmailActors", "broker_config", "declare_actors",
           "fetched_key", "log_key"]

RESET = "reset"
NEWSLETTER = "newsletter"
SENDER = "no-reply@defer.example"
#: A worker that dies has its held messages handed to others after this long.
HEARTBEAT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class EmailActors:
    """The two actors of one design, bound to one broker."""

    reset_email: dramatiq.Actor
    newsletter: dramatiq.Actor


def broker_config(namespace: str) -> BrokerConfig:
    """Where one run's messages live: the same for the sender and every worker process."""
    return BrokerConfig(namespace=namespace, heartbeat_timeout=HEARTBEAT_TIMEOUT_MS)


def log_key(namespace: str) -> str:
    """The Redis list where every finished email of a run is noted."""
    return f"{namespace}:log"


def fetched_key(namespace: str) -> str:
    """The Redis list where each worker notes when it took a message out of Redis."""
    return f"{namespace}:fetched"


def declare_actors(broker: RedisBroker, design: Design, settings: Settings) -> EmailActors:
    """Declare ``send_reset_email`` and ``send_newsletter`` on ``broker``.

    Queue names and priorities come from ``design``; the mail provider from
    ``settings``. No retries: a failed email is logged as failed, once.
    """
    key = log_key(broker.namespace)

    def deliver(kind: str, address: str, number: int, message: EmailMessage) -> None:
        started = time.perf_counter()
        error = ""
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                              timeout=settings.smtp_timeout,
                              local_hostname="worker.localhost") as smtp:
                smtp.send_message(message)
        except OSError as exc:  # smtplib.SMTPException is an OSError
            error = f"{type(exc).__name__}: {exc}"
        finished = time.perf_counter()
        broker.client.rpush(key, json.dumps({
            "kind": kind, "number": number, "started": started, "finished": finished,
            "worker": f"{os.getpid()}/{threading.get_ident()}",
            "group": os.environ.get(GROUP_VAR, "-1"), "error": error}))

    def send_reset_email(address: str) -> None:
        """Send a password-reset link: someone is waiting for it."""
        deliver(RESET, address, 0, reset_message(address))

    def send_newsletter(address: str, number: int) -> None:
        """Send one copy of the newsletter: nobody waits for any one copy."""
        deliver(NEWSLETTER, address, number, newsletter_message(address, number))

    common: dict[str, Any] = {"broker": broker, "max_retries": 0}
    return EmailActors(
        reset_email=dramatiq.actor(queue_name=design.reset.queue,
                                   priority=design.reset.priority, **common)(send_reset_email),
        newsletter=dramatiq.actor(queue_name=design.newsletter.queue,
                                  priority=design.newsletter.priority, **common)(send_newsletter),
    )


def reset_message(address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, address, "Reset your password"
    message.set_content("Someone asked to reset your password. The link works for 15 minutes.\n")
    return message


def newsletter_message(address: str, number: int) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"] = SENDER, address
    message["Subject"] = f"Our monthly newsletter (copy {number})"
    message.set_content("What we shipped this month, in three short paragraphs.\n")
    return message
