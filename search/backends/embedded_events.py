"""Self-observability of the embedded index: each event logs and counts together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from podlog.logging import get_logger
from podlog.metrics import counter, histogram
from podlog.retention import expired_counter

__all__ = ["IndexEvents"]

_indexed = counter(
    "podlog_embedded_records_indexed_total", "Records written into the embedded index."
)
_duplicates = counter(
    "podlog_embedded_records_duplicate_total",
    "Records not written because their event.id was already indexed (replays).",
)
_rejected = counter(
    "podlog_embedded_records_rejected_total",
    "Records the embedded index could not store, by reason.",
    ["reason"],
)
_expired = counter(
    "podlog_embedded_records_expired_total",
    "Records deleted by retention, by retention class.",
    ["retention_class"],
)
_write_seconds = histogram(
    "podlog_embedded_write_seconds",
    "Time to commit one batch into the embedded index.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
_query_seconds = histogram(
    "podlog_embedded_query_seconds",
    "Time to answer one backend call, by kind.",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0),
)
_checkpoint_seconds = histogram(
    "podlog_embedded_checkpoint_seconds",
    "Time to copy the write-ahead log into the index file, by mode (passive, restart).",
    ["mode"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
_checkpoint_failures = counter(
    "podlog_embedded_checkpoint_failures_total",
    "Checkpoints that failed (the log keeps the data; the next one tries again).",
)
_timeouts = counter(
    "podlog_embedded_queries_timed_out_total",
    "Backend calls interrupted at their time limit, by kind.",
    ["kind"],
)


class IndexEvents:
    """One method per event of the embedded index."""

    def __init__(self) -> None:
        self.log = get_logger("search.backends.embedded")

    def index_opened(self, path: str, sqlite_version: str) -> None:
        self.log.info("index_opened", path=path, sqlite_version=sqlite_version)

    def batch_written(self, written: int, duplicates: int, seconds: float) -> None:
        _indexed.inc(written)
        _duplicates.inc(duplicates)
        _write_seconds.observe(seconds)
        if duplicates:
            self.log.info("duplicates_skipped", duplicates=duplicates, written=written)

    def record_rejected(self, reason: str, count: int, example: Any) -> None:
        _rejected.labels(reason=reason).inc(count)
        self.log.warning("records_rejected", error_code=reason, count=count, example=example)

    def retention_applied(self, retention_class: str, deleted: int, cutoff_ns: int) -> None:
        _expired.labels(retention_class=retention_class).inc(deleted)
        self.log.info(
            "retention_applied", retention_class=retention_class, deleted=deleted, cutoff_ns=cutoff_ns
        )

    def records_expired(self, by_class: Mapping[str, int]) -> None:
        """Records that arrived past their class's retention and were not indexed (the same
        series as the indexer's, registered on first use)."""
        series = expired_counter()
        for name, count in sorted(by_class.items()):
            series.labels(name).inc(count)
        self.log.info("records_expired", classes=dict(by_class), count=sum(by_class.values()))

    def retention_failed(self, error: BaseException) -> None:
        self.log.exception("retention_failed", error=repr(error))

    def query_answered(self, kind: str, seconds: float) -> None:
        _query_seconds.labels(kind=kind).observe(seconds)

    def query_timed_out(self, kind: str, timeout_seconds: float) -> None:
        _timeouts.labels(kind=kind).inc()
        self.log.warning("query_timed_out", kind=kind, timeout_seconds=timeout_seconds)

    def checkpointed(self, mode: str, seconds: float) -> None:
        _checkpoint_seconds.labels(mode=mode).observe(seconds)

    def checkpoint_failed(self, error: BaseException) -> None:
        _checkpoint_failures.inc()
        self.log.warning("checkpoint_failed", error=repr(error))

    def index_closed(self, path: str) -> None:
        self.log.info("index_closed", path=path)
