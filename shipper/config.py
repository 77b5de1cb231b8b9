"""Shipper settings: the on-disk spool and the transport behind it."""

from __future__ import annotations

import dataclasses
from typing import Literal

from podlog.config import setting
from podlog.kafka_security import KafkaSecurityConfig

__all__ = ["KafkaProducerConfig", "ShipperConfig", "SpoolConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolConfig:
    """The durable buffer between the collector and the transport."""

    max_bytes: int = setting(1 << 30, "Size cap of the spool; at the cap tailing pauses.")
    segment_bytes: int = setting(
        16 << 20, "A segment file is closed and a new one started past this size."
    )
    fsync: Literal["batch", "interval"] = setting(
        "batch", "batch: fsync before each append returns; interval: at most every fsync_interval."
    )
    fsync_interval_seconds: float = setting(
        1.0, "With fsync: interval, the longest time appended data stays unsynced."
    )
    schema: int = setting(
        2,
        "Message schema written: 2 (one message per file generation of a container, in columns; "
        "see wire-format.md), or 1 while indexers of a release before schema 2 still read the topics.",
    )

    def __post_init__(self) -> None:
        if self.max_bytes < 4096:
            raise ValueError(f"max_bytes {self.max_bytes} is below the minimum of 4096")
        if self.segment_bytes < 4096:
            raise ValueError(f"segment_bytes {self.segment_bytes} is below the minimum of 4096")
        if self.fsync_interval_seconds <= 0:
            raise ValueError("fsync_interval_seconds must be positive")
        if self.schema not in (1, 2):
            raise ValueError(f"schema {self.schema} is not 1 or 2")


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class KafkaProducerConfig(KafkaSecurityConfig):
    """Where and how records go to Kafka."""

    bootstrap_servers: str = setting("localhost:9092", "Comma-separated Kafka bootstrap addresses.")
    topic: str = setting(
        "podlog-logs",
        "Topic records are written to; `{retention}` is replaced by the record's retention class.",
    )
    default_retention: str = setting(
        "standard", "Retention class used in the topic template for records that carry none."
    )
    client_id: str = setting("podlog-agent", "Client id the broker sees in its logs and quotas.")
    idempotence: Literal["auto", "on", "off"] = setting(
        "auto",
        "Idempotent producer: on, off, or auto (on, falling back with a warning when the "
        "broker lacks InitProducerId).",
    )
    compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = setting(
        "zstd", "Compression of message batches; zstd measured fastest end to end (bench/RESULTS.md)."
    )
    linger_ms: int = setting(5, "Time the producer waits to fill a batch before sending it.")
    max_batch_bytes: int = setting(
        1 << 20, "Upper size of one producer batch per partition (aiokafka max_batch_size)."
    )
    max_message_bytes: int = setting(
        1_000_000,
        "Largest message value sent; keep at or below the broker's message.max.bytes. "
        "Larger stream groups are split; a larger single record is truncated and flagged.",
    )
    request_timeout_ms: int = setting(
        30_000, "Time a produce request may take before it fails and is retried."
    )
    connect_timeout_seconds: float = setting(
        30.0, "Time allowed at start to reach the brokers before failing with a clear error."
    )

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes {self.max_message_bytes} is below 1024")
        if not self.bootstrap_servers.strip():
            raise ValueError("bootstrap_servers is empty")


@dataclasses.dataclass(frozen=True, slots=True)
class ShipperConfig:
    """The spool and the transport that drains it."""

    transport: str = setting("kafka", "kafka, or embedded (single-node mode, set by `podlog run`).")
    spool: SpoolConfig = setting(SpoolConfig, "The on-disk spool.")
    kafka: KafkaProducerConfig = setting(KafkaProducerConfig, "The Kafka producer.")
    max_send_records: int = setting(20_000, "Most records handed to the transport in one send.")
    max_send_bytes: int = setting(8 << 20, "Most spooled bytes handed to the transport in one send.")
    max_in_flight_sends: int = setting(
        3,
        "Sends in flight at once (acknowledged in order); 1 never lets a retried send land "
        "after a later one.",
    )
    retry_initial_seconds: float = setting(0.2, "First wait after a failed send; doubles per retry.")
    retry_max_seconds: float = setting(15.0, "Longest wait between retries of a failed send.")
    drain_timeout_seconds: float = setting(
        10.0, "On shutdown, time spent delivering what is spooled before giving up (kept on disk)."
    )
    unready_after_seconds: float = setting(
        60.0, "Readiness fails when sends have been failing for this long."
    )
