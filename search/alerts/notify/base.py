"""What a notification is, the interface of a target, and delivery with retries.

Remote failures are classified here once: a connection error, a timeout, 429
and 5xx are retried with exponential backoff under a per-attempt timeout;
other 4xx are final.  A notification that is not delivered is counted
(``podlog_alert_notifications_total{result="failed"}``) and reported to the
caller, which shows it on the rule; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx

from podlog.errors import PodlogError
from search.alerts import events

__all__ = ["Notification", "Notifier", "NotifyError", "check_response", "deliver"]


class NotifyError(PodlogError):
    """A target did not take a notification; ``retriable`` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert's state as sent to a target."""

    rule: str
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    """alertname, severity, the rule's labels and the group's field and value."""
    annotations: Mapping[str, str]
    starts_at_ns: int
    ends_at_ns: int | None
    """When the alert resolved; None while firing."""
    generator_url: str
    """The search page on the rule's query, window and group."""
    key: str
    """Idempotency key: the same (rule, group, window, status) always has the same key."""
    count: int = 0
    sample: str = ""
    group: Mapping[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    """A notification target."""

    name: str
    """Kind and index, for metrics and logs: ``alertmanager``, ``webhook``, ``slack``."""
    resend_firing: bool
    """True when firing alerts are sent at every evaluation (Alertmanager expires them otherwise)."""

    async def send(self, client: httpx.AsyncClient, batch: Sequence[Notification]) -> None:
        """Deliver ``batch`` in one attempt; NotifyError when it was not taken."""


def check_response(response: httpx.Response) -> None:
    """NotifyError for a reply that is not 2xx: retriable on 408, 429 and 5xx."""
    if response.is_success:
        return
    retriable = response.status_code in (408, 429) or response.status_code >= 500
    raise NotifyError(f"HTTP {response.status_code}: {response.text[:200]}", retriable=retriable)


async def deliver(
    notifier: Notifier,
    client: httpx.AsyncClient,
    batch: Sequence[Notification],
    *,
    attempts: int,
    backoff_seconds: float,
    timeout_seconds: float,
) -> str | None:
    """Send ``batch`` with retries; None when delivered, else the last error (already counted and logged)."""
    if not batch:
        return None
    delay = backoff_seconds
    error = "not attempted"
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(timeout_seconds):
                await notifier.send(client, batch)
        except NotifyError as exc:
            error, retriable = str(exc), exc.retriable
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            error, retriable = repr(exc) if not isinstance(exc, TimeoutError) else "timed out", True
        else:
            events.notifications_sent(notifier.name, len(batch))
            return None
        if not retriable or attempt == attempts:
            break
        events.notification_retried(notifier.name, attempt, error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
    events.notifications_failed(notifier.name, len(batch), error)
    return error
