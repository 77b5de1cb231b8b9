"""The collector's internal events: each method logs and bumps its counter together.

Per-line problems (bad JSON, invalid UTF-8, long lines) are counted on every
occurrence but logged once per burst: the first occurrence per ``(reason,
path)`` in a :data:`LOG_BURST_SECONDS` window writes a line that carries the
number suppressed since the previous one.
"""

from __future__ import annotations

import time

from podlog.logging import get_logger
from podlog.metrics import counter, gauge

__all__ = ["EVENTS", "JOURNAL_EVENTS", "LOG_BURST_SECONDS", "CollectorEvents", "JournalEvents"]

LOG_BURST_SECONDS = 10.0
"""At most one log line per ``(reason, path)`` in this window."""

READ_BYTES = counter("podlog_collector_read_bytes_total", "Bytes read from log files.")
READ_LINES = counter("podlog_collector_read_lines_total", "Lines read from log files.")
RECORDS = counter("podlog_collector_records_total", "Records handed to the sink.")
BATCHES = counter("podlog_collector_batches_total", "Batches handed to the sink.")
LINES_REJECTED = counter(
    "podlog_collector_lines_rejected_total",
    "Lines that did not decode as their format; shipped as raw text.",
    ["reason"],
)
LINES_TRUNCATED = counter(
    "podlog_collector_lines_truncated_total",
    "Lines longer than max_line_bytes, shipped truncated.",
)
TRUNCATED_BYTES = counter(
    "podlog_collector_truncated_bytes_total",
    "Bytes cut from lines longer than max_line_bytes.",
)
LOST_BYTES = counter(
    "podlog_collector_lost_bytes_total",
    "Bytes never read because they were gone first: deleted_before_read (no generation of "
    "the file left, .gz included), truncated_before_read (truncated in place, no copy left).",
    ["reason"],
)
# At 0 from the start: an alert on increase() needs a sample before the first loss.
LOST_BYTES.labels(reason="deleted_before_read")
LOST_BYTES.labels(reason="truncated_before_read")
FILES_SKIPPED = counter(
    "podlog_collector_files_skipped_total",
    "Files matched by the include globs that are never read as they are: compressed, "
    "binary, not a regular file, a symlink loop.",
    ["reason"],
)
FILE_EVENTS = counter(
    "podlog_collector_file_events_total",
    "File lifecycle events: opened, rotated, truncated, deleted, closed, excluded, included, errors.",
    ["event"],
)
UNATTRIBUTED_RECORDS = counter(
    "podlog_collector_unattributed_records_total",
    "Records from files whose path names no namespace/pod/container.",
)
SINK_RETRIES = counter(
    "podlog_collector_sink_retries_total",
    "Batches the sink refused for now (spool full) and that were retried.",
)
CHECKPOINT_WRITES = counter(
    "podlog_collector_checkpoint_writes_total", "Checkpoint files written.", ["result"]
)
OPEN_FILES = gauge("podlog_collector_open_files", "Files currently held open.")
QUEUED_BATCHES = gauge(
    "podlog_collector_queued_batches", "Batches read but not yet accepted by the sink."
)

JOURNAL_ENTRIES = counter("podlog_collector_journal_entries_total", "Journal entries read (journalctl lines).")
JOURNAL_BYTES = counter("podlog_collector_journal_bytes_total", "Bytes of journalctl output read.")
JOURNAL_REJECTED = counter(
    "podlog_collector_journal_rejected_total",
    "journalctl lines that were no usable entry (invalid_json, no_cursor, invalid_timestamp, "
    "line_too_long); skipped.",
    ["reason"],
)
JOURNAL_FLAGGED = counter(
    "podlog_collector_journal_entries_flagged_total",
    "Journal entries shipped changed: truncated (message over max_line_bytes, cut), "
    "invalid_utf8 (kept, replaced with U+FFFD).",
    ["reason"],
)
JOURNAL_RESTARTS = counter(
    "podlog_collector_journal_restarts_total",
    "journalctl child processes that ended or could not start (exited, missing) and were "
    "started again after a backoff.",
    ["reason"],
)
JOURNAL_STDERR = counter(
    "podlog_collector_journal_stderr_lines_total", "Lines journalctl wrote to its stderr (each logged)."
)
JOURNAL_CURSOR_GONE = counter(
    "podlog_collector_journal_cursor_gone_total",
    "Starts of journalctl whose resume cursor's entry was no longer in the journal (vacuumed or "
    "rotated away while podlog was down or behind): entries after it may be lost, uncounted.",
)
JOURNAL_UP = gauge("podlog_collector_journal_up", "1 while a journalctl child runs, else 0.")
for _reason in ("invalid_json", "no_cursor", "invalid_timestamp", "line_too_long"):
    JOURNAL_REJECTED.labels(reason=_reason)
