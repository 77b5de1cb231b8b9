"""An overloaded or failing cluster delays documents but never loses or doubles them."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from podlog import metrics
from podlog.lifecycle import Health
from tests.fixtures.servers import free_port, start_tansu
from tests.integration.indexer.conftest import (
    batches,
    committed,
    count,
    index_through,
    indexer_config,
    make_records,
    produce,
    running,
    wait_committed,
    wait_until,
)
from tests.integration.indexer.proxy import FaultyProxy


def _bucket(doc_id: str) -> int:
    return hashlib.blake2b(doc_id.encode(), digest_size=1).digest()[0] % 4


def _sample(outcome: str) -> float:
    return metrics.sample("podlog_indexer_documents_total", {"outcome": outcome})


async def test_429_items_and_503_requests_end_indexed_exactly_once(
    kafka_bootstrap: str, opensearch_url: str, unique: str
) -> None:
    """Items answered 429 (up to twice) and whole requests answered 503 are retried until each
    document is indexed once: nothing is dead-lettered and nothing is written twice."""
    records = make_records(200)
    await produce(kafka_bootstrap, unique, batches(records, 25))
    proxy = await FaultyProxy(opensearch_url).start()
    throttled: dict[str, Any] = {
        "type": "es_rejected_execution_exception",
        "reason": "injected: queue full",
    }

    def throttle(index: str, doc_id: str, attempt: int) -> tuple[int, dict[str, Any]] | None:
        return (429, throttled) if _bucket(doc_id) == 0 and attempt <= 2 else None

    proxy.item_rule = throttle
    proxy.fail_request = lambda n: n % 3 == 1  # the first try of the batch, and more
    before = {o: _sample(o) for o in ("indexed", "already_present", "dead_lettered")}
    retried_before = metrics.sample("podlog_indexer_documents_retried_total", {"status": "429"})
    await index_through(proxy, kafka_bootstrap, unique, 8, bulk_max_bytes=20_000)
    assert proxy.requests_failed >= 1
    expected_throttled = sum(1 for r in records if _bucket(r["event"]["id"]) == 0)
    assert proxy.items_faked == 2 * expected_throttled > 0
    assert count(OpenSearch(opensearch_url), f"{unique}-logs-*") == 200
    assert _sample("indexed") - before["indexed"] == 200
    assert _sample("already_present") - before["already_present"] == 0
    assert _sample("dead_lettered") - before["dead_lettered"] == 0
    retried = metrics.sample("podlog_indexer_documents_retried_total", {"status": "429"})
    assert retried - retried_before == 2 * expected_throttled


async def test_unreachable_cluster_pauses_without_commit_and_resumes(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """While bulk connections fail, nothing is committed and readiness names the cluster;
    once they succeed again, every document is indexed once and the offsets move."""
    await produce(kafka_bootstrap, unique, batches(make_records(50), 10))
    proxy = await FaultyProxy(opensearch_any).start()
    proxy.drop_bulk_connections = True
    config = indexer_config(kafka_bootstrap, proxy.url, unique, unique)
    health = Health()
    try:
        async with running(config, health=health):
            await wait_until(lambda: proxy.requests_failed >= 3, 30, "three failed bulk requests")
            assert "opensearch" in health.not_ready()
            assert metrics.sample("podlog_indexer_opensearch_up") == 0
            assert await committed(kafka_bootstrap, config.kafka.group_id, unique) == -1
            proxy.drop_bulk_connections = False
            await wait_committed(kafka_bootstrap, config.kafka.group_id, unique, 5)
            assert health.not_ready() == {}
    finally:
        await proxy.close()
    assert count(OpenSearch(opensearch_any), f"{unique}-logs-*") == 50


async def test_stop_while_unreachable_abandons_the_batch_uncommitted(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """Stopping while the cluster is unreachable ends within the grace period and commits
    nothing, so the next start replays the batch."""
    await produce(kafka_bootstrap, unique, batches(make_records(20), 10))
    proxy = await FaultyProxy(opensearch_any).start()
    proxy.drop_bulk_connections = True
    config = indexer_config(kafka_bootstrap, proxy.url, unique, unique)
    try:
        async with running(config, grace=2.0):
            await wait_until(lambda: proxy.requests_failed >= 2, 30, "two failed bulk requests")
            stopping = time.monotonic()
        took = time.monotonic() - stopping
    finally:
        await proxy.close()
    assert took < 2.0 + 1.0
    assert await committed(kafka_bootstrap, config.kafka.group_id, unique) == -1


async def test_kafka_unreachable_at_start_is_waited_out(opensearch_any: str, unique: str, tmp_path: Path) -> None:
    """Started while no broker answers, the indexer stays up and not ready, then indexes once one does."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    health = Health()
    config = indexer_config(bootstrap, opensearch_any, unique, unique)
    broker = None
    try:
        async with running(config, health=health) as indexer:
            await wait_until(
                lambda: "Kafka unreachable" in health.not_ready().get("indexer", ""), 10, "not ready: Kafka"
            )
            broker = start_tansu(tmp_path, port=port)
            await produce(bootstrap, unique, batches(make_records(30), 10))
            await wait_until(lambda: count(OpenSearch(opensearch_any), f"{unique}-logs-*") == 30, 60, "30 indexed")
            assert "indexer" not in health.not_ready()
            assert indexer.assignment()
    finally:
        if broker is not None:
            broker.stop()
