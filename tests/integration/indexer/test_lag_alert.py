"""The indexer-lag alert of the monitoring component goes pending in a real Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.servers import ManagedProcess, free_port, get_json, start_podlog, wait_for_port
from tests.integration.indexer.conftest import create_topic, produce_spread, wait_until
from tests.integration.indexer.proxy import FaultyProxy
from tests.integration.monitoring.prometheus import start_prometheus

RULES = Path(__file__).parents[3] / "deploy/kubernetes/components/monitoring/prometheusrule.yaml"
ALERT = "PodlogIndexerLagGrowing"
LAG_METRIC = "podlog_indexer_consumer_lag_messages"
PROMETHEUS = shutil.which("prometheus")
PARTITIONS = 3

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="needs Prometheus (Debian package prometheus)")


def rule_file(path: Path) -> dict[str, Any]:
    """The Prometheus rule file a PrometheusRule holds (its ``spec``), checked to hold the alert."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    (rule,) = [doc for doc in documents if doc.get("kind") == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    alerts = {r.get("alert"): r for group in spec["groups"] for r in group["rules"]}
    assert ALERT in alerts, f"{path} has no alert {ALERT}"
    assert LAG_METRIC in alerts[ALERT]["expr"], f"{ALERT} does not read {LAG_METRIC}"
    return spec


def _alert(prometheus: str, topic: str) -> dict[str, Any] | None:
    alerts = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    return next(
        (a for a in alerts if a["labels"].get("alertname") == ALERT and a["labels"].get("topic") == topic), None
    )


def _lags(prometheus: str, topic: str) -> dict[str, float]:
    query = urllib.parse.quote(f'{LAG_METRIC}{{topic="{topic}"}}')
    result = get_json(f"{prometheus}/api/v1/query?query={query}")["data"]["result"]
    return {r["metric"]["partition"]: float(r["value"][1]) for r in result}


async def test_lag_alert_goes_pending_in_prometheus_while_the_cluster_is_down(
    kafka_bootstrap: str, opensearch_any: str, unique: str, tmp_path: Path
) -> None:
    """A real Prometheus scrapes `podlog indexer` and evaluates the PrometheusRule's groups:
    while the indexer keeps up the lag alert is inactive; once every bulk connection is
    refused and records keep coming, the alert for the topic goes pending and every
    partition's lag is above 0."""
    rules = rule_file(RULES)
    await create_topic(kafka_bootstrap, unique, PARTITIONS)
    await produce_spread(kafka_bootstrap, unique, PARTITIONS, 2)
    proxy = await FaultyProxy(opensearch_any).start()
    metrics_port = free_port()
    config_path = tmp_path / "podlog.yaml"
    config_path.write_text(yaml.safe_dump({
        "podlog": {"http_listen": f"127.0.0.1:{metrics_port}", "log_format": "json"},
        "indexer": {
            "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": [unique], "group_id": f"{unique}-group",
                      "batch_max_wait_seconds": 0.2, "session_timeout_ms": 6000, "lag_interval_seconds": 1},
            "opensearch": {"hosts": [proxy.url], "index_prefix": unique, "number_of_replicas": 0},
            "retry_max_seconds": 1,
        },
    }))  # fmt: skip
    indexer = start_podlog(["indexer", "--config", str(config_path)], tmp_path / "logs")
    prometheus: ManagedProcess | None = None
    feeding: asyncio.Task[None] | None = None
    try:
        # Off the loop: the proxy on it serves the indexer meanwhile.
        await asyncio.to_thread(wait_for_port, metrics_port, 30, indexer)
        prometheus = await asyncio.to_thread(
            start_prometheus, tmp_path / "prometheus", "podlog-indexer", f"127.0.0.1:{metrics_port}", rules["groups"]
        )
        url = prometheus.url

        def caught_up() -> bool:
            assert indexer.popen.poll() is None, indexer.tail()
            lags = _lags(url, unique)
            return len(lags) == PARTITIONS and set(lags.values()) == {0.0} and _alert(url, unique) is None

        await wait_until(caught_up, 60, "Prometheus to see lag 0 on every partition and no lag alert")

        proxy.drop_bulk_connections = True

        async def feed() -> None:
            number = 10_000
            while True:  # cancelled once the alert is pending
                await produce_spread(kafka_bootstrap, unique, PARTITIONS, 1, first=number)
                number += 5 * PARTITIONS
                await asyncio.sleep(0.5)  # the pace records arrive at, not a synchronisation

        feeding = asyncio.create_task(feed())

        def pending() -> dict[str, Any] | None:
            assert indexer.popen.poll() is None, indexer.tail()
            assert not feeding.done() or feeding.cancelled(), feeding.exception()
            return _alert(url, unique)

        alert = await wait_until(pending, 90, f"{ALERT} for topic {unique} to become active")
        assert alert["state"] == "pending", alert
        assert proxy.requests_failed >= 1
        await wait_until(
            lambda: (lags := _lags(url, unique)) and len(lags) == PARTITIONS and min(lags.values()) > 0,
            10,
            "Prometheus to see lag on every partition",
        )
    finally:
        if feeding is not None:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
        if prometheus is not None:
            prometheus.stop()
        indexer.stop()
        await proxy.close()
