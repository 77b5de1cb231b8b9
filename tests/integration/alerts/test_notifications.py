"""Rules evaluated against a real index notify a real Alertmanager, a webhook and a Slack stand-in.

The evaluator runs on a controlled clock (``now_ns``) a few minutes in the
past, so every window it evaluates is complete and Alertmanager sees past
``endsAt`` times as resolved.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from podlog.metrics import sample
from search.alerts.evaluator import Evaluator
from search.alerts.notify.alertmanager import AlertmanagerNotifier
from search.alerts.notify.base import Notifier
from search.alerts.notify.slack import SlackNotifier
from search.alerts.notify.webhook import WebhookNotifier
from search.alerts.rules import Rule, parse_rules
from search.alerts.state import StateStore
from search.backends.base import SearchBackend
from search.config import AlertsConfig
from tests.fixtures.records import ContainerSpec, one_line
from tests.fixtures.servers import wait_for
from tests.integration.alerts.receivers import (
    Receiver,
    active_alerts,
    alertmanager,
    alertmanager_binary,
    http_receiver,
)
from tests.integration.search.loading import (
    embedded_close,
    embedded_open,
    opensearch_load,
    unique_prefix,
)

M = 60 * 10**9
BASE = (time.time_ns() // M - 10) * M
"""A minute boundary ten minutes ago: windows ending here are complete and in the past."""
SECRET = "s3cret"

RULES = """
rules:
  - name: payment-errors
    query: 'level:error AND "payment failed"'
    namespaces: [shop]
    window: 1m
    interval: 1m
    condition: count >= 3
    group_by: pod
    severity: critical
    labels: {team: payments}
    annotations:
      summary: "{{ count }} payment failures in {{ group.pod }}"
      sample: "{{ sample }}"
