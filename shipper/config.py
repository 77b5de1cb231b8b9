"""Shipper settings: the on-disk spool and the transport behind it."""

from __future__ import annotations

import dataclasses

from podlog.config import setting

__all__ = ["KafkaProducerConfig", "ShipperConfig", "SpoolConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolConfig:
    """The durable buffer between the collector and the transport."""

    max_bytes: int = setting(1 << 30, "Size cap of the spool; at the cap tailing pauses.")


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaProducerConfig:
    """Where and how records go to Kafka."""

    bootstrap_servers: str = setting("localhost:9092", "Comma-separated Kafka bootstrap addresses.")
    topic: str = setting("podlog-logs", "Topic records are written to.")


@dataclasses.dataclass(frozen=True, slots=True)
class ShipperConfig:
    """The spool and the transport that drains it."""

    transport: str = setting("kafka", "kafka, or embedded (single-node mode, set by `podlog run`).")
    spool: SpoolConfig = setting(SpoolConfig, "The on-disk spool.")
    kafka: KafkaProducerConfig = setting(KafkaProducerConfig, "The Kafka producer.")
