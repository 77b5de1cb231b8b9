"""The collector service: wiring only, readable top to bottom.

::

    stat pass + inotify hints -> FileTracker (open / rotate / truncate / close)
      -> each round, each file in turn (skipped while enricher.held: pod not known yet),
         up to read_budget_bytes:
         Tailer.read: pread -> split -> decode -> join partials -> multiline -> records
      -> enricher.enrich(meta, records)
      -> bounded queue of Batch(records, marks)        (full queue: reading pauses)
      -> sink.append(batch)                             (SpoolFullError: back off, retry)
    journalctl (collector.journal, when journal_enabled) -> Batch(records, journal mark)
      -> the same queue
    shipper acks -> InputAcks: CheckpointStore.acknowledged(marks) -> checkpoints.json
                               JournalCursorStore.acknowledged(mark) -> journal.json

``stop()``: stop the journal input (its last batch queued), stop discovery,
finish the current round, close open multi-line events into a last batch,
hand every queued batch to the sink, close files, write checkpoints.  Pending
partial fragments and unterminated lines are not emitted: the marks stay
before them, so they are read whole after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from pathlib import Path

from collector.acks import InputAcks
from collector.checkpoint import CheckpointStore
from collector.config import CollectorConfig
from collector.discovery import Discovery, Found
from collector.enrichment import Enricher
from collector.events import EVENTS, QUEUED_BATCHES
from collector.hostfiles import HostFiles, zone
from collector.journal import JournalInput, JournalSettings
from collector.journal_cursor import JournalCursorStore
from collector.journal_fields import JournalRecords
from collector.paths import EMPTY_META
from collector.tailer import Tailer, TailerSettings
from collector.tracker import FileTracker
from collector.watch import Watcher
from podlog.config import CommonConfig
from podlog.errors import PodlogError
from podlog.logging import get_logger
from podlog.protocols import Batch, FileMark, RecordSink
from podlog.record import Record

__all__ = ["Collector", "tune_gc"]

log = get_logger("collector.pipeline")

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0


def tune_gc(gen0_threshold: int) -> None:
    """Fewer, cheaper collections: records are short-lived dicts without cycles.

    The objects alive now (modules, config, caches) are frozen out of every
    later collection, and generation 0 is collected only after more net
    allocations than the records in flight hold (two tracked dicts per record,
    a few batches of them), so draining a backlog rarely collects: at 100,000
    about 9% less CPU per line than at 10,000 on the bench backlog.  A
    threshold of 0 or less leaves the interpreter's settings alone.
    """
    if gen0_threshold <= 0:
        return
    gc.freeze()
    current, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0_threshold, current), gen1, gen2)


class Collector:
    """Tails container log files into a :class:`RecordSink`; a lifecycle Service."""

    name = "collector"

    def __init__(
        self, common: CommonConfig, config: CollectorConfig, *, sink: RecordSink,
        enricher: Enricher,
    ) -> None:
        if config.read_from not in ("head", "tail"):
            raise ValueError(f"collector.read_from must be head or tail, not {config.read_from!r}")
        self.common = common
        self.config = config
        self.sink = sink
        self.enricher = enricher
        self.checkpoints = CheckpointStore(Path(common.state_dir) / "checkpoints")
        """The AckListener the shipper moves; offsets persist only once acknowledged."""
        self.journal: JournalInput | None = None
        """The journald input (``journal_enabled``), or None."""
        journal_cursors = None
        if config.journal_enabled:
            journal_cursors = JournalCursorStore(Path(common.state_dir) / "checkpoints")
            self.journal = JournalInput(
                JournalSettings(
                    command=config.journalctl_command, directory=config.journal_directory,
                    matches=tuple(config.journal_matches), read_from=config.read_from,
                    max_entry_bytes=config.journal_max_entry_bytes,
                    batch_max_records=config.batch_max_records,
                    restart_max_seconds=config.journal_restart_max_seconds,
                ),
                builder=JournalRecords(cluster=common.cluster, node=common.resolved_node_name(),
                                       max_message_bytes=config.max_line_bytes),
                cursors=journal_cursors,
                put=self._queue_journal,
            )
        self.acks = InputAcks(self.checkpoints, journal_cursors)
        """The AckListener for the shipper: file marks to the checkpoints, the journal's to its cursor."""
        self.host_files: HostFiles | None = None
        include = list(config.include)
        if config.host_files_enabled:
            self.host_files = HostFiles(config.host_files, zone(config.host_files_timezone),
                                        config.host_files_multiline)
            include += [pattern for pattern in config.host_files if pattern not in include]
        self.discovery = Discovery(include, config.exclude, exclude_self=config.exclude_self)
        self.settings = TailerSettings(
            cluster=common.cluster,
            node=common.resolved_node_name(),
            chunk_bytes=config.read_chunk_bytes,
            max_line_bytes=config.max_line_bytes,
            multiline_flush_seconds=config.multiline_flush_seconds,
            multiline_max_lines=config.multiline_max_lines,
        )
        self.tracker = FileTracker(
            settings=self.settings,
            discovery=self.discovery,
            checkpoints=self.checkpoints,
            enricher=enricher,
            default_multiline=config.multiline,
            read_from=config.read_from,
            max_open_files=config.max_open_files,
            host_files=self.host_files,
        )
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(1, config.queue_batches))
        self._wake = asyncio.Event()
        self._stopping = False
        self._left_for_restart = False
        """Stopping, a batch the sink refused was left for the restart (see ``_send_loop``)."""
        self._started = False
        self._stopped = False
        self._watcher: Watcher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._journal_task: asyncio.Task[None] | None = None
        self._records: list[Record] = []
        self._marks: dict[str, FileMark] = {}
        self._next_scan = 0.0
        self._held: set[str] = set()
        """Identities of files the enricher held in their last round (see ``_is_held``)."""
        self.spooled: dict[str, FileMark] = {}
        """The last mark per file that the sink accepted."""

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Load checkpoints, open the files that exist now, start inotify hints."""
        if self._started:
            return
        self._started = True
        # Nothing is read before the enricher has its first view of the cluster (or gave up
        # waiting): a backlog read before would leave with path metadata and no exclusions.
        await self.enricher.wait_ready()
        await asyncio.to_thread(self.checkpoints.load)
        if self.journal is not None:
            await self.journal.start()
        self.checkpoints.write_on_ack = False
        held = getattr(self.sink, "held_marks", None)
        if held is not None:
            # Records the sink still holds from before a crash were read: a file gone
            # meanwhile lost only what lies beyond them.
            self.checkpoints.spooled(held())
        now = time.monotonic()
        found = await asyncio.to_thread(self.discovery.scan)
        # Files that rotated while podlog was down first: their successors wait for them.
        await asyncio.to_thread(self.tracker.recover, found)
        if self.checkpoints.existed:
            await asyncio.to_thread(self.tracker.recover_unseen, found, self.checkpoints.written_at)
        self.tracker.order_recovered()
        self._collect(self.tracker.reconcile(found, now, initial=True), None)
        await asyncio.to_thread(self.checkpoints.flush)
        self._next_scan = now + self.config.scan_interval_seconds
        tune_gc(self.config.gc_gen0_threshold)
        if self.config.use_inotify:
            watcher = Watcher(asyncio.get_running_loop(), self._wake)
            watcher.start()
            if watcher.available:
                self._watcher = watcher
                for directory, recursive in self.discovery.watch_roots():
                    watcher.watch(directory, recursive=recursive)
                self._sync_watches()
        log.info("collector_started", files=len(self.tracker.tailers),
                 first_start=not self.checkpoints.existed, inotify=self._watcher is not None)

    async def run(self) -> None:
        """Read until stopped; raises when the sink fails with a non-retriable error."""
        if not self._started:
            await self.start()
        reader = asyncio.create_task(self._read_loop(), name="collector-read")
        sender = asyncio.create_task(self._send_loop(), name="collector-send")
        writer = asyncio.create_task(self._checkpoint_loop(), name="collector-checkpoints")
        self._tasks = [reader, sender, writer]
        watched = [reader, sender]
        if self.journal is not None:
            self._journal_task = asyncio.create_task(self.journal.run(), name="collector-journal")
            watched.append(self._journal_task)
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await asyncio.gather(*watched)
        finally:
            if self._journal_task is not None and not self._journal_task.done():
                self._journal_task.cancel()
                await asyncio.gather(self._journal_task, return_exceptions=True)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if not reader.done() or not sender.done():
                reader.cancel()
                sender.cancel()
                await asyncio.gather(reader, sender, return_exceptions=True)

    async def stop(self) -> None:
        """Stop discovery, drain, flush open events into a last batch, write checkpoints."""
        if self._stopped:
            return
        if self.journal is not None:
            # First: its last batch goes into the queue before the reader closes it.
            await self.journal.stop()
            if self._journal_task is not None:
                await asyncio.gather(self._journal_task, return_exceptions=True)
        self._stopping = True
        self._wake.set()
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
            self._watcher = None
        if self._tasks:
            reader, sender, _ = self._tasks
            await asyncio.gather(reader, sender, return_exceptions=True)
        self._stopped = True
        self._observe_sizes()
        self.tracker.close_all()
        self.checkpoints.write_on_ack = True
        self.checkpoints.write()  # last, whatever a cancelled periodic write left undone
        if self.journal is not None:
            self.journal.cursors.write_on_ack = True
            self.journal.cursors.flush()
        log.info("collector_stopped")

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- reading -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        config = self.config
        budget = config.read_budget_bytes
        batch_max = config.batch_max_records
        tracker = self.tracker
        while not self._stopping:
            now = time.monotonic()
            watcher = self._watcher
            if now >= self._next_scan or (watcher is not None and watcher.scan_requested):
                if watcher is not None:
                    watcher.scan_requested = False
                await self._scan(now)
            progressed = False
            for tailer in tracker.round():
                if len(self._records) >= batch_max and not await self._emit(
                    wait=self._until_scan(time.monotonic())
                ):
                    # The sink is behind and the queue stayed full until the next stat
                    # pass: reading pauses (the log files are the buffer), but the pass
                    # goes on, so a file that appears meanwhile is opened and sized, and
                    # one rotated away unread is counted.
                    break
                if self._is_held(tailer, now):
                    # Its pod is not known yet: the file keeps the lines (no read, no mark
                    # moved, not closed), the other files go on.
                    continue
                before = tailer.read_offset
                records = self._read(tailer, budget)
                if tailer.read_offset != before:
                    progressed = True
                if records:
                    self._collect(records, tailer)
                elif tailer.mark().offset != tailer.last_mark:
                    self._note_mark(tailer)
                if tailer.may_close(now, config.rotate_wait_seconds):
                    records = tailer.finish()
                    # A handed-over fragment ships with the successor: this file's end mark
                    # goes with it (carried), never before it.
                    self._collect(records, tailer, note_mark=not tailer.handed_over())
                    if tailer.successor is not None:
                        self._note_carried(tailer.successor)
                    tracker.close(tailer, "drained" if tailer.file.drain else "rotated")
                    self._sync_watches()
            for tailer in list(tracker.tailers.values()):
                records = tailer.flush_due(now)
                if records:
                    self._collect(records, tailer)
            if not await self._emit(wait=self._until_scan(time.monotonic())):
                continue  # still no room at the next stat pass: scan, then offer again
            if not progressed:
                await self._idle(now)
            else:
                await asyncio.sleep(0)
        # Stopping: drain files that rotated away or were deleted (a deleted file lives
        # only in our descriptor), then close open multi-line events into a last batch.
        await self._drain_rotated(budget, batch_max)
        for tailer in list(tracker.tailers.values()):
            self._collect(tailer.flush_events(), tailer)
        await self._emit()
        await self._queue.put(None)

    def _is_held(self, tailer: Tailer, now: float) -> bool:
        """True when ``tailer`` is not to be read this round: the enricher holds it, or its
        hold just ended and the stat pass that applies its pod's policy (exclusion, multiline)
        comes first, at the start of the next round."""
        identity = tailer.identity
        if self.enricher.held(self.tracker.meta_of(tailer), now):
            self._held.add(identity)
            return True
        if identity in self._held:
            self._held.discard(identity)
            self._next_scan = 0.0
            return True
        return False

    def _read(self, tailer: Tailer, budget: int) -> list[Record]:
        generation, head = tailer.generation, tailer.file.head
        records = tailer.read(budget)
        if tailer.generation != generation:  # truncated in place: the offset restarts
            self.checkpoints.truncated(tailer.identity, tailer.generation, tailer.file.head,
                                       tailer.read_offset)
        if tailer.generation != generation or (head is None and tailer.file.head is not None):
            # A new generation, or its first line now whole: written at once, not at the next
            # interval, so that after a SIGKILL the copy a copytruncate leaves is known by its
            # head (read again under this identity, the same event ids) and not taken for a
            # stranger.  Once per truncation.
            self.checkpoints.observed(tailer.identity, tailer.file.size_seen, tailer.file.head)
            self.checkpoints.write()
        return records

    async def _drain_rotated(self, budget: int, batch_max: int) -> None:
        now = time.monotonic()
        for tailer in self.tracker.tailers.values():
            if tailer.file.is_unlinked():
                tailer.file.deleted(now)
        gone = [t for t in self.tracker.tailers.values() if t.file.draining]
        pending = gone  # each is read at least once more, whatever it did before
        while pending:
            before = [(t.read_offset, t.generation) for t in pending]
            for tailer in pending:
                self._collect(self._read(tailer, budget), tailer)
                if len(self._records) >= batch_max:
                    await self._emit()
            await self._emit()
            moved = before != [(t.read_offset, t.generation) for t in pending]
            pending = [t for t in gone if not t.file.at_eof]
            if not moved and pending:
                return  # every one waits on something that will not move: give up

    async def _scan(self, now: float) -> None:
        try:
            found = await asyncio.to_thread(self.discovery.scan)
        except OSError as exc:  # the include directory itself is unreadable
            EVENTS.file_failed(",".join(self.config.include), exc, "scan")
            found = {}
        before = set(self.tracker.tailers)
        self.tracker.readmit()
        for records, tailer in self._reconcile(found, now):
            self._collect(records, tailer)
        for records, tailer in self.tracker.apply_policies():
            self._collect(records, tailer)
        for tailer in self.tracker.tailers.values():
            if tailer.file.draining and tailer.file.is_unlinked():
                tailer.file.deleted(now)
        for tailer in self.tracker.newly_excluded():
            # podlog.io/exclude set on a running pod: close open multi-line events
            # and stop reading; pending fragments are left, as the file is.
            self._collect(tailer.flush_events(), tailer)
            self.tracker.close(tailer, "excluded")
        if self._held:
            self._held.intersection_update(self.tracker.tailers)
        if set(self.tracker.tailers) != before:
            # Persist new files at once: one rotated away while podlog is down is then
            # still found (by inode) and read, instead of being unknown.
            await self.checkpoints.flush_async()
            self._sync_watches()
        self._next_scan = now + self.config.scan_interval_seconds

    def _reconcile(self, found: dict[str, Found], now: float) -> list[tuple[list[Record], Tailer]]:
        # Truncation restarts emit records of the old generation: collect them per
        # tailer, each with the mark it had when they were made.
        out: list[tuple[list[Record], Tailer]] = []
        records = self.tracker.reconcile(found, now)
        if records:
            by_identity: dict[str, list[Record]] = {}
            for record in records:
                by_identity.setdefault(record["log"]["file"]["identity"], []).append(record)
            for identity, items in by_identity.items():
                tailer = self.tracker.tailers.get(identity)
                if tailer is not None:
                    out.append((items, tailer))
        return out

    def _until_scan(self, now: float) -> float:
        """Seconds from ``now`` until the next stat pass is due (0 when it is)."""
        return max(0.0, self._next_scan - now)

    async def _idle(self, now: float) -> None:
        timeout = min(self.config.poll_interval_seconds, self._until_scan(now))
        if self._wake.is_set():
            self._wake.clear()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
                if self.tracker.unopened:
                    # A write may have completed the first line of a file not open yet.
                    self._next_scan = 0.0
        self._wake.clear()

    def _sync_watches(self) -> None:
        watcher = self._watcher
        if watcher is None:
            return
        wanted = set(self.tracker.directories())
        roots = {d for d, _ in self.discovery.watch_roots()}
        for directory in wanted - watcher.watched():
            watcher.watch(directory)
        for directory in watcher.watched() - wanted - roots:
            watcher.unwatch(directory)

    # -- batching ----------------------------------------------------------------

    def _collect(self, records: list[Record], tailer: Tailer | None, *, note_mark: bool = True) -> None:
        if tailer is None:
            return
        if records:
            meta = self.tracker.meta_of(tailer)
            self.enricher.enrich(meta, records)
            tailer.adopt(records[-1])  # its next records carry the enriched maps already
            if meta is EMPTY_META and tailer.source is None:
                EVENTS.records_unattributed(len(records))
            self._records.extend(records)
        if note_mark:
            self._note_mark(tailer)

    def _note_mark(self, tailer: Tailer) -> None:
        mark = tailer.mark()
        tailer.last_mark = mark.offset
        self._marks[mark.identity] = mark
        if tailer.carried_marks:
            self._note_carried(tailer)

    def _note_carried(self, tailer: Tailer) -> None:
        """Marks of earlier files whose handed-over fragment this file has now emitted."""
        self._marks.update(tailer.take_carried_marks())

    async def _emit(self, wait: float | None = None) -> bool:
        """Queue the pending records and marks as one batch.

        Waits for room in the queue for at most ``wait`` seconds (None: as long
        as it takes); False if there was none, and everything stays pending.
        """
        if not self._records and not self._marks:
            return True
        batch = Batch(records=self._records, marks=self._marks)
        if wait is None:
            await self._queue.put(batch)
        elif self._queue.full():
            try:
                async with asyncio.timeout(wait):
                    await self._queue.put(batch)
            except TimeoutError:
                return False
        else:
            self._queue.put_nowait(batch)
        self._records = []
        self._marks = {}
        QUEUED_BATCHES.set(self._queue.qsize())
        return True

    async def _queue_journal(self, batch: Batch) -> None:
        """The journal input's batches join the files' in the queue (full: it waits)."""
        await self._queue.put(batch)
        QUEUED_BATCHES.set(self._queue.qsize())

    # -- the sink ----------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            batch = await self._queue.get()
            QUEUED_BATCHES.set(self._queue.qsize())
            if batch is None:
                return
            if self._left_for_restart:
                # An earlier batch was: so is every later one, so that no file's spooled
                # mark passes lines that were not spooled.
                log.warning("batch_left_for_restart", records=len(batch.records), error="an earlier batch was")
                continue
            if not await self._append(batch):
                self._left_for_restart = True
                continue
            for identity, mark in batch.marks.items():
                self.spooled[identity] = mark
            self.checkpoints.spooled(batch.marks)
            EVENTS.batch_sent(len(batch.records))

    async def _append(self, batch: Batch) -> bool:
        """Hand ``batch`` to the sink, retrying while it refuses; False if given up.

        Stopping, a refused batch is given up at once (a full spool will not
        drain while the shipper stops too): its marks never reach the
        checkpoints, so its lines are read again after the restart.
        """
        attempt = 0
        while True:
            try:
                await self.sink.append(batch)
            except PodlogError as exc:
                if not exc.retriable:
                    raise
                if self._stopping:
                    log.warning("batch_left_for_restart", records=len(batch.records), error=str(exc))
                    return False
                attempt += 1
                delay = min(_BACKOFF_FIRST * 2 ** min(attempt, 10), _BACKOFF_MAX)
                EVENTS.sink_refused(exc, attempt, delay)
                await asyncio.sleep(delay)  # back-off before retrying the same batch
            else:
                return True

    # -- checkpoints -----------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        interval = self.config.checkpoint_interval_seconds
        while True:
            await asyncio.sleep(interval)
            self._observe_sizes()
            await self.checkpoints.flush_async()
            if self.journal is not None:
                await self.journal.flush_cursor()

    def _observe_sizes(self) -> None:
        """Persist how far each file is known to reach: a file gone while podlog is down
        is counted lost up to there."""
        for tailer in self.tracker.tailers.values():
            self.checkpoints.observed(tailer.identity, tailer.file.size_seen, tailer.file.head)