"""


def _records() -> list[dict[str, Any]]:
    """Five payment failures in shop/pay-0 and one in shop/pay-1 in [BASE-1m, BASE); noise elsewhere."""
    pay0, pay1 = ContainerSpec("shop", "pay-0", "app"), ContainerSpec("shop", "pay-1", "app")
    other = ContainerSpec("other", "pay-0", "app")
    out = [
        one_line(pay0, timestamp_ns=BASE - 30 * 10**9 + i, offset=i * 100, level="error",
                 message=f"payment failed: card declined #{i}")
        for i in range(5)
    ]
    out.append(one_line(pay1, timestamp_ns=BASE - 20 * 10**9, offset=0, level="error", message="payment failed"))
    out += [
        one_line(other, timestamp_ns=BASE - 10 * 10**9 + i, offset=i * 100, level="error", message="payment failed")
        for i in range(5)
    ]
    out.append(one_line(pay0, timestamp_ns=BASE - 5 * 10**9, offset=900, level="info", message="payment ok"))
    return out


@pytest.fixture(params=["embedded", "opensearch"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SearchBackend]:
    """The same records in the embedded index or the OpenSearch emulator."""
    records = _records()
    if request.param == "embedded":
        index = await embedded_open(tmp_path / "index")
        await index.write(records)
        try:
            yield index
        finally:
            await embedded_close(index)
        return
    from search.backends.opensearch import OpenSearchBackend

    url = request.getfixturevalue("opensearch_any")
    prefix = unique_prefix("alerts")
    opensearch_load(url, prefix, records)
    backend = OpenSearchBackend([url], prefix)
    try:
        yield backend
    finally:
        await backend.close()


def _config(**overrides: Any) -> AlertsConfig:
    base = AlertsConfig(
        evaluation_delay_seconds=0, external_url="http://podlog.example", notify_attempts=3,
        notify_backoff_seconds=0.01, notify_timeout_seconds=2.0, webhook_secret=SECRET,
    )
    return replace(base, **overrides)


def _evaluator(
    backend: SearchBackend, client: httpx.AsyncClient, notifiers: list[Notifier], state: Path | None,
    config: AlertsConfig | None = None, rules: list[Rule] | None = None,
) -> Evaluator:
    store = StateStore(state)
    store.load()
    evaluator = Evaluator(backend, config or _config(), notifiers, store, client=client)
    evaluator.set_rules(rules if rules is not None else parse_rules(RULES))
    return evaluator


def _webhook_alerts(receiver: Receiver) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in receiver.received:
        out += json.loads(item.body)["alerts"]
    return out


@pytest.mark.skipif(alertmanager_binary() is None, reason="prometheus-alertmanager is not installed")
async def test_a_firing_rule_appears_in_alertmanager_and_resolves(backend: SearchBackend, tmp_path: Path) -> None:
    """pay-0 crosses the threshold: Alertmanager shows it with the rule's labels and a link to the lines,
    pay-1 (one line) and the other namespace do not; the next, empty window resolves it."""
    with alertmanager(tmp_path / "am") as am:
        async with httpx.AsyncClient() as client:
            evaluator = _evaluator(backend, client, [AlertmanagerNotifier(am.url)], None)
            await evaluator.evaluate(evaluator.rules["payment-errors"], BASE)
            alerts = wait_for(lambda: active_alerts(am.url), 10, "the alert in alertmanager")
            assert len(alerts) == 1
            alert = alerts[0]
            assert alert["labels"] == {
                "alertname": "payment-errors", "severity": "critical", "team": "payments", "pod": "pay-0",
            }
            assert alert["annotations"]["summary"] == "5 payment failures in pay-0"
            assert alert["annotations"]["sample"].startswith("payment failed: card declined")
            link = urlparse(alert["generatorURL"])
            params = parse_qs(link.query)
            assert link.netloc == "podlog.example"
            assert params["q"] == ['level:error AND "payment failed"'] and params["pod"] == ["pay-0"]
            assert params["end"][0].endswith("Z") and params["start"] < params["end"]
            assert evaluator.status["payment-errors"].health == "firing"

            await evaluator.evaluate(evaluator.rules["payment-errors"], BASE + M)
            wait_for(lambda: not active_alerts(am.url), 10, "the alert to resolve")
            assert evaluator.status["payment-errors"].health == "nodata"
            assert evaluator.store.alerts == {}


async def test_the_webhook_is_signed_retried_and_not_resent_after_a_restart(
    backend: SearchBackend, tmp_path: Path
) -> None:
    """A 503 is retried; the body's HMAC verifies; a new evaluator on the same state file (a restart,
    as after kill -9) neither re-sends the firing alert nor forgets it, and sends its resolution once."""
    state = tmp_path / "alerts" / "state.json"
    async with http_receiver() as receiver, httpx.AsyncClient() as client:
        receiver.fail_next = [503]
        retried = sample("podlog_alert_notifications_total", {"notifier": "webhook", "result": "retried"})
        first = _evaluator(backend, client, [WebhookNotifier(receiver.url, SECRET)], state)
        await first.evaluate(first.rules["payment-errors"], BASE)
        assert sample("podlog_alert_notifications_total", {"notifier": "webhook", "result": "retried"}) == retried + 1
        assert len(receiver.received) == 1
        delivered = receiver.received[0]
        expected = hmac.new(
            SECRET.encode(), delivered.headers["x-podlog-timestamp"].encode() + b"." + delivered.body,
            hashlib.sha256,
        ).hexdigest()
        assert delivered.headers["x-podlog-signature"] == f"sha256={expected}"
        (alert,) = _webhook_alerts(receiver)
        assert alert["status"] == "firing" and alert["group"] == {"pod": "pay-0"} and alert["count"] == 5
        assert delivered.headers["x-podlog-idempotency-key"] == alert["key"]

        # Restart: nothing in memory survives, only the state file.
        second = _evaluator(backend, client, [WebhookNotifier(receiver.url, SECRET)], state)
        assert [a.status for a in second.store.alerts.values()] == ["firing"]
        await second.evaluate(second.rules["payment-errors"], BASE)
        assert len(receiver.received) == 1, "a restart must not re-send a firing alert"
        await second.evaluate(second.rules["payment-errors"], BASE + M)
        await second.evaluate(second.rules["payment-errors"], BASE + 2 * M)
        statuses = [a["status"] for a in _webhook_alerts(receiver)]
        assert statuses == ["firing", "resolved"]
        assert _webhook_alerts(receiver)[1]["endsAt"] is not None


async def test_an_unreachable_target_is_counted_shown_and_retried_next_time(
    backend: SearchBackend, tmp_path: Path
) -> None:
    """Every attempt fails: the failure is counted and shown on the rule, the alert stays firing, and
    the next evaluation delivers it once the receiver answers."""
    async with http_receiver() as receiver, httpx.AsyncClient() as client:
        failed = sample("podlog_alert_notifications_total", {"notifier": "webhook", "result": "failed"})
        receiver.fail_next = [500, 500, 500]
        evaluator = _evaluator(backend, client, [WebhookNotifier(receiver.url, SECRET)], tmp_path / "s.json")
        rule = evaluator.rules["payment-errors"]
        await evaluator.evaluate(rule, BASE)
        assert sample("podlog_alert_notifications_total", {"notifier": "webhook", "result": "failed"}) == failed + 1
        status = evaluator.status["payment-errors"]
        assert status.health == "firing" and status.notification_failures == 1
        assert status.notification_error is not None and "HTTP 500" in status.notification_error
        assert receiver.received == []
        await evaluator.evaluate(rule, BASE)
        assert [a["status"] for a in _webhook_alerts(receiver)] == ["firing"]
        assert evaluator.status["payment-errors"].notification_error is None


async def test_slack_gets_one_incoming_webhook_message_per_alert(backend: SearchBackend) -> None:
    """The Slack stand-in receives text plus header and section blocks with the link and the sample."""
    async with http_receiver() as slack, httpx.AsyncClient() as client:
        evaluator = _evaluator(backend, client, [SlackNotifier(slack.url)], None)
        await evaluator.evaluate(evaluator.rules["payment-errors"], BASE)
        (message,) = [json.loads(item.body) for item in slack.received]
        assert set(message) == {"text", "blocks"}
        assert message["text"].startswith(":red_circle: [FIRING] payment-errors (pod=pay-0)")
        header, section = message["blocks"]
        assert header["type"] == "header" and header["text"]["type"] == "plain_text"
        assert section["text"]["type"] == "mrkdwn"
        assert "<http://podlog.example/?q=" in section["text"]["text"]
        assert "card declined" in section["text"]["text"]


async def test_absence_fires_when_a_workload_stops_logging(backend: SearchBackend) -> None:
    """An absent rule is ok while lines arrive and fires for a window without any."""
    rules = parse_rules(
        "rules:\n  - name: pay-silent\n    query: 'pod:pay-1'\n    window: 1m\n    condition: absent\n"
        "    annotations: {summary: '{{ rule }} saw {{ count }} lines in {{ window }}'}\n"
    )
    async with http_receiver() as receiver, httpx.AsyncClient() as client:
        evaluator = _evaluator(backend, client, [WebhookNotifier(receiver.url, SECRET)], None, rules=rules)
        rule = evaluator.rules["pay-silent"]
        await evaluator.evaluate(rule, BASE)
        assert evaluator.status["pay-silent"].health == "ok" and receiver.received == []
        await evaluator.evaluate(rule, BASE + M)
        (alert,) = _webhook_alerts(receiver)
        assert alert["status"] == "firing" and alert["annotations"]["summary"] == "pay-silent saw 0 lines in 1m"


async def test_a_failing_rule_shows_its_error_and_the_others_keep_working(backend: SearchBackend) -> None:
    """A backend error in one rule marks that rule as error; the next rule is still evaluated."""
    rules = parse_rules(RULES) + parse_rules(
        "rules:\n  - name: any-error\n    query: 'level:error'\n    window: 1m\n    condition: count >= 1\n"
    )

    class Broken:
        name = "broken"

        async def search(self, request: Any) -> Any:
            raise RuntimeError("index unavailable")

        async def top_values(self, request: Any, field: str, size: int) -> Any:
            raise RuntimeError("index unavailable")

    async with httpx.AsyncClient() as client:
        evaluator = _evaluator(backend, client, [], None, rules=rules)
        evaluator.backend = Broken()  # type: ignore[assignment]
        await evaluator.evaluate(evaluator.rules["payment-errors"], BASE)
        evaluator.backend = backend
        await evaluator.evaluate(evaluator.rules["any-error"], BASE)
        assert evaluator.status["payment-errors"].health == "error"
        assert "index unavailable" in (evaluator.status["payment-errors"].error or "")
        assert evaluator.status["any-error"].health == "firing"


async def test_a_crash_in_one_rule_is_shown_on_it_and_the_others_still_run(backend: SearchBackend) -> None:
    """A target that raises something unexpected fails its rule's evaluation only: run_due goes on
    to the next rule and reports the error on the first."""

    class Crashing:
        name = "crashing"
        resend_firing = True

        async def send(self, client: httpx.AsyncClient, batch: Any) -> None:
            raise ValueError("a bug in a target")

    rules = parse_rules(RULES) + parse_rules(
        "rules:\n  - name: any-error\n    query: 'level:error'\n    window: 1m\n    condition: count >= 1\n"
    )
    async with httpx.AsyncClient() as client:
        evaluator = _evaluator(backend, client, [Crashing()], None, rules=rules)
        await evaluator.run_due(BASE)
        assert evaluator.status["payment-errors"].health == "error"
        assert "a bug in a target" in (evaluator.status["payment-errors"].error or "")
        assert evaluator.status["any-error"].health == "error"
        assert evaluator.status["any-error"].last_evaluation_ns == BASE
