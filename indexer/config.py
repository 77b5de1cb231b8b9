"""Indexer settings: the Kafka consumer group and the OpenSearch bulk writer."""

from __future__ import annotations

import dataclasses

from podlog.config import setting

__all__ = ["IndexerConfig", "KafkaConsumerConfig", "OpenSearchConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaConsumerConfig:
    """Where the indexer reads records from."""

    bootstrap_servers: str = setting("localhost:9092", "Comma-separated Kafka bootstrap addresses.")
    topics: list[str] = setting(["podlog-logs"], "Topics to consume.")
    group_id: str = setting("podlog-indexer", "Consumer group id; indexers with the same id share work.")


@dataclasses.dataclass(frozen=True, slots=True)
class OpenSearchConfig:
    """The OpenSearch cluster documents are written to (and searched in)."""

    hosts: list[str] = setting(["http://localhost:9200"], "OpenSearch URLs.")
    index_prefix: str = setting("podlog", "Prefix of every index, template and policy podlog owns.")


@dataclasses.dataclass(frozen=True, slots=True)
class IndexerConfig:
    """The Kafka to OpenSearch indexer."""

    kafka: KafkaConsumerConfig = setting(KafkaConsumerConfig, "The Kafka consumer.")
    opensearch: OpenSearchConfig = setting(OpenSearchConfig, "The OpenSearch cluster.")
