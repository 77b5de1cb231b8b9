"""Classify what OpenSearch answered, in one place (after Vector's ``retry.rs``).

A bulk *request* that fails as a whole (connection refused, timeout, 429,
5xx) is sent again unchanged after a backoff: the cluster is unreachable or
overloaded, so consumption pauses until it answers.  In a bulk *reply*, each
item is judged alone: created is done, 409 on ``create`` means the document
is already there, 429 and 5xx items are retried alone, and any other 4xx is
a rejection of the document's content (salvage, then dead-letter).
"""

from __future__ import annotations

import enum
import random
from typing import Any

__all__ = [
    "ItemAction",
    "backoff_delay",
    "classify_bulk_item",
    "classify_request_status",
    "describe_item_error",
]


class ItemAction(enum.Enum):
    """What to do with one bulk item after the cluster answered."""

    INDEXED = "indexed"
    ALREADY_PRESENT = "already_present"
    RETRY = "retry"
    REJECTED = "rejected"


def classify_bulk_item(status: int) -> ItemAction:
    """The action for one ``create`` item by its status."""
    if 200 <= status < 300:
        return ItemAction.INDEXED
    if status == 409:
        return ItemAction.ALREADY_PRESENT
    if status == 429 or status >= 500:
        return ItemAction.RETRY
    return ItemAction.REJECTED


def classify_request_status(status: int) -> str:
    """``ok``, ``throttled`` (429), ``server_error`` (5xx, retried whole),
    ``too_large`` (413: split it) or ``rejected`` (another 4xx for the request)."""
    if status < 300:
        return "ok"
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    if status == 413:
        return "too_large"
    return "rejected"


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: between half and all of
    ``min(maximum, initial * 2**(attempt-1))`` seconds."""
    base = min(maximum, initial * float(2 ** min(max(0, attempt - 1), 60)))
    draw = rng.random() if rng is not None else random.random()  # noqa: S311 - jitter
    return base / 2 + draw * base / 2


def describe_item_error(error: Any) -> tuple[str, str]:
    """``(error type, reason)`` of a bulk item error, including the innermost cause."""
    if not isinstance(error, dict):
        return "unknown", str(error) if error is not None else ""
    kind = str(error.get("type") or "unknown")
    reason = str(error.get("reason") or "")
    cause = error.get("caused_by")
    depth = 0
    while isinstance(cause, dict) and depth < 5:
        extra = cause.get("reason")
        if extra and str(extra) not in reason:
            reason = f"{reason}: {extra}" if reason else str(extra)
        cause = cause.get("caused_by")
        depth += 1
    return kind, reason
