"""A Slack incoming webhook (and the compatible ones of Mattermost and Rocket.Chat).

One message per notification: ``text`` as the fallback line, and Block Kit
``blocks``, a header and a section with the annotations, the count, a sample
line and a link to the matching lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from search.alerts.notify.base import Notification, check_response

__all__ = ["SlackNotifier", "slack_payload"]

_EMOJI = {"firing": ":red_circle:", "resolved": ":large_green_circle:"}
_MAX_SAMPLE = 500


def _escape(text: str) -> str:
    """Slack's mrkdwn escaping of &, < and >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(item: Notification) -> dict[str, Any]:
    """The incoming-webhook body of one notification."""
    group = ", ".join(f"{k}={v}" for k, v in item.group.items())
    title = f"[{item.status.upper()}] {item.rule}" + (f" ({group})" if group else "")
    severity = item.labels.get("severity", "")
    lines = [f"*{_escape(k)}*: {_escape(v)}" for k, v in item.annotations.items()]
    lines.append(f"*count*: {item.count}  *severity*: {_escape(severity)}")
    if item.sample:
        lines.append("```" + _escape(item.sample[:_MAX_SAMPLE]) + "```")
    lines.append(f"<{item.generator_url}|Open the matching lines>")
    return {
        "text": f"{_EMOJI[item.status]} {title}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
        ],
    }


class SlackNotifier:
    """Posts one message per notification to an incoming-webhook URL."""

    resend_firing = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = "slack"

    async def send(self, client: httpx.AsyncClient, batch: Sequence[Notification]) -> None:
        """One POST per notification (Slack takes one message per request)."""
        for item in batch:
            check_response(await client.post(self.url, json=slack_payload(item)))
