"""The bodies each target receives: Alertmanager's postableAlerts, the signed webhook, Slack."""

from __future__ import annotations

import dataclasses
import json

from search.alerts.notify.alertmanager import alertmanager_payload, rfc3339
from search.alerts.notify.base import Notification
from search.alerts.notify.slack import slack_payload
from search.alerts.notify.webhook import sign, webhook_payload

FIRING = Notification(
    rule="r", status="firing", labels={"alertname": "r", "severity": "warning", "pod": "web-0"},
    annotations={"summary": "3 <errors> & more"}, starts_at_ns=1_700_000_000_123_000_000, ends_at_ns=None,
    generator_url="http://x/?q=a", key="k1", count=3, sample="<script>", group={"pod": "web-0"},
)


def test_alertmanager_gets_rfc3339_times_and_no_ends_at_while_firing() -> None:
    """startsAt is UTC RFC 3339; endsAt appears only once resolved."""
    (alert,) = alertmanager_payload([FIRING])
    assert alert["startsAt"] == "2023-11-14T22:13:20.123000Z" and "endsAt" not in alert
    assert alert["labels"]["pod"] == "web-0" and alert["generatorURL"] == "http://x/?q=a"
    resolved = dataclasses.replace(FIRING, status="resolved", ends_at_ns=1_700_000_060_000_000_000)
    assert alertmanager_payload([resolved])[0]["endsAt"] == rfc3339(1_700_000_060_000_000_000)


def test_the_webhook_signature_covers_timestamp_and_body() -> None:
    """Changing either the timestamp or one byte of the body changes the signature."""
    body = json.dumps(webhook_payload([FIRING])).encode()
    signature = sign("secret", "1700000000", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert signature != sign("secret", "1700000001", body)
    assert signature != sign("secret", "1700000000", body + b" ")
    assert json.loads(body)["alerts"][0]["key"] == "k1"


def test_slack_text_is_escaped_and_links_to_the_lines() -> None:
    """Log text cannot inject Slack markup; the link and the sample are in the section."""
    message = slack_payload(FIRING)
    section = message["blocks"][1]["text"]["text"]
    assert "&lt;errors&gt; &amp; more" in section and "&lt;script&gt;" in section
    assert "<http://x/?q=a|Open the matching lines>" in section
    assert message["blocks"][0]["text"]["text"] == "[FIRING] r (pod=web-0)"