for _reason in ("truncated", "invalid_utf8"):
    JOURNAL_FLAGGED.labels(reason=_reason)
for _reason in ("exited", "missing"):
    JOURNAL_RESTARTS.labels(reason=_reason)


class CollectorEvents:
    """One method per event: the log line and the metric move together."""

    def __init__(self) -> None:
        self._log = get_logger("collector")
        self._bursts: dict[tuple[str, str], tuple[float, int]] = {}

    def _burst(self, reason: str, path: str) -> int | None:
        """Suppressed count to report when this occurrence should be logged, else None."""
        key = (reason, path)
        now = time.monotonic()
        seen = self._bursts.get(key)
        if seen is None or now - seen[0] >= LOG_BURST_SECONDS:
            if len(self._bursts) > 4096:
                self._bursts.clear()
            self._bursts[key] = (now, 0)
            return 0 if seen is None else seen[1]
        self._bursts[key] = (seen[0], seen[1] + 1)
        return None

    def lines_read(self, lines: int, nbytes: int) -> None:
        READ_LINES.inc(lines)
        READ_BYTES.inc(nbytes)

    def line_rejected(self, reason: str, path: str, count: int = 1, detail: str = "") -> None:
        LINES_REJECTED.labels(reason=reason).inc(count)
        suppressed = self._burst(reason, path)
        if suppressed is not None:
            self._log.warning(
                "line_rejected",
                error_code=reason,
                path=path,
                count=count,
                suppressed=suppressed,
                error=detail,
            )

    def line_truncated(self, path: str, cut_bytes: int, offset: int) -> None:
        LINES_TRUNCATED.inc()
        TRUNCATED_BYTES.inc(cut_bytes)
        suppressed = self._burst("line_too_long", path)
        if suppressed is not None:
            self._log.warning(
                "line_truncated",
                error_code="line_too_long",
                path=path,
                offset=offset,
                cut_bytes=cut_bytes,
                suppressed=suppressed,
            )

    def bytes_lost(self, reason: str, path: str, nbytes: int, identity: str) -> None:
        """Bytes that are gone before podlog read them: one structured warning per file."""
        if nbytes <= 0:
            return
        LOST_BYTES.labels(reason=reason).inc(nbytes)
        self._log.error("bytes_lost", reason=reason, path=path, bytes=nbytes, identity=identity)

    def file_opened(self, path: str, identity: str, offset: int, fmt: str) -> None:
        FILE_EVENTS.labels(event="opened").inc()
        OPEN_FILES.inc()
        self._log.info("file_opened", path=path, identity=identity, offset=offset, format=fmt)

    def file_closed(self, path: str, identity: str, offset: int, reason: str) -> None:
        FILE_EVENTS.labels(event="closed").inc()
        OPEN_FILES.dec()
        self._log.info("file_closed", path=path, identity=identity, offset=offset, reason=reason)

    def file_rotated(self, path: str, identity: str, offset: int, how: str) -> None:
        FILE_EVENTS.labels(event="rotated").inc()
        self._log.info("file_rotated", path=path, identity=identity, offset=offset, how=how)

    def file_truncated(self, path: str, identity: str, offset: int, size: int) -> None:
        FILE_EVENTS.labels(event="truncated").inc()
        self._log.warning("file_truncated", path=path, identity=identity, offset=offset, size=size)

    def file_resumed(self, path: str, identity: str, offset: int) -> None:
        FILE_EVENTS.labels(event="resumed").inc()
        self._log.info("file_resumed", path=path, identity=identity, offset=offset)

    def file_deleted(self, path: str, identity: str, offset: int) -> None:
        FILE_EVENTS.labels(event="deleted").inc()
        self._log.info("file_deleted", path=path, identity=identity, offset=offset)

    def file_skipped(self, path: str, reason: str, error: BaseException | None = None) -> None:
        """A file matched by the globs that is never read as it is (compressed, not a file, a loop)."""
        FILES_SKIPPED.labels(reason=reason).inc()
        self._log.warning("file_skipped", path=path, error_code=reason,
                          error=repr(error) if error is not None else None)

    def file_excluded(self, path: str, why: str) -> None:
        FILE_EVENTS.labels(event="excluded").inc()
        self._log.info("file_excluded", path=path, reason=why)

    def file_included(self, path: str) -> None:
        FILE_EVENTS.labels(event="included").inc()
        self._log.info("file_included", path=path, reason="policy")

    def file_failed(self, path: str, error: BaseException, stage: str) -> None:
        FILE_EVENTS.labels(event="error").inc()
        suppressed = self._burst(f"error:{stage}", path)
        if suppressed is not None:
            self._log.warning(
                "file_failed", path=path, stage=stage, error=repr(error), suppressed=suppressed
            )

    def path_unparsed(self, path: str) -> None:
        FILE_EVENTS.labels(event="unparsed_path").inc()
        self._log.warning("path_unparsed", path=path)

    def records_unattributed(self, count: int) -> None:
        UNATTRIBUTED_RECORDS.inc(count)

    def batch_sent(self, records: int) -> None:
        BATCHES.inc()
        RECORDS.inc(records)

    def sink_refused(self, error: BaseException, attempt: int, delay: float) -> None:
        SINK_RETRIES.inc()
        if attempt == 1 or attempt % 50 == 0:
            self._log.warning("sink_refused", error=repr(error), attempt=attempt, delay=delay)

    def checkpoint_written(self, path: str, files: int) -> None:
        CHECKPOINT_WRITES.labels(result="ok").inc()
        self._log.debug("checkpoint_written", path=path, files=files)

    def checkpoint_failed(self, path: str, error: BaseException) -> None:
        CHECKPOINT_WRITES.labels(result="error").inc()
        self._log.error("checkpoint_failed", path=path, error=repr(error))

    def checkpoint_loaded(self, path: str, files: int, source: str) -> None:
        self._log.info("checkpoint_loaded", path=path, files=files, source=source)

    def checkpoint_invalid(self, path: str, error: str) -> None:
        CHECKPOINT_WRITES.labels(result="invalid").inc()
        self._log.error("checkpoint_invalid", path=path, error=error)

    def watch_failed(self, error: BaseException) -> None:
        FILE_EVENTS.labels(event="watch_error").inc()
        self._log.warning("watch_failed", error=repr(error))


