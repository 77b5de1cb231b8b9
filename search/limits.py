"""Per-identity limits of the search API: a request rate limit and live-tail slots.

Both are decided synchronously, before the request's first ``await``, so
concurrent requests cannot all pass a check that only one of them should.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter", "TailSlot", "TailSlots", "retry_after_header"]


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """key -> (tokens, when they were counted)."""

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else seconds until a token is due."""
        now = self._clock()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._forget_full(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled, so memory follows active keys only."""
        if len(self._buckets) < 4096:
            return
        full_after = self._burst / self._rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


@dataclass(slots=True)
class TailSlot:
    """One live tail's place under the caps; release it exactly once."""

    owner: TailSlots
    key: str
    released: bool = False

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        if not self.released:
            self.released = True
            self.owner._release(self.key)


class TailSlots:
    """Counts open live tails, globally and per identity, against their caps."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self.open = 0
        self._by_key: dict[str, int] = {}

    def take(self, key: str) -> TailSlot | str:
        """A slot, or the cap that is full (``global`` or ``identity``); never awaits."""
        if self.open >= self.total:
            return "global"
        if self._by_key.get(key, 0) >= self.per_key:
            return "identity"
        self.open += 1
        self._by_key[key] = self._by_key.get(key, 0) + 1
        return TailSlot(self, key)

    def held_by(self, key: str) -> int:
        """Tails ``key`` has open now."""
        return self._by_key.get(key, 0)

    def _release(self, key: str) -> None:
        self.open -= 1
        left = self._by_key.get(key, 0) - 1
        if left > 0:
            self._by_key[key] = left
        else:
            self._by_key.pop(key, None)
