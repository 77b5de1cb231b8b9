"""Per-identity limits: the request token bucket and the live-tail slots."""

from __future__ import annotations

from search.limits import RateLimiter, TailSlot, TailSlots, retry_after_header


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    """A full bucket allows `burst` requests at once, then one per 1/rate seconds, per key."""
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert 0.49 < wait <= 0.5
    assert limiter.acquire("b") == 0.0  # another identity has its own bucket
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    now[0] += 100
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refills to the burst, no further


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    """Retry-After rounds up and never says 0."""
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"


def test_tail_slots_enforce_the_global_and_per_identity_caps() -> None:
    """Slots are refused past either cap and come back exactly once when released."""
    slots = TailSlots(total=3, per_key=2)
    a1, a2 = slots.take("a"), slots.take("a")
    assert isinstance(a1, TailSlot) and isinstance(a2, TailSlot)
    assert slots.take("a") == "identity"
    b1 = slots.take("b")
    assert isinstance(b1, TailSlot)
    assert slots.take("c") == "global"
    a1.release()
    a1.release()  # idempotent
    assert slots.open == 2 and slots.held_by("a") == 1
    again = slots.take("c")
    assert isinstance(again, TailSlot) and slots.open == 3
