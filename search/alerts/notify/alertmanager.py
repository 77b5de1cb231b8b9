"""Alertmanager's v2 API: ``POST /api/v2/alerts`` with labels, annotations, times and a link.

Grouping, silences, inhibition and routing are then Alertmanager's.  Firing
alerts are sent at every evaluation with no ``endsAt`` (Alertmanager ends an
alert it stops hearing about after its ``resolve_timeout``); a resolved alert
is sent once with ``endsAt``.  Sending the same alert twice, from one
evaluator or two, is harmless: Alertmanager keys alerts by their labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from search.alerts.notify.base import Notification, check_response

__all__ = ["AlertmanagerNotifier", "alertmanager_payload", "rfc3339"]


def rfc3339(ns: int) -> str:
    """``ns`` since the epoch as an RFC 3339 UTC time."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(batch: Sequence[Notification]) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts`` (postableAlerts) for ``batch``."""
    out: list[dict[str, Any]] = []
    for item in batch:
        alert: dict[str, Any] = {
            "labels": dict(item.labels),
            "annotations": dict(item.annotations),
            "startsAt": rfc3339(item.starts_at_ns),
            "generatorURL": item.generator_url,
        }
        if item.ends_at_ns is not None:
            alert["endsAt"] = rfc3339(item.ends_at_ns)
        out.append(alert)
    return out


class AlertmanagerNotifier:
    """Posts alerts to one Alertmanager."""

    resend_firing = True

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.name = "alertmanager"

    async def send(self, client: httpx.AsyncClient, batch: Sequence[Notification]) -> None:
        """One POST of the whole batch."""
        check_response(await client.post(self.url, json=alertmanager_payload(batch)))
