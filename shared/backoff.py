"""How long to wait before trying a failed job again: capped exponential backoff, full jitter.

Retry number ``n`` (1 for the first retry) waits a random time between 0 and
``min(cap, base * 2 ** (n - 1))`` seconds. The ceiling doubles with each
failure, so a provider that is down gets fewer and fewer knocks; the cap
keeps a long outage from pushing retries out to hours; and the randomness
("full jitter") spreads clients that failed at the same moment, so they do
not all come back at the same moment either.
"""

from __future__ import annotations

import random
import threading


def backoff_ceiling(retry: int, *, base: float, cap: float) -> float:
    """The longest wait before retry number ``retry``: ``min(cap, base * 2 ** (retry - 1))``."""
    _check(retry, base, cap)
    # 2 ** 1000 is a float overflow; the cap is reached long before.
    exponent = min(retry - 1, 64)
    return min(cap, base * 2.0 ** exponent)


def backoff_delay(retry: int, *, base: float, cap: float,
                  rng: random.Random | None = None) -> float:
    """A wait before retry number ``retry``, uniform in ``[0, backoff_ceiling(...)]``."""
    ceiling = backoff_ceiling(retry, base=base, cap=cap)
    return (rng or random).uniform(0.0, ceiling)


class Backoff:
    """Backoff settings with their own random source, safe to share between threads."""

    def __init__(self, base: float = 0.1, cap: float = 2.0, seed: int | None = None) -> None:
        _check(1, base, cap)
        self.base, self.cap = base, cap
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def ceiling(self, retry: int) -> float:
        return backoff_ceiling(retry, base=self.base, cap=self.cap)

    def delay(self, retry: int) -> float:
        with self._lock:
            return backoff_delay(retry, base=self.base, cap=self.cap, rng=self._rng)

    def __repr__(self) -> str:
        return f"<Backoff base={self.base:g}s cap={self.cap:g}s full jitter>"


def _check(retry: int, base: float, cap: float) -> None:
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 1:
        raise ValueError(f"retry counts from 1 (the first retry), got {retry!r}")
    if not base > 0:
        raise ValueError(f"base must be more than 0 seconds, got {base!r}")
    if not cap >= base:
        raise ValueError(f"cap must be at least base ({base!r} s), got {cap!r}")
