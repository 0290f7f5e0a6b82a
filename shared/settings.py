"""What a process needs to run jobs, as plain values that travel in the environment.

A worker in another process cannot be handed live objects (a socket, a
database connection). It gets :class:`Settings` through environment
variables instead, and opens its own connections.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

PREFIX = "DEFER_"


@dataclass(frozen=True)
class Settings:
    """Where the mail provider, the store and Redis are, and how big (how costly) avatars get."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_timeout: float = 10.0
    store_path: str = ""
    redis_url: str = ""
    avatar_size: int = 128
    avatar_canvas: int = 2200  # pixels drawn before the thumbnail: the avatar's CPU cost

    def to_env(self) -> dict[str, str]:
        """``{"DEFER_SMTP_HOST": "127.0.0.1", ...}``: add to a child's environment."""
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings a parent put in ``environ``; defaults for the ones it did not."""
        values = {}
        for f in fields(cls):
            text = environ.get(PREFIX + f.name.upper())
            if text is None:
                continue
            kind: type = type(f.default)
            try:
                values[f.name] = kind(text)
            except ValueError:
                raise ValueError(f"{PREFIX}{f.name.upper()}={text!r} is not a valid "
                                 f"{kind.__name__}") from None
        return cls(**values)
