"""Helpers for indexer integration tests: records, a producer, a running indexer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opensearchpy import OpenSearch

from indexer.config import IndexerConfig, KafkaConsumerConfig, OpenSearchConfig
from indexer.consumer import Indexer
from podlog.config import CommonConfig
from podlog.lifecycle import Health
from podlog.record import Record, SourcePosition, encode_batch, make_record
from podlog.retention import RetentionConfig
from tests.fixtures import servers

if TYPE_CHECKING:
    from tests.integration.indexer.proxy import FaultyProxy

DAY_NS = 86_400 * 1_000_000_000
BASE_NS = 1_795_737_600 * 1_000_000_000  # 2026-11-27T00:00:00Z
TIMELESS = RetentionConfig(classes={"short": 36500.0, "standard": 36500.0, "long": 36500.0})
"""The default classes, keeping a century: records stamped on a fixed date are never past
their retention on arrival, whatever day the tests run (retention tests pass their own)."""


def make_records(
    count: int,
    *,
    namespace: str = "shop",
    start: int = 0,
    timestamp_ns: int = BASE_NS,
    identity: str = "1:2:abc",
) -> list[Record]:
    """``count`` distinct schema-1 records of one container, one microsecond apart."""
    records = []
    for i in range(start, start + count):
        ts = timestamp_ns + i * 1000
        records.append(
            make_record(
                position=SourcePosition("test", "node-1", identity, 0, i * 100),
                timestamp=f"2026-11-27T00:00:00.{i:09d}Z",
                timestamp_ns=ts,
                message=f"line {i} GET /api/items/{i} 200",
                stream="stdout",
                path="/var/log/containers/web.log",
                kubernetes={
                    "namespace": namespace,
                    "pod": {"name": "web-1", "uid": "uid-1"},
                    "container": {"name": "web", "restart_count": 0},
                    "node": {"name": "node-1"},
                    "labels": {"app": "web"},
                },
                level="info",
            )
        )
    return records


async def produce(bootstrap: str, topic: str, values: Sequence[bytes]) -> None:
    """Send ``values`` to partition 0 of ``topic`` and wait for the acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k", partition=0)
    finally:
        await producer.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce_spread(bootstrap: str, topic: str, partitions: int, per_partition: int, first: int = 0) -> None:
    """``per_partition`` messages of 5 records to each of ``partitions``, records numbered from ``first``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        number = first
        for _ in range(per_partition):
            for partition in range(partitions):
                records = make_records(5, start=number, identity=f"{topic}:{partition}")
                number += 5
                await producer.send_and_wait(topic, encode_batch(records), partition=partition)
    finally:
        await producer.stop()


def batches(records: Sequence[Record], size: int) -> list[bytes]:
    """Encode ``records`` as messages of ``size`` records each."""
    return [encode_batch(records[i : i + size]) for i in range(0, len(records), size)]


def indexer_config(
    bootstrap: str, url: str, topic: str, prefix: str, group: str | None = None, **extra: Any
) -> IndexerConfig:
    """A config with short waits, for tests."""
    return IndexerConfig(
        kafka=KafkaConsumerConfig(
            bootstrap_servers=bootstrap,
            topics=[topic],
            group_id=group or f"{prefix}-group",
            batch_max_wait_seconds=0.2,
            session_timeout_ms=6000,
            rebalance_wait_seconds=5.0,
        ),
        opensearch=OpenSearchConfig(hosts=[url], index_prefix=prefix, number_of_replicas=0, refresh_interval="1s"),
        **{"retry_initial_seconds": 0.05, "retry_max_seconds": 0.5, **extra},
    )


@contextlib.asynccontextmanager
async def running(
    config: IndexerConfig,
    retention: RetentionConfig | None = None,
    health: Health | None = None,
    grace: float = 10.0,
) -> AsyncIterator[Indexer]:
    """An indexer started and running until the block ends."""
    indexer = Indexer(
        CommonConfig(shutdown_grace_seconds=grace),
        config,
        retention or TIMELESS,
        health=health or Health(),
    )
    await indexer.start()
    task = asyncio.create_task(indexer.run())
    try:
        yield indexer
    finally:
        await indexer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task


async def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset of one partition (-1 when none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        value = await consumer.committed(TopicPartition(topic, partition))
    finally:
        await consumer.stop()
    return -1 if value is None else int(value)


async def wait_committed(
    bootstrap: str, group: str, topic: str, offset: int, timeout: float = 30.0, partition: int = 0
) -> None:
    """Wait until ``group`` committed ``offset`` on ``partition`` of ``topic``."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = await committed(bootstrap, group, topic, partition)
        if seen >= offset:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"group {group} committed {seen}, not {offset}, within {timeout}s")


async def index_through(
    proxy: FaultyProxy, bootstrap: str, topic: str, offset: int, **extra: Any
) -> None:
    """Run an indexer (``indexer_config`` with ``extra``) on the cluster behind ``proxy`` until its
    group committed ``offset`` of ``topic``; the proxy is closed either way."""
    config = indexer_config(bootstrap, proxy.url, topic, topic, **extra)
    try:
        async with running(config):
            await wait_committed(bootstrap, config.kafka.group_id, topic, offset)
    finally:
        await proxy.close()


async def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """The shared poll, at a pace that leaves the loop and the cluster to the indexer.

    The predicates here query OpenSearch with the blocking client, on the loop the
    indexer under test runs on.
    """
    return await servers.wait_until(predicate, timeout, what, interval=0.1)


def count(client: OpenSearch, index: str) -> int:
    """Documents in ``index`` (a pattern) after a refresh; 0 when none exists."""
    try:
        names = [row["index"] for row in client.cat.indices(index=index, format="json")]
        for name in names:
            client.indices.refresh(index=name)
        return int(client.count(index=index)["count"]) if names else 0
    except Exception:
        return 0


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for topics, prefixes and groups."""
    return f"t{time.monotonic_ns() % 10**12}"
