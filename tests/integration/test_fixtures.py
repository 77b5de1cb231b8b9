"""The fixture servers answer like Kafka and OpenSearch."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opensearchpy import OpenSearch

from tests.conftest import DOCKER_PROBE_SECONDS
from tests.fixtures.servers import DurableKafka


def test_docker_probe_decides_within_two_seconds() -> None:
    """Deciding whether Docker is there never costs more than two seconds."""
    assert DOCKER_PROBE_SECONDS < 2.0


async def test_kafka_roundtrip(kafka_bootstrap: str) -> None:
    """A record produced with acks=all is read back by a consumer."""
    topic = f"fixture-{time.monotonic_ns()}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    assert [m.value for msgs in batch.values() for m in msgs] == [b"hello"]


def test_opensearch_indexes_and_counts(opensearch_url: str) -> None:
    """A bulk create is searchable after refresh; a second create of the same id conflicts."""
    client = OpenSearch(opensearch_url)
    index = f"fixture-{time.monotonic_ns()}"
    action = {"create": {"_index": index, "_id": "a"}}
    first = client.bulk(body=[action, {"message": "hi"}], refresh=True)
    assert not first["errors"]
    assert client.count(index=index)["count"] == 1
    second = client.bulk(body=[action, {"message": "hi"}])
    assert second["items"][0]["create"]["status"] == 409
    client.indices.delete(index=index)


async def test_durable_kafka_survives_kill_9(durable_kafka: DurableKafka) -> None:
    """Records acknowledged before kill -9 are there after the broker restarts."""
    producer = AIOKafkaProducer(bootstrap_servers=durable_kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait("durable", f"m{i}".encode(), key=b"k")
    finally:
        await producer.stop()
    durable_kafka.stop_broker()
    durable_kafka.start_broker()
    consumer = AIOKafkaConsumer("durable", bootstrap_servers=durable_kafka.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 15
        while len(got) < 5 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            got += [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    assert got == [f"m{i}".encode() for i in range(5)]
