"""The evaluator as part of ``podlog search``: it runs on its own clock, and survives kill -9.

A real ``podlog search`` process over the OpenSearch emulator, with a rules
file, a state file and a webhook pointing at an in-test receiver.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from podlog.lifecycle import Health
from search.config import AlertsConfig, AuthConfig, SearchConfig
from search.service import SearchService
from tests.fixtures.records import ContainerSpec, one_line
from tests.fixtures.servers import free_port, start_podlog, wait_until
from tests.integration.alerts.receivers import Receiver, http_receiver
from tests.integration.search.loading import embedded_open, opensearch_load, unique_prefix

RULES = """
rules:
  - name: worker-crashes
    query: '"worker crashed"'
    window: 1h
    interval: 1s
    condition: count >= 3
    annotations: {summary: "{{ count }} crashes"}
"""


def _crashes(count: int) -> list[dict[str, Any]]:
    spec = ContainerSpec("jobs", "worker-0", "app")
    now = time.time_ns()
    return [
        one_line(spec, timestamp_ns=now - 60 * 10**9 + i, offset=i * 100, level="error", message=f"worker crashed #{i}")
        for i in range(count)
    ]


def _firing(receiver: Receiver) -> list[dict[str, Any]]:
    return [a for item in receiver.received for a in json.loads(item.body)["alerts"] if a["status"] == "firing"]


async def test_the_search_service_runs_the_rules_of_its_config(tmp_path: Path) -> None:
    """SearchService with alerts.rules_path evaluates on its own and notifies; stop() ends it."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    index = await embedded_open(tmp_path / "index")
    await index.write(_crashes(4))
    async with http_receiver() as receiver:
        config = SearchConfig(
            listen="127.0.0.1:0", ops_listen="", backend="embedded", auth=AuthConfig(mode="none"),
            alerts=AlertsConfig(rules_path=str(rules), evaluation_delay_seconds=0, webhook_urls=[receiver.url]),
        )
        service = SearchService(config, index, health=Health())
        await service.start()
        try:
            run = asyncio.create_task(service.run())
            (alert,) = await wait_until(lambda: _firing(receiver), 15, "the firing webhook")
            assert alert["annotations"] == {"summary": "4 crashes"}
            assert service.alerts is not None
            assert service.alerts.evaluator.status["worker-crashes"].health == "firing"
        finally:
            await service.stop()
        await run


def _metric(url: str, name: str) -> float:
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return -1.0
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


async def test_kill_9_while_firing_neither_resends_nor_forgets(tmp_path: Path, opensearch_any: str) -> None:
    """kill -9 the search process while an alert fires: the restarted one keeps it firing (its
    gauge says 1) and, over several evaluations, sends the webhook no second time."""
    prefix = unique_prefix("alertkill")
    opensearch_load(opensearch_any, prefix, _crashes(5))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    state = tmp_path / "state" / "alerts.json"
    async with http_receiver() as receiver:
        ops = free_port()
        config = {
            "search": {
                "listen": f"127.0.0.1:{free_port()}", "ops_listen": f"127.0.0.1:{ops}",
                "opensearch_hosts": [opensearch_any], "index_prefix": prefix, "auth": {"mode": "none"},
                "alerts": {
                    "rules_path": str(rules), "state_file": str(state), "evaluation_delay_seconds": 0,
                    "webhook_urls": [receiver.url], "webhook_secret": "k",
                },
            }
        }
        config_file = tmp_path / "podlog.yaml"
        config_file.write_text(yaml.safe_dump(config))
        metrics = f"http://127.0.0.1:{ops}/metrics"
        first = start_podlog(["search", "--config", str(config_file)], tmp_path / "logs")
        try:
            await wait_until(lambda: _firing(receiver), 30, "the first firing webhook")
            await wait_until(lambda: state.exists(), 10, "the state file")
        finally:
            first.kill()
        assert json.loads(state.read_text())["alerts"], "the firing alert is in the state file"
        second = start_podlog(["search", "--config", str(config_file)], tmp_path / "logs")
        try:
            await wait_until(lambda: _metric(metrics, "podlog_alert_evaluations_total{result=\"ok\"}") >= 3, 30,
                             f"three evaluations after the restart: {second.tail()}")
            assert _metric(metrics, "podlog_alerts_firing") == 1.0
            assert len(_firing(receiver)) == 1, "the restarted evaluator re-sent a firing alert"
        finally:
            second.stop()


