"""A generic JSON webhook, signed with HMAC-SHA256.

Body: ``{"version": 1, "alerts": [...]}``, one object per notification.
Headers: ``X-Podlog-Signature: sha256=<hex HMAC of the body with the shared
secret>`` (when a secret is set), ``X-Podlog-Timestamp`` (seconds, also
signed: the HMAC covers ``<timestamp>.<body>``) and ``X-Podlog-Idempotency-Key``
(the keys of the batch's notifications, comma separated) so a receiver can
drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

from search.alerts.notify.alertmanager import rfc3339
from search.alerts.notify.base import Notification, check_response

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookNotifier", "sign", "webhook_payload"]

SIGNATURE_HEADER = "X-Podlog-Signature"
TIMESTAMP_HEADER = "X-Podlog-Timestamp"
KEY_HEADER = "X-Podlog-Idempotency-Key"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_payload(batch: Sequence[Notification]) -> dict[str, Any]:
    """The JSON body for ``batch``."""
    return {
        "version": 1,
        "alerts": [
            {
                "rule": item.rule,
                "status": item.status,
                "labels": dict(item.labels),
                "annotations": dict(item.annotations),
                "group": dict(item.group),
                "count": item.count,
                "sample": item.sample,
                "startsAt": rfc3339(item.starts_at_ns),
                "endsAt": rfc3339(item.ends_at_ns) if item.ends_at_ns is not None else None,
                "generatorURL": item.generator_url,
                "key": item.key,
            }
            for item in batch
        ],
    }


class WebhookNotifier:
    """Posts signed JSON to one URL, on firing and resolved transitions."""

    resend_firing = False

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.name = "webhook"

    async def send(self, client: httpx.AsyncClient, batch: Sequence[Notification]) -> None:
        """One signed POST of the whole batch."""
        body = json.dumps(webhook_payload(batch), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            KEY_HEADER: ",".join(item.key for item in batch),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        check_response(await client.post(self.url, content=body, headers=headers))
