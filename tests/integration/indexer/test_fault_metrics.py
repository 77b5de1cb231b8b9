"""Metrics that stay true under faults: lag while nothing commits, a record too large, a replay."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer
from opensearchpy import OpenSearch
from prometheus_client.parser import text_string_to_metric_families

from indexer.config import IndexerConfig
from podlog import metrics
from podlog.record import encode_batch
from tests.fixtures.servers import ManagedProcess, free_port
from tests.integration.indexer.conftest import (
    committed,
    count,
    create_topic,
    index_through,
    indexer_config,
    make_records,
    produce,
    produce_spread,
    running,
    wait_committed,
    wait_until,
)
from tests.integration.indexer.proxy import FaultyProxy

PARTITIONS = 3
LAG_INTERVAL = 2.0
MEASURE_SLACK = 1.5
"""What one measurement may take on top of the interval (a fetch per partition, a busy machine)."""


def _lag(topic: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "podlog_indexer_consumer_lag_messages", {"topic": topic, "partition": str(partition)}
    )


def _documents(outcome: str) -> float:
    return metrics.sample("podlog_indexer_documents_total", {"outcome": outcome})


def _with_lag_interval(config: IndexerConfig, seconds: float) -> IndexerConfig:
    return dataclasses.replace(config, kafka=dataclasses.replace(config.kafka, lag_interval_seconds=seconds))


async def test_lag_rises_for_every_partition_within_one_interval_while_the_cluster_is_down(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """With every bulk connection refused nothing commits, yet within one lag interval (and
    the time one reading takes) each partition's gauge shows exactly the messages produced
    since; once the cluster answers again they are indexed and every gauge returns to 0."""
    await create_topic(kafka_bootstrap, unique, PARTITIONS)
    await produce_spread(kafka_bootstrap, unique, PARTITIONS, 4)
    proxy = await FaultyProxy(opensearch_any).start()
    config = _with_lag_interval(indexer_config(kafka_bootstrap, proxy.url, unique, unique), LAG_INTERVAL)
    group = config.kafka.group_id
    try:
        async with running(config):
            for partition in range(PARTITIONS):
                await wait_committed(kafka_bootstrap, group, unique, 4, partition=partition)
            await wait_until(
                lambda: all(_lag(unique, p) == 0 for p in range(PARTITIONS)),
                LAG_INTERVAL + MEASURE_SLACK + 5,
                "lag 0 on every partition",
            )

            proxy.drop_bulk_connections = True
            await produce_spread(kafka_bootstrap, unique, PARTITIONS, 6, first=1000)
            produced = time.monotonic()
            await wait_until(
                lambda: [_lag(unique, p) for p in range(PARTITIONS)] == [6] * PARTITIONS,
                LAG_INTERVAL + MEASURE_SLACK,
                "every partition's lag to show the 6 messages produced while the cluster is down",
            )
            took = time.monotonic() - produced
            assert proxy.requests_failed >= 1
            for partition in range(PARTITIONS):
                assert await committed(kafka_bootstrap, group, unique, partition) == 4

            proxy.drop_bulk_connections = False
            await wait_until(
                lambda: all(_lag(unique, p) == 0 for p in range(PARTITIONS)),
                30,
                "lag back to 0 on every partition",
            )
    finally:
        await proxy.close()
    assert took <= LAG_INTERVAL + MEASURE_SLACK
    assert count(OpenSearch(opensearch_any), f"{unique}-logs-*") == 10 * 5 * PARTITIONS
    assert all(_lag(unique, p) is None for p in range(PARTITIONS)), "a stopped member keeps no series"


def _letter(client: OpenSearch, prefix: str, doc_id: str) -> dict[str, Any] | None:
    index = f"{prefix}-dlq"
    if not client.indices.exists(index=index):
        return None
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"query": {"ids": {"values": [doc_id]}}})["hits"]["hits"]
    return dict(hits[0]["_source"]) if hits else None


async def _produce_with_big_record(bootstrap: str, topic: str) -> dict[str, Any]:
    """10 small records, one of ~3 MB, 10 small records: three messages on partition 0; the big record."""
    records = make_records(21)
    big = records[10]
    big["message"] = "x" * (3 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20)
    await producer.start()
    try:
        for value in (encode_batch(records[:10]), encode_batch([big]), encode_batch(records[11:])):
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    return big


async def test_a_3mb_record_the_cluster_refuses_leaves_a_dead_letter_without_its_body_counted_once(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """A ~3 MB record refused as a document and as a dead letter (413: the cluster takes no
    body above 1 MB) leaves a letter without its record, with its reason and Kafka position;
    it counts once as dead-lettered, nothing is dropped, and the partition moves past it."""
    big = await _produce_with_big_record(kafka_bootstrap, unique)
    proxy = await FaultyProxy(opensearch_any).start()
    proxy.max_bulk_bytes = 1 << 20
    before = {o: _documents(o) for o in ("indexed", "dead_lettered", "dropped")}
    omitted_before = metrics.sample("podlog_indexer_dead_letter_bodies_omitted_total")
    await index_through(proxy, kafka_bootstrap, unique, 3)
    assert proxy.bulk_too_large >= 2  # refused as a document, then as a letter with its record
    client = OpenSearch(opensearch_any)
    assert count(client, f"{unique}-logs-*") == 20
    letter = _letter(client, unique, big["event"]["id"])
    assert letter is not None
    assert "record" not in letter
    assert letter["body_omitted"] is True and letter["body_bytes"] > 3 << 20
    assert letter["reason"].startswith("HTTP 413")
    assert letter["kafka"] == {"topic": unique, "partition": 0, "offset": 1}
    assert letter["event_id"] == big["event"]["id"] and letter["namespace"] == "shop"
    assert _documents("dead_lettered") - before["dead_lettered"] == 1
    assert _documents("dropped") - before["dropped"] == 0
    assert _documents("indexed") - before["indexed"] == 20
    assert metrics.sample("podlog_indexer_dead_letter_bodies_omitted_total") - omitted_before == 1


async def test_a_record_refused_even_as_a_bodyless_dead_letter_counts_once_as_dropped(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """When the dead-letter index refuses the letter without its record too, the record is
    dropped: counted once (not twice), never as dead-lettered, and the partition moves on."""
    big = await _produce_with_big_record(kafka_bootstrap, unique)
    proxy = await FaultyProxy(opensearch_any).start()
    proxy.max_bulk_bytes = 1 << 20
    proxy.item_rule = lambda index, doc_id, attempt: (
        (400, {"type": "illegal_argument_exception", "reason": "injected: letter refused"})
        if index.endswith("-dlq")
        else None
    )
    before = {o: _documents(o) for o in ("dead_lettered", "dropped")}
    await index_through(proxy, kafka_bootstrap, unique, 3)
    assert _documents("dropped") - before["dropped"] == 1
    assert _documents("dead_lettered") - before["dead_lettered"] == 0
    assert _letter(OpenSearch(opensearch_any), unique, big["event"]["id"]) is None


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_bad_message_replayed_after_kill_9_is_counted_once(
    kafka_bootstrap: str, opensearch_any: str, unique: str, tmp_path: Path
) -> None:
    """`podlog indexer` decodes a batch holding an undecodable message and is killed with
    SIGKILL before its commit; the next member replays the batch.  Between the two
    processes the message counts once as dead-lettered (the first never committed it)."""
    good = make_records(20)
    await produce(kafka_bootstrap, unique, [
        encode_batch(good[:10]), b'{"schema": 99, "records": []}', encode_batch(good[10:]),
    ])  # fmt: skip
    proxy = await FaultyProxy(opensearch_any).start()
    proxy.hold_replies = True
    group = f"{unique}-group"
    port = free_port()
    config_path = tmp_path / "podlog.yaml"
    config_path.write_text(yaml.safe_dump({
        "podlog": {"http_listen": f"127.0.0.1:{port}", "log_format": "json"},
        "indexer": {
            "kafka": {"bootstrap_servers": kafka_bootstrap, "topics": [unique], "group_id": group,
                      "batch_max_wait_seconds": 0.5, "session_timeout_ms": 6000},
            "opensearch": {"hosts": [proxy.url], "index_prefix": unique, "number_of_replicas": 0},
        },
    }))  # fmt: skip
    log_path = tmp_path / "indexer.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", "podlog", "indexer", "--config", str(config_path)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    process = ManagedProcess(name="podlog-indexer", popen=popen, log_path=log_path)
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    async def consumed_all() -> dict[Any, float] | None:
        assert popen.poll() is None, process.tail()
        try:
            samples = await asyncio.to_thread(_scrape, metrics_url)
        except OSError:
            return None
        done = _value(samples, "podlog_indexer_consumed_messages_total") >= 3 and proxy.items_forwarded >= 20
        return samples if done else None

    try:
        first = await wait_until(consumed_all, 60, "the first member to decode all three messages")
    finally:
        process.stop(signal.SIGKILL)
        await proxy.close()
    assert await committed(kafka_bootstrap, group, unique) == -1
    first_dead = _value(first, "podlog_indexer_messages_dead_lettered_total", reason="schema")
    first_documents = _value(first, "podlog_indexer_documents_total", outcome="dead_lettered")

    dead_before = metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": "schema"})
    documents_before = _documents("dead_lettered")
    present_before = _documents("already_present")
    config = indexer_config(kafka_bootstrap, opensearch_any, unique, unique, group=group)
    async with running(config):
        await wait_committed(kafka_bootstrap, group, unique, 3, timeout=60)
    second_dead = metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": "schema"}) - dead_before
    assert (first_dead, second_dead) == (0, 1)
    assert (first_documents, _documents("dead_lettered") - documents_before) == (0, 1)
    assert _documents("already_present") - present_before == 20
    assert count(OpenSearch(opensearch_any), f"{unique}-logs-*") == 20