async def test_the_rules_api_shows_each_identity_the_rules_of_its_namespaces(tmp_path: Path) -> None:
    """GET /api/alerts/rules: a token for namespace a sees the rule scoped to a, not b's nor the
    cluster-wide one; an admin sees all three, read-only, with their state."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: in-a, query: 'level:error', namespaces: [a], window: 5m, condition: count >= 1}\n"
        "  - {name: in-b, query: 'level:error', namespaces: [b], window: 5m, condition: count >= 1}\n"
        "  - {name: everywhere, window: 5m, condition: absent}\n"
    )
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"identities": [
        {"name": "team-a", "token": "token-a-0123456789abcdef", "namespaces": ["a"]},
        {"name": "admin", "token": "token-admin-0123456789ab", "namespaces": ["*"]},
    ]}))
    index = await embedded_open(tmp_path / "index")
    config = SearchConfig(
        listen="127.0.0.1:0", ops_listen="", backend="embedded",
        auth=AuthConfig(mode="token", secrets_file=str(secrets)),
        alerts=AlertsConfig(rules_path=str(rules), evaluation_delay_seconds=0),
    )
    service = SearchService(config, index, health=Health())
    await service.start()
    run = asyncio.create_task(service.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as api:
            async def names(token: str) -> list[str]:
                reply = await api.get("/api/alerts/rules", headers={"Authorization": f"Bearer {token}"})
                assert reply.status_code == 200, reply.text
                return [rule["name"] for rule in reply.json()["rules"]]

            assert await names("token-a-0123456789abcdef") == ["in-a"]
            assert await names("token-admin-0123456789ab") == ["in-a", "in-b", "everywhere"]
            assert (await api.get("/api/alerts/rules")).status_code == 401
            reply = await api.get("/api/alerts/rules", headers={"Authorization": "Bearer token-admin-0123456789ab"})
            everywhere = reply.json()["rules"][2]
            assert everywhere["read_only"] is True and everywhere["condition"] == "absent"
            await wait_until(
                lambda: service.alerts is not None and service.alerts.evaluator.status["everywhere"].health == "firing",
                10, "the absent rule to fire on an empty index",
            )
    finally:
        await service.stop()
    await run


async def test_rules_that_do_not_load_stop_the_start_and_a_bad_reload_keeps_the_old_ones(tmp_path: Path) -> None:
    """At start a bad rules file is a ConfigError naming it; later, a bad change is counted and the
    rules loaded before stay in force."""
    from podlog.errors import ConfigError
    from podlog.metrics import sample
    from search.alerts.service import AlertService

    index = await embedded_open(tmp_path / "index")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: x\n    window: 5m\n    condition: count >> 1\n")
    broken = AlertService(AlertsConfig(rules_path=str(rules)), index)
    try:
        await broken.start()
    except ConfigError as exc:
        assert "rule x: condition" in str(exc)
    else:
        raise AssertionError("a bad rules file must fail the start")
    finally:
        await broken.stop()
    rules.write_text(RULES)
    service = AlertService(AlertsConfig(rules_path=str(rules), reload_seconds=0.05), index)
    await service.start()
    run = asyncio.create_task(service.run())
    try:
        errors = sample("podlog_alert_rules_reload_errors_total")
        rules.write_text("rules:\n  - name: y\n    query: 'pod:'\n    window: 5m\n    condition: absent\n")
        await wait_until(lambda: sample("podlog_alert_rules_reload_errors_total") > errors, 10, "the failed reload")
        assert list(service.evaluator.rules) == ["worker-crashes"]
    finally:
        await service.stop()
        await run
        await index.close()
