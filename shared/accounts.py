"""The app's accounts: an in-memory table, safe to use from many threads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class AccountExists(Exception):
    """Someone already signed up with this address."""


@dataclass
class Account:
    email: str
    created_at: float = field(default_factory=time.time)
    avatar_png: bytes | None = None
    welcomed: bool = False


class Accounts:
    """Stands in for the database table the signup writes to."""

    def __init__(self) -> None:
        self._rows: dict[str, Account] = {}
        self._lock = threading.Lock()

    def create(self, email: str) -> Account:
        key = email.lower()
        with self._lock:
            if key in self._rows:
                raise AccountExists(email)
            account = self._rows[key] = Account(email)
            return account

    def get(self, email: str) -> Account | None:
        with self._lock:
            return self._rows.get(email.lower())

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)
