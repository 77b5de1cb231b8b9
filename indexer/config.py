"""Indexer settings: the Kafka consumer group and the OpenSearch bulk writer."""

from __future__ import annotations

import dataclasses
from typing import Literal

from podlog.config import setting
from podlog.kafka_security import KafkaSecurityConfig

__all__ = ["IndexerConfig", "KafkaConsumerConfig", "OpenSearchConfig"]


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class KafkaConsumerConfig(KafkaSecurityConfig):
    """Where the indexer reads records from."""

    bootstrap_servers: str = setting("localhost:9092", "Comma-separated Kafka bootstrap addresses.")
    topics: list[str] = setting(["podlog-logs"], "Topics to consume.")
    group_id: str = setting("podlog-indexer", "Consumer group id; indexers with the same id share work.")
    client_id: str = setting("podlog-indexer", "Client id reported to the brokers.")
    auto_offset_reset: Literal["earliest", "latest"] = setting(
        "earliest", "Where a group without committed offsets starts: earliest or latest."
    )
    batch_max_bytes: int = setting(
        8 * 1024 * 1024, "A batch is indexed once its Kafka message values reach this many bytes."
    )
    batch_max_wait_seconds: float = setting(
        1.0, "A batch is indexed at the latest this long after its first message arrived."
    )
    batch_idle_seconds: float = setting(
        0.1, "A batch is indexed early once no message arrived for this long (caught up)."
    )
    fetch_max_records: int = setting(10000, "Most messages taken from the consumer in one fetch.")
    session_timeout_ms: int = setting(30000, "Group session timeout: a silent consumer is removed after this long.")
    max_poll_interval_ms: int = setting(
        300000, "Longest allowed gap between fetches before the group reassigns partitions."
    )
    rebalance_wait_seconds: float = setting(
        20.0, "On a rebalance, how long to let the batch in flight finish and commit first."
    )
    lag_interval_seconds: float = setting(
        15.0,
        "How often the consumer-lag gauge is measured for every assigned partition (committed "
        "offset against high watermark), whether or not batches commit; 0 disables it.",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class OpenSearchConfig:
    """The OpenSearch cluster documents are written to (and searched in)."""

    hosts: list[str] = setting(["http://localhost:9200"], "OpenSearch URLs.")
    index_prefix: str = setting("podlog", "Prefix of every index, template and policy podlog owns.")
    username: str = setting("", "HTTP basic auth user; empty means no authentication.")
    password: str = setting("", "HTTP basic auth password.", secret=True)
    verify_certs: bool = setting(True, "Verify the cluster's TLS certificate.")
    ca_certs: str = setting("", "CA bundle file for the cluster's TLS certificate; empty: system CAs.")
    request_timeout_seconds: float = setting(60.0, "Timeout of one HTTP request to the cluster.")
    number_of_shards: int = setting(1, "Primary shards of each daily log index.")
    number_of_replicas: int = setting(1, "Replicas of each log index.")
    refresh_interval: str = setting("5s", "How often new documents become searchable.")
    codec: str = setting("best_compression", "Stored fields codec of log indices; empty keeps the cluster default.")
    message_ignore_above: int = setting(
        4096, "Messages longer than this many characters are not in message.keyword (still searchable)."
    )
    flat_type: Literal["auto", "flat_object", "flattened", "object"] = setting(
        "auto",
        "Type for labels, annotations and json: auto detects flat_object or flattened, "
        "object stores them unindexed beside a keyword list of key=value.",
    )
    ism: Literal["auto", "on", "off"] = setting(
        "auto",
        "Keep one ISM delete policy per retention class, a backstop to the retention pass (which ages "
        "an index by the day it holds, not its creation): auto uses ISM where installed.",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class IndexerConfig:
    """The Kafka to OpenSearch indexer."""

    kafka: KafkaConsumerConfig = setting(KafkaConsumerConfig, "The Kafka consumer.")
    opensearch: OpenSearchConfig = setting(OpenSearchConfig, "The OpenSearch cluster.")
    bulk_max_bytes: int = setting(5 * 1024 * 1024, "Largest body of one bulk request; a batch is split into several.")
    bulk_concurrency: int = setting(2, "Bulk requests in flight at once.")
    max_inflight_batches: int = setting(
        2, "Batches written at once; offsets are still committed in order."
    )
    retry_initial_seconds: float = setting(0.2, "First backoff before retrying a failed item.")
    retry_max_seconds: float = setting(30.0, "Longest backoff between retries.")
    item_max_attempts: int = setting(
        12,
        "Attempts for an item the cluster answers 5xx for, before it is dead-lettered "
        "(429 and an unreachable cluster are retried without limit).",
    )
    retention_interval_seconds: float = setting(
        3600.0,
        "How often the indexer's retention pass runs (with or without ISM): it deletes expired log "
        "indices, the expired documents of the index each class's retention ends in, and expired "
        "dead letters, so nothing stays searchable longer than this past its retention; 0 leaves "
        "it all to `podlog retention apply`.",
    )
    dead_letter_days: float = setting(
        30.0,
        "Dead letters are deleted this many days after they were written, by the same pass "
        "as expired log indices (and `podlog retention apply`); 0 keeps them until replayed.",
    )
    salvage: bool = setting(True, "Retry a document rejected for a field's content with that value moved aside.")
