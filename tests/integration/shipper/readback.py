"""Read a topic back with confluent-kafka (librdkafka), independent of aiokafka."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from podlog.record import Record
from podlog.wire import decode_message


@dataclass
class TopicContent:
    """Records read from a topic, by message key, in partition order."""

    by_key: dict[bytes, list[Record]] = field(default_factory=lambda: defaultdict(list))
    messages: int = 0

    def ids(self) -> set[str]:
        """Every distinct event.id read."""
        return {r["event"]["id"] for records in self.by_key.values() for r in records}

    def first_seen_offsets(self, key: bytes) -> list[int]:
        """File offsets of one stream in the order first seen (redeliveries ignored)."""
        seen: set[str] = set()
        out: list[int] = []
        for r in self.by_key[key]:
            if r["event"]["id"] not in seen:
                seen.add(r["event"]["id"])
                out.append(r["log"]["offset"])
        return out


def read_topic(bootstrap: str, topic: str, expect_ids: int, timeout: float = 60.0) -> TopicContent:
    """Consume ``topic`` from the beginning until ``expect_ids`` distinct records or timeout."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"readback-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    content = TopicContent()
    try:
        deadline = time.monotonic() + timeout
        partitions: list[int] = []
        while not partitions and time.monotonic() < deadline:
            meta = consumer.list_topics(topic, timeout=5)
            found = meta.topics.get(topic)
            if found is not None and found.error is None:
                partitions = sorted(found.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while len(content.ids()) < expect_ids and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume failed: {error}")
                content.messages += 1
                key, value = message.key(), message.value()
                assert key is not None and value is not None
                content.by_key[key].extend(decode_message(value).records)
    finally:
        consumer.close()
    return content
