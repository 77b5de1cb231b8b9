"""The indexer's events: each method writes one log line and moves its metric.

So no event is logged but uncounted (Vector's ``internal_events``).  Per
record outcomes are reported once the offsets they came from are committed
(see :mod:`indexer.outcomes`), so a replayed batch is never counted twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from podlog import metrics
from podlog.logging import get_logger
from podlog.payload import PayloadsParsed
from podlog.retention import RetentionConfig, expired_counter

__all__ = ["IndexerEvents", "events"]

DOCUMENTS = metrics.counter(
    "podlog_indexer_documents_total",
    "Records resolved, by outcome (indexed, already_present, dead_lettered, dropped), counted once "
    "their offsets are committed.",
    ["outcome"],
)
DOCUMENTS_RETRIED = metrics.counter(
    "podlog_indexer_documents_retried_total",
    "Bulk items sent again after a 429 or 5xx item status, by status class (429, 5xx).",
    ["status"],
)
DOCUMENTS_SALVAGED = metrics.counter(
    "podlog_indexer_documents_salvaged_total",
    "Documents indexed after a rejected field value was moved to podlog.salvaged.",
)
MESSAGES_DEAD_LETTERED = metrics.counter(
    "podlog_indexer_messages_dead_lettered_total",
    "Kafka messages or records that could not be decoded, by reason (schema, invalid_record), counted "
    "once their offsets are committed.",
    ["reason"],
)
DEAD_LETTER_BODIES_OMITTED = metrics.counter(
    "podlog_indexer_dead_letter_bodies_omitted_total",
    "Dead letters the cluster refused with their record (e.g. 413, too large), written again without it.",
)
BULK_REQUESTS = metrics.counter(
    "podlog_indexer_bulk_requests_total",
    "Bulk requests by result (ok, item_errors, throttled, server_error, unreachable, rejected).",
    ["result"],
)
BULK_SECONDS = metrics.histogram(
    "podlog_indexer_bulk_request_seconds",
    "Round trip of one bulk request.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BULK_BYTES = metrics.counter("podlog_indexer_bulk_bytes_total", "Bytes of bulk request bodies sent (retries included).")
CONSUMED_MESSAGES = metrics.counter("podlog_indexer_consumed_messages_total", "Kafka messages taken into a batch.")
CONSUMED_BYTES = metrics.counter(
    "podlog_indexer_consumed_bytes_total", "Bytes of Kafka message values taken into a batch."
)
BATCHES_COMMITTED = metrics.counter("podlog_indexer_batches_committed_total", "Batches whose offsets were committed.")
COMMIT_FAILURES = metrics.counter(
    "podlog_indexer_commit_failures_total",
    "Offset commits that failed (the batch will be replayed, without duplicates).",
)
BATCH_SECONDS = metrics.histogram(
    "podlog_indexer_batch_seconds",
    "From a batch's last fetch until its offsets were committed.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
CONSUMER_LAG = metrics.gauge(
    "podlog_indexer_consumer_lag_messages",
    "Messages between the group's committed offset and the partition's high watermark, measured "
    "every indexer.kafka.lag_interval_seconds for each partition assigned to this member.",
    ["topic", "partition"],
)
LAG_MEASUREMENT_FAILURES = metrics.counter(
    "podlog_indexer_lag_measurement_failures_total",
    "Lag measurements that could not read a committed offset or high watermark (the gauge keeps its last value).",
)
OPENSEARCH_UP = metrics.gauge(
    "podlog_indexer_opensearch_up", "1 while the last bulk request reached the cluster, else 0."
)
RECORDS_EXPIRED = expired_counter()
RETENTION_TRIMMED = metrics.counter(
    "podlog_indexer_retention_deleted_documents_total",
    "Expired documents deleted by query from the index of the day a class's retention ends in, by class.",
    ["retention_class"],
)
RETENTION_DELETED = metrics.counter(
    "podlog_indexer_retention_deleted_indices_total",
    "Expired log indices deleted, by retention class.",
    ["retention_class"],
)
PAYLOADS = metrics.counter(
    "podlog_indexer_payloads_total",
    "Schema 2 messages parsed as application payloads (JSON, logfmt) here, by outcome "
    "(parsed, truncated, or the rejection's error code).",
    ["outcome"],
)

DEAD_LETTERS_EXPIRED = metrics.counter(
    "podlog_indexer_dead_letters_expired_total",
    "Dead letters deleted for their age (indexer.dead_letter_days), never replayed.",
)

# At 0 from the start: alerts on increase() or rate() need a sample before the first event.
for _outcome in ("indexed", "already_present", "dead_lettered", "dropped"):
    DOCUMENTS.labels(_outcome)
for _status_class in ("429", "5xx"):
    DOCUMENTS_RETRIED.labels(_status_class)
for _reason in ("schema", "invalid_record"):
    MESSAGES_DEAD_LETTERED.labels(_reason)
for _result in ("ok", "item_errors", "throttled", "server_error", "unreachable", "rejected"):
    BULK_REQUESTS.labels(_result)


class IndexerEvents:
    """One method per event: log it and count it together."""

    def __init__(self) -> None:
        self.log = get_logger("indexer")

    def batch_consumed(self, messages: int, size: int) -> None:
        CONSUMED_MESSAGES.inc(messages)
        CONSUMED_BYTES.inc(size)

    def payloads_parsed(self, counts: PayloadsParsed) -> None:
        if counts.parsed:
            PAYLOADS.labels("parsed").inc(counts.parsed)
        if counts.truncated:
            PAYLOADS.labels("truncated").inc(counts.truncated)
        for code, count in counts.rejected.items():
            PAYLOADS.labels(code).inc(count)

    def documents_resolved(self, outcomes: Mapping[str, int]) -> None:
        """Count resolved records; ``dropped`` ones are counted by :meth:`document_dropped`,
        each with its log line."""
        for outcome, count in outcomes.items():
            if count and outcome != "dropped":
                DOCUMENTS.labels(outcome).inc(count)

    def batch_committed(self, messages: int, seconds: float, outcomes: Mapping[str, int]) -> None:
        BATCHES_COMMITTED.inc()
        BATCH_SECONDS.observe(seconds)
        self.log.debug("batch_committed", messages=messages, seconds=round(seconds, 4), **outcomes)

    def commit_failed(self, error: BaseException) -> None:
        COMMIT_FAILURES.inc()
        self.log.warning("commit_failed", error=repr(error))

    def lag_measured(self, topic: str, partition: int, lag: int) -> None:
        CONSUMER_LAG.labels(topic, str(partition)).set(lag)

    def lag_forgotten(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(topic, str(partition))

    def lag_unmeasured(self, partitions: int, error: str) -> None:
        LAG_MEASUREMENT_FAILURES.inc()
        self.log.warning("lag_unmeasured", partitions=partitions, error=error)

    def bulk_sent(self, seconds: float, size: int, result: str) -> None:
        BULK_REQUESTS.labels(result).inc()
        BULK_SECONDS.observe(seconds)
        BULK_BYTES.inc(size)
        OPENSEARCH_UP.set(1)

    def bulk_failed(self, result: str, error: str, attempt: int, delay: float) -> None:
        BULK_REQUESTS.labels(result).inc()
        if result == "unreachable":
            OPENSEARCH_UP.set(0)
        level = self.log.warning if attempt in (1, 5) or attempt % 20 == 0 else self.log.debug
        level(
            "bulk_request_failed",
            result=result,
            error=error,
            attempt=attempt,
            retry_in_seconds=round(delay, 3),
        )

    def items_retried(self, status_class: str, count: int, first_error: str, delay: float) -> None:
        DOCUMENTS_RETRIED.labels(status_class).inc(count)
        self.log.info(
            "bulk_items_retried",
            status=status_class,
            count=count,
            error=first_error,
            retry_in_seconds=round(delay, 3),
        )

    def document_salvaged(self, index: str, field: str, error: str) -> None:
        DOCUMENTS_SALVAGED.inc()
        self.log.info("document_salvaged", index=index, field=field, error=error)

    def documents_dead_lettered(self, count: int, first: Mapping[str, Any]) -> None:
        self.log.warning("documents_dead_lettered", count=count, **first)

    def message_dead_lettered(self, reason: str, topic: str, partition: int, offset: int, error: str) -> None:
        MESSAGES_DEAD_LETTERED.labels(reason).inc()
        self.log.warning(
            "message_dead_lettered",
            reason=reason,
            topic=topic,
            partition=partition,
            offset=offset,
            error=error,
        )

    def dead_letter_body_omitted(
        self, doc_id: str, topic: str, partition: int, offset: int, size: int, error: str
    ) -> None:
        DEAD_LETTER_BODIES_OMITTED.inc()
        self.log.warning(
            "dead_letter_body_omitted",
            event_id=doc_id,
            topic=topic,
            partition=partition,
            offset=offset,
            body_bytes=size,
            error=error,
        )

    def document_dropped(self, doc_id: str, topic: str, partition: int, offset: int, error: str) -> None:
        DOCUMENTS.labels("dropped").inc()
        self.log.error(
            "document_dropped",
            event_id=doc_id,
            topic=topic,
            partition=partition,
            offset=offset,
            error=error,
        )

    def classes_known(self, retention: RetentionConfig) -> None:
        """Start the per-class series at 0 (alerts on increase() need a first sample)."""
        for name in retention.classes:
            RECORDS_EXPIRED.labels(name)
            RETENTION_TRIMMED.labels(name)

    def records_expired(self, by_class: Mapping[str, int]) -> None:
        """Records that arrived past their class's retention and were not indexed."""
        for name, count in sorted(by_class.items()):
            RECORDS_EXPIRED.labels(name).inc(count)
        self.log.info("records_expired", classes=dict(by_class), count=sum(by_class.values()))

    def retention_documents_deleted(self, index: str, retention_class: str, deleted: int, cutoff: str) -> None:
        RETENTION_TRIMMED.labels(retention_class).inc(deleted)
        self.log.info(
            "retention_documents_deleted",
            index=index,
            retention_class=retention_class,
            deleted=deleted,
            older_than=cutoff,
        )

    def ism_policy_changed(self, index: str, policy: str) -> None:
        self.log.info("ism_policy_changed", index=index, policy=policy)

    def templates_failed(self, error: str, attempt: int, delay: float) -> None:
        self.log.warning("templates_failed", error=error, attempt=attempt, retry_in_seconds=round(delay, 3))

    def retention_index_deleted(self, index: str, retention_class: str, expired_at: str) -> None:
        RETENTION_DELETED.labels(retention_class).inc()
        self.log.info(
            "retention_index_deleted",
            index=index,
            retention_class=retention_class,
            expired_at=expired_at,
        )

    def dead_letters_expired(self, count: int, index: str, written_before: str) -> None:
        DEAD_LETTERS_EXPIRED.inc(count)
        self.log.warning("dead_letters_expired", count=count, index=index, written_before=written_before)

    def ism_policy_ensured(self, policy: str, changed: bool) -> None:
        self.log.info("ism_policy_ensured", policy=policy, changed=changed)


events = IndexerEvents()
