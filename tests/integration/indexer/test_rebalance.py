"""Two indexers of one group share a topic; a rebalance neither loses nor doubles documents."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opensearchpy import OpenSearch

from podlog import metrics
from podlog.record import encode_batch
from tests.integration.indexer.conftest import (
    count,
    indexer_config,
    make_records,
    running,
    wait_committed,
    wait_until,
)

PARTITIONS = 4


async def _produce_spread(bootstrap: str, topic: str, start: int, count_: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n, first in enumerate(range(start, start + count_, 20)):
            records = make_records(20, start=first, identity=f"{topic}:{first}")
            await producer.send_and_wait(topic, encode_batch(records), partition=n % PARTITIONS)
    finally:
        await producer.stop()


async def test_rebalance_between_two_members_keeps_one_copy_of_everything(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """A second member joins mid-stream and takes partitions over; every record ends indexed
    once, every partition's offsets are committed to the end, and nothing is dead-lettered."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    client = OpenSearch(opensearch_any)
    dead_before = metrics.sample("podlog_indexer_documents_total", {"outcome": "dead_lettered"})
    config = indexer_config(kafka_bootstrap, opensearch_any, unique, unique)
    await _produce_spread(kafka_bootstrap, unique, 0, 400)
    async with running(config) as first:
        await wait_until(lambda: count(client, f"{unique}-logs-*") > 0, 30, "the first documents")
        async with running(config) as second:
            await _produce_spread(kafka_bootstrap, unique, 400, 400)
            await wait_until(
                lambda: (
                    len(first.assignment()) + len(second.assignment()) == PARTITIONS
                    and first.assignment()
                    and second.assignment()
                ),
                30,
                "both members to hold partitions",
            )
            for partition in range(PARTITIONS):
                await wait_committed_partition(kafka_bootstrap, config.kafka.group_id, unique, partition)
    assert count(client, f"{unique}-logs-*") == 800
    assert metrics.sample("podlog_indexer_documents_total", {"outcome": "dead_lettered"}) == dead_before


async def wait_committed_partition(bootstrap: str, group: str, topic: str, partition: int) -> None:
    """Wait until ``partition`` is committed up to its end (10 messages each)."""
    await wait_committed(bootstrap, group, topic, 10, partition=partition)
