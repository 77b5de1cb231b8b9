"""Reconnect delays: doubling, capped, with equal jitter."""

from __future__ import annotations

from collector.kube.watch import Backoff


def test_delays_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    """Each failure doubles the ceiling; the delay lies between half and all of it."""
    low = Backoff(0.5, 4.0, rand=lambda: 0.0)
    high = Backoff(0.5, 4.0, rand=lambda: 1.0)
    lows = [low.next_delay() for _ in range(6)]
    highs = [high.next_delay() for _ in range(6)]
    assert highs == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert lows == [h / 2 for h in highs]


def test_reset_starts_over() -> None:
    """After a success the next failure waits the initial delay again."""
    backoff = Backoff(1.0, 30.0, rand=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 1.0
