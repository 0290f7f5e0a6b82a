"""Send the welcome email, optionally with a Message-ID of your choosing.

A fixed ``Message-ID`` can serve as an idempotency key, but only with a
provider that honours it: one that has already accepted a message with that
id accepts the retry without delivering it twice, as
``FlakySmtp(dedupe=True)`` does. SMTP itself does not require that.
"""

from __future__ import annotations

import smtplib

from shared.jobs import welcome_message


def send_welcome(address: str, *, host: str, port: int, timeout: float | None = 2.0,
                 message_id: str | None = None) -> None:
    """Deliver the welcome email over SMTP; ``timeout=None`` waits forever.

    Raises ``OSError`` (``smtplib.SMTPException`` included) when the
    provider cannot be reached, refuses the message, or the reply is lost.
    """
    message = welcome_message(address)
    if message_id is not None:
        message["Message-ID"] = message_id
    # local_hostname skips a reverse-DNS lookup that can hang on a laptop offline.
    # timeout=None makes the socket block (the stubs say float; socket takes None).
    with smtplib.SMTP(host, port, timeout=timeout,  # type: ignore[arg-type]
                      local_hostname="app.localhost") as smtp:
        smtp.send_message(message)