class JournalEvents:
    """The journald input's events: one method per event, log line and metric together."""

    def __init__(self) -> None:
        self._log = get_logger("collector.journal")
        self._bursts: dict[str, tuple[float, int]] = {}

    def _burst(self, reason: str) -> int | None:
        now = time.monotonic()
        seen = self._bursts.get(reason)
        if seen is None or now - seen[0] >= LOG_BURST_SECONDS:
            self._bursts[reason] = (now, 0)
            return 0 if seen is None else seen[1]
        self._bursts[reason] = (seen[0], seen[1] + 1)
        return None

    def entries_read(self, entries: int, nbytes: int) -> None:
        JOURNAL_ENTRIES.inc(entries)
        JOURNAL_BYTES.inc(nbytes)

    def entry_rejected(self, reason: str, detail: str) -> None:
        JOURNAL_REJECTED.labels(reason=reason).inc()
        suppressed = self._burst(reason)
        if suppressed is not None:
            self._log.warning("journal_entry_rejected", error_code=reason, error=detail[:500],
                              suppressed=suppressed)

    def entry_flagged(self, reason: str, cursor: str) -> None:
        JOURNAL_FLAGGED.labels(reason=reason).inc()
        suppressed = self._burst(reason)
        if suppressed is not None:
            self._log.warning("journal_entry_flagged", error_code=reason, cursor=cursor,
                              suppressed=suppressed)

    def reader_started(self, pid: int, after_cursor: str | None) -> None:
        JOURNAL_UP.set(1)
        self._log.info("journal_reader_started", pid=pid, after_cursor=after_cursor)

    def reader_stopped(self, pid: int, returncode: int | None) -> None:
        JOURNAL_UP.set(0)
        self._log.info("journal_reader_stopped", pid=pid, returncode=returncode)

    def reader_failed(self, reason: str, error: str, delay: float) -> None:
        JOURNAL_UP.set(0)
        JOURNAL_RESTARTS.labels(reason=reason).inc()
        self._log.error("journal_reader_failed", error_code=reason, error=error, delay=delay)

    def cursor_gone(self, cursor: str) -> None:
        JOURNAL_CURSOR_GONE.inc()
        self._log.warning("journal_cursor_gone", cursor=cursor,
                          error="the entry at the cursor was vacuumed; reading resumes at the next one")

    def reader_stderr(self, pid: int, line: str) -> None:
        JOURNAL_STDERR.inc()
        self._log.warning("journal_reader_stderr", pid=pid, error=line[:1000])


EVENTS = CollectorEvents()
"""The process-wide event sink of the collector."""
JOURNAL_EVENTS = JournalEvents()
"""The process-wide event sink of the journald input."""
