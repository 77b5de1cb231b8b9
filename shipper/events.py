"""The shipper's events: each method writes one log line and moves its metric.

So no event is logged but uncounted (Vector's ``internal_events``).  Gauges
that describe the spool read it at scrape time through a weak reference.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, Literal, Protocol, get_args

from podlog import metrics
from podlog.logging import get_logger

__all__ = ["SEND_ERROR_REASONS", "SendErrorReason", "SpoolView", "events"]

SPOOL_BYTES = metrics.gauge("podlog_shipper_spool_bytes", "Bytes of spool segment files on disk.")
SPOOL_MAX_BYTES = metrics.gauge(
    "podlog_shipper_spool_max_bytes", "The spool's size cap, shipper.spool.max_bytes."
)
SPOOL_RECORDS = metrics.gauge(
    "podlog_shipper_spool_records", "Records in the spool not yet acknowledged downstream."
)
SPOOL_OLDEST_AGE = metrics.gauge(
    "podlog_shipper_spool_oldest_unacked_age_seconds",
    "Age of the oldest batch in the spool not yet acknowledged downstream (0 when empty).",
)
SPOOL_APPENDED_RECORDS = metrics.counter(
    "podlog_shipper_spool_appended_records_total", "Records appended to the spool."
)
SPOOL_APPENDED_BYTES = metrics.counter(
    "podlog_shipper_spool_appended_bytes_total", "Bytes appended to the spool, framing included."
)
SPOOL_FULL = metrics.counter(
    "podlog_shipper_spool_full_total",
    "Appends refused because the spool was full, by reason (cap, disk_full).",
    ["reason"],
)
SPOOL_CORRUPTED_RECORDS = metrics.counter(
    "podlog_shipper_spool_corrupted_batches_total",
    "Spool batches lost to damage, by kind (torn_tail, corrupted when opening the spool; "
    "unreadable_message when a schema 2 message does not decode).",
    ["kind"],
)
SPOOL_CORRUPTED_BYTES = metrics.counter(
    "podlog_shipper_spool_corrupted_bytes_total",
    "Damaged spool bytes skipped or cut when opening the spool, by kind (torn_tail, corrupted).",
    ["kind"],
)
SPOOL_FSYNC_SECONDS = metrics.histogram(
    "podlog_shipper_spool_fsync_seconds",
    "Time one fsync of a spool segment took.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
SPOOL_FSYNC_ERRORS = metrics.counter(
    "podlog_shipper_spool_fsync_errors_total", "Background fsyncs of the spool (fsync: interval) that failed."
)
SENT_RECORDS = metrics.counter(
    "podlog_shipper_sent_records_total", "Records acknowledged by the transport.", ["transport"]
)
SENT_BYTES = metrics.counter(
    "podlog_shipper_sent_bytes_total",
    "Encoded message bytes acknowledged by the transport (before compression).",
    ["transport"],
)
SENT_MESSAGES = metrics.counter(
    "podlog_shipper_sent_messages_total", "Kafka messages acknowledged by the brokers."
)
PAYLOADS = metrics.counter(
    "podlog_shipper_payloads_total",
    "podlog run: application payloads (JSON, logfmt) parsed as lines enter the embedded index, by "
    "outcome (parsed, truncated, or the rejection's error code); the indexer counts its own.",
    ["outcome"],
)
SEND_RETRIES = metrics.counter(
    "podlog_shipper_send_retries_total", "Sends tried again after a failure.", ["transport"]
)
SEND_ERRORS = metrics.counter(
    "podlog_shipper_send_errors_total",
    "Failed sends by reason (timeout, connection, message_too_large, authorization, broker, other).",
    ["transport", "reason"],
)
SEND_SECONDS = metrics.histogram(
    "podlog_shipper_send_seconds",
    "Round trip of one send: from handing records to the transport until all were acknowledged.",
    ["transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
KAFKA_SECONDS = metrics.histogram(
    "podlog_shipper_kafka_roundtrip_seconds",
    "From the first produce of a send until Kafka acknowledged all its messages (acks=all).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RECORDS_TRUNCATED = metrics.counter(
    "podlog_shipper_records_truncated_total",
    "Records cut to fit the broker's message size limit (log.truncated is set on them).",
)
MESSAGES_SPLIT = metrics.counter(
    "podlog_shipper_messages_split_total",
    "Stream groups split into several messages to stay under the message size limit.",
)
SPOOL_STATE_WRITE_ERRORS = metrics.counter(
    "podlog_shipper_spool_state_write_errors_total",
    "Failed writes of the spool's acknowledged position (retried at the next ack; a crash resends more).",
)
IDEMPOTENCE_DISABLED = metrics.counter(
    "podlog_shipper_idempotence_fallbacks_total",
    "Times the producer fell back to non-idempotent mode because the broker lacks it.",
)

# At 0 from the start: an alert on increase() or rate() needs a sample before the first event.
for _reason in ("cap", "disk_full"):
    SPOOL_FULL.labels(reason=_reason)
for _kind in ("torn_tail", "corrupted"):
    SPOOL_CORRUPTED_RECORDS.labels(kind=_kind)
    SPOOL_CORRUPTED_BYTES.labels(kind=_kind)
SendErrorReason = Literal["timeout", "connection", "message_too_large", "authorization", "broker", "other"]
"""Why a Kafka send failed (``shipper.kafka`` classifies each error as one of these)."""
SEND_ERROR_REASONS: tuple[SendErrorReason, ...] = get_args(SendErrorReason)
"""Every :data:`SendErrorReason`, exported at 0 once the transport is up."""


class SpoolView(Protocol):
    """What the spool gauges read at scrape time."""

    @property
    def disk_bytes(self) -> int: ...

    @property
    def records(self) -> int: ...

    @property
    def oldest_time_ns(self) -> int | None: ...


def _weak_reader(ref: weakref.ReferenceType[Any], read: Callable[[Any], float]) -> Callable[[], float]:
    def value() -> float:
        target = ref()
        return 0.0 if target is None else read(target)

    return value


def _oldest_age(spool: SpoolView) -> float:
    oldest = spool.oldest_time_ns
    return 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)


class ShipperEvents:
    """One method per shipper event: the log line and the metric together."""

    def __init__(self) -> None:
        self.log = get_logger("shipper")

    # -- spool -------------------------------------------------------------

    def spool_opened(
        self, spool: SpoolView, *, directory: str, segments: int, acked_seq: int, max_bytes: int
    ) -> None:
        ref = weakref.ref(spool)
        SPOOL_BYTES.set_function(_weak_reader(ref, lambda s: float(s.disk_bytes)))
        # A plain value, not read through ``ref``: the cap stays exported after
        # the spool closes, so bytes / cap never divides by 0 once it opened.
        SPOOL_MAX_BYTES.set(max_bytes)
        SPOOL_RECORDS.set_function(_weak_reader(ref, lambda s: float(s.records)))
        SPOOL_OLDEST_AGE.set_function(_weak_reader(ref, _oldest_age))
        self.log.info(
            "spool_opened",
            directory=directory,
            segments=segments,
            records=spool.records,
            bytes=spool.disk_bytes,
            max_bytes=max_bytes,
            acked_seq=acked_seq,
        )

    def spool_appended(self, records: int, nbytes: int) -> None:
        SPOOL_APPENDED_RECORDS.inc(records)
        SPOOL_APPENDED_BYTES.inc(nbytes)

    def spool_fsynced(self, seconds: float) -> None:
        SPOOL_FSYNC_SECONDS.observe(seconds)

    def spool_fsync_failed(self, *, path: str, error: str) -> None:
        SPOOL_FSYNC_ERRORS.inc()
        self.log.error("spool_fsync_failed", path=path, error=error)

    def spool_full(self, *, bytes_used: int, max_bytes: int, first: bool) -> None:
        SPOOL_FULL.labels(reason="cap").inc()
        if first:
            self.log.warning("spool_filled", bytes=bytes_used, max_bytes=max_bytes)

    def spool_disk_full(self, *, path: str, error: str, first: bool) -> None:
        SPOOL_FULL.labels(reason="disk_full").inc()
        if first:
            self.log.error("spool_disk_filled", path=path, error=error)

    def spool_drained(self, *, bytes_used: int) -> None:
        self.log.info("spool_drained", bytes=bytes_used)

    def spool_damage_found(
        self,
        *,
        kind: str,
        path: str,
        start: int,
        end: int,
        lost_batches: int,
        lost_seqs: str,
    ) -> None:
        SPOOL_CORRUPTED_RECORDS.labels(kind=kind).inc(lost_batches)
        SPOOL_CORRUPTED_BYTES.labels(kind=kind).inc(end - start)
        event = "spool_tail_truncated" if kind == "torn_tail" else "spool_batches_skipped"
        self.log.warning(
            event,
            path=path,
            start=start,
            end=end,
            bytes=end - start,
            lost_batches=lost_batches,
            lost_seqs=lost_seqs,
        )

    def spool_state_write_failed(self, *, path: str, error: str) -> None:
        SPOOL_STATE_WRITE_ERRORS.inc()
        self.log.warning("spool_state_write_failed", path=path, error=error)

    def spool_state_unreadable(self, *, path: str, error: str) -> None:
        self.log.warning("spool_state_ignored", path=path, error=error)

    def segment_removed(self, *, path: str, last_seq: int) -> None:
        self.log.debug("segment_removed", path=path, last_seq=last_seq)

    # -- delivery ----------------------------------------------------------

    def batch_sent(self, *, transport: str, records: int, batches: int, seconds: float) -> None:
        SENT_RECORDS.labels(transport=transport).inc(records)
        SEND_SECONDS.labels(transport=transport).observe(seconds)
        self.log.debug(
            "batch_sent", transport=transport, records=records, batches=batches, seconds=seconds
        )

    def messages_delivered(self, *, messages: int, nbytes: int, seconds: float) -> None:
        SENT_MESSAGES.inc(messages)
        SENT_BYTES.labels(transport="kafka").inc(nbytes)
        KAFKA_SECONDS.observe(seconds)

    def send_failed(
        self, *, transport: str, reason: str, error: str, attempt: int, retry_in: float
    ) -> None:
        SEND_ERRORS.labels(transport=transport, reason=reason).inc()
        if attempt > 1:
            SEND_RETRIES.labels(transport=transport).inc()
        log = self.log.warning if attempt <= 3 else self.log.error
        log(
            "send_failed",
            transport=transport,
            reason=reason,
            error=error,
            attempt=attempt,
            retry_in=round(retry_in, 3),
        )

    def send_recovered(self, *, transport: str, attempts: int, seconds: float) -> None:
        SEND_RETRIES.labels(transport=transport).inc()
        self.log.info("send_recovered", transport=transport, attempts=attempts, seconds=round(seconds, 3))

    def record_truncated(self, *, key: str, original_bytes: int, limit: int) -> None:
        RECORDS_TRUNCATED.inc()
        self.log.warning(
            "record_truncated", stream=key, original_bytes=original_bytes, limit=limit
        )

    def message_split(self, *, key: str, parts: int) -> None:
        MESSAGES_SPLIT.inc()
        self.log.debug("message_split", stream=key, parts=parts)

    def stored_message_unreadable(self, *, key: str, rows: int, nbytes: int, error: str) -> None:
        """A spooled schema 2 message that does not decode (damage the frame checksum did not
        catch): its lines are skipped, counted as a corrupted batch, never a crash."""
        SPOOL_CORRUPTED_RECORDS.labels(kind="unreadable_message").inc()
        SPOOL_CORRUPTED_BYTES.labels(kind="unreadable_message").inc(nbytes)
        self.log.error("spool_message_unreadable", stream=key, lines=rows, bytes=nbytes, error=error)

    def payloads_parsed(self, parsed: int, truncated: int, rejected: dict[str, int]) -> None:
        """Payloads parsed as spooled messages were decoded into records (podlog run)."""
        if parsed:
            PAYLOADS.labels("parsed").inc(parsed)
        if truncated:
            PAYLOADS.labels("truncated").inc(truncated)
        for code, count in rejected.items():
            PAYLOADS.labels(code).inc(count)
        if rejected:
            self.log.debug("payloads_rejected", **rejected)

    def message_limit_lowered(self, *, old: int, new: int) -> None:
        self.log.warning("message_limit_lowered", old=old, new=new)

    def idempotence_disabled(self, *, bootstrap: str, error: str) -> None:
        IDEMPOTENCE_DISABLED.inc()
        self.log.warning(
            "idempotence_disabled",
            bootstrap=bootstrap,
            error=error,
            detail="broker does not support InitProducerId; producing without idempotence "
            "(duplicates on retry are removed downstream by event.id)",
        )

    def transport_started(self, *, transport: str, **fields: Any) -> None:
        # At 0 from here on: the produce-error alert's rate() needs a sample before the first error.
        for reason in SEND_ERROR_REASONS:
            SEND_ERRORS.labels(transport=transport, reason=reason)
        self.log.info("transport_started", transport=transport, **fields)

    def transport_stopped(self, *, transport: str) -> None:
        self.log.info("transport_stopped", transport=transport)

    def shipper_stopped(self, *, pending_records: int, drained: bool) -> None:
        self.log.info("shipper_stopped", pending_records=pending_records, drained=drained)


events = ShipperEvents()
"""The process-wide shipper events."""
