"""The two expensive, non-critical jobs a signup triggers.

Neither is needed to answer "your account exists": that is what makes them
candidates to run later, somewhere else.
"""

from __future__ import annotations

import hashlib
import io
import smtplib
from email.message import EmailMessage

from PIL import Image, ImageDraw, ImageFilter

SENDER = "welcome@defer.example"
AVATAR_CANVAS = 2200  # pixels per side before the thumbnail: sets the CPU cost (~0.2 s)


def welcome_message(address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = address
    message["Subject"] = "Welcome aboard!"
    message.set_content(f"Hi {address},\n\nYour account is ready. Glad to have you.\n")
    return message


def send_welcome_email(address: str, *, smtp_host: str, smtp_port: int,
                       timeout: float = 10.0) -> None:
    """Deliver the welcome email over SMTP (slow: the provider takes its time).

    Raises ``OSError`` (``smtplib.SMTPException`` included) when the provider
    cannot be reached or refuses the message.
    """
    # local_hostname skips a reverse-DNS lookup that can hang on a laptop offline.
    with smtplib.SMTP(smtp_host, smtp_port, timeout=timeout,
                      local_hostname="app.localhost") as smtp:
        smtp.send_message(welcome_message(address))


def render_avatar(address: str, size: int = 128, canvas: int = AVATAR_CANVAS) -> bytes:
    """Draw a large identicon-style picture for ``address``, return a PNG thumbnail.

    Real Pillow work (draw, blur, resample, encode) that costs a few hundred
    milliseconds of CPU: the kind of job that makes a request slow.
    The same address always gives the same picture. ``canvas`` (pixels per
    side drawn before the thumbnail) sets the cost: the default takes about
    0.2 s, half of it about a quarter of that.
    """
    if size < 8 or size > 1024:
        raise ValueError(f"size must be between 8 and 1024 pixels, got {size}")
    if canvas < size or canvas > 8000:
        raise ValueError(f"canvas must be between size ({size}) and 8000 pixels, got {canvas}")
    digest = hashlib.sha256(address.lower().encode()).digest()
    colour = (digest[0], digest[1], digest[2])
    image = Image.new("RGB", (canvas, canvas), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    cell = canvas // 5
    for index in range(15):  # a 5x5 grid, mirrored left to right
        if digest[3 + index] % 2:
            row, col = divmod(index, 3)
            for x in {col, 4 - col}:
                draw.rectangle([x * cell, row * cell, (x + 1) * cell - 1, (row + 1) * cell - 1],
                               fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, 12 * canvas // AVATAR_CANVAS)))
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
