"""Checkpoints: where each file's reading resumes, moved only by acknowledgements.

The store is the collector's :class:`podlog.protocols.AckListener`: the
shipper calls :meth:`CheckpointStore.acknowledged` once records are durable
downstream, so a persisted offset never runs ahead of what was delivered.
The file is versioned JSON written to a temporary file, fsynced and renamed
over the old one.  Each store writes a temporary file of its own: a write
still in flight from a process on its way out can never rename what another
store wrote (or half wrote).  Loading takes the newest complete file, a
temporary one included, because a crash between fsync and rename leaves the
newest state there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from collector.events import EVENTS
from podlog.files import write_atomically
from podlog.protocols import FileMark

__all__ = ["CHECKPOINT_VERSION", "FINISHED_MAX", "FINISHED_SECONDS", "CheckpointEntry", "CheckpointStore"]

FINISHED_SECONDS = 86400.0
"""How long a finished file is remembered once the list is over :data:`FINISHED_MAX`."""
FINISHED_MAX = 20000
"""Finished files remembered at most."""

CHECKPOINT_VERSION = 1
"""Version of the checkpoint file layout; other versions are refused, not guessed."""

_STORES = itertools.count(1)
"""Numbers each store's temporary file within a process."""


@dataclasses.dataclass(slots=True)
class CheckpointEntry:
    """Where one file's reading resumes, and how to recognise the file again."""

    identity: str
    """``"<dev>:<inode>:<fingerprint>"`` as first seen."""
    path: str
    """Real path the file was opened by."""
    generation: int
    """Truncation generation the offset belongs to."""
    offset: int
    """Acknowledged offset: everything before it is durable downstream."""
    dev: int
    ino: int
    head: str
    """Fingerprint of the current generation's first line."""
    size: int = 0
    """File size last seen; bounds what a file that vanished while down took with it."""
    spooled: int = 0
    """Offset the sink (spool) accepted; bytes before it survive even unacknowledged."""
    final_offset: int | None = None
    """Set when the file was closed after being read to its end."""
    updated: float = 0.0
    first_seen: float = 0.0
    """When podlog first opened the file; orders files rotated while it was down."""
    log_path: str = ""
    """The path the file was discovered by (``log.file.path`` of its records)."""
    meta: dict[str, Any] | None = None
    """What its paths said of its container (:class:`~collector.enrichment.PathMeta`),
    so a file found again under a rotated name keeps its stream key."""
    origin: str = ""
    """For the copy copytruncate left: the identity its records carry (the file it continues)."""
    origin_generation: int = 0
    """For such a copy: the generation its records carry."""
    streams: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per stream, where it resumes when past ``offset`` (:attr:`FileMark.streams`)."""
    past: int = 0
    """Bytes after ``max(offset, spooled)`` already emitted (:attr:`FileMark.past`)."""
    origin_read: int = 0
    """For such a copy: how far its origin generation had been read when it was truncated.  The
    origin's marks up to here (the same offsets) move this entry; the copy's own, what follows."""

    @property
    def kept_only(self) -> bool:
        """A copy kept only for what its origin had read (never read itself): a mark of a later
        generation of the origin acknowledges it whole."""
        return self.final_offset == self.origin_read


class CheckpointStore:
    """Acknowledged offsets by file identity, persisted atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "checkpoints.json"
        self.tmp_path = directory / f"checkpoints.json.{os.getpid()}-{next(_STORES)}.tmp"
        """This store's own temporary file (see the module docstring)."""
        self.entries: dict[str, CheckpointEntry] = {}
        self.existed = False
        """True when a checkpoint file existed at load: this is not the first start."""
        self.finished: dict[str, float] = {}
        """Head fingerprints of file generations read to their end and acknowledged, or
        truncated, with when: a file found at start with one of these heads is not read again."""
        self.written_at = 0.0
        """When the loaded checkpoint file was written: files changed after it were
        changed while podlog was down."""
        self.dirty = False
        self.write_on_ack = True
        """Write on every acknowledgement; the collector turns this off while it
        runs its periodic writer, and back on when it stops."""
        self._sequence = 0
        self._written = 0
        self._write_lock = threading.Lock()
        self._acks = 0
        """Acknowledgements that moved an offset so far."""
        self._acks_in: dict[int, int] = {}
        """Snapshot sequence -> acknowledgements it holds (until written)."""
        self._acks_written = 0
        """Acknowledgements the checkpoint file on disk holds."""
        self._waiters: list[asyncio.Future[None]] = []
        self._losses: list[tuple[int, str, str, int, str]] = []
        """Losses counted with the snapshot they belong to: reported once that is written."""

    # -- loading -----------------------------------------------------------------

    def load(self) -> None:
        """Read the newest complete checkpoint file; start empty if none.

        A complete temporary file newer than the main one (a crash between
        fsync and rename) takes its place; every other temporary file is
        removed, a torn one included.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = sorted(self.directory.glob("checkpoints.json*.tmp"))
        best: tuple[float, Path, _Loaded] | None = None
        for candidate in [self.path, *temporary]:
            try:
                raw = candidate.read_bytes()
            except FileNotFoundError:
                continue
            loaded = self._parse(candidate, raw)
            if loaded is not None and (best is None or loaded.written > best[0]):
                best = (loaded.written, candidate, loaded)
        if best is not None and best[1] != self.path:
            try:
                best[1].replace(self.path)
            except OSError as exc:
                EVENTS.checkpoint_failed(str(self.path), exc)
        for path in temporary:
            if best is None or path != best[1]:
                with contextlib.suppress(OSError):
                    path.unlink()
        if best is None:
            self.existed = False
            return
        _, candidate, loaded = best
        self.entries, self.finished = loaded.entries, loaded.finished
        self.existed = True
        try:
            self.written_at = self.path.stat().st_mtime
        except OSError:
            self.written_at = 0.0
        EVENTS.checkpoint_loaded(str(candidate), len(self.entries), "main" if candidate == self.path else "tmp")

    def _parse(self, path: Path, raw: bytes) -> _Loaded | None:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            EVENTS.checkpoint_invalid(str(path), f"not JSON: {exc}")
            return None
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
            version = doc.get("version") if isinstance(doc, dict) else None
            EVENTS.checkpoint_invalid(str(path), f"unknown checkpoint version {version!r}")
            return None
        entries: dict[str, CheckpointEntry] = {}
        names = {f.name for f in dataclasses.fields(CheckpointEntry)}
        for item in doc.get("files", []):
            try:
                entry = CheckpointEntry(**{k: v for k, v in item.items() if k in names})
            except TypeError as exc:
                EVENTS.checkpoint_invalid(str(path), f"bad entry: {exc}")
                continue
            entries[entry.identity] = entry
        finished = doc.get("finished")
        heads = {str(k): float(v) for k, v in finished.items()
                 if isinstance(v, int | float)} if isinstance(finished, dict) else {}
        written = doc.get("written")
        return _Loaded(entries, heads, float(written) if isinstance(written, int | float) else 0.0)

    # -- the tailer's side -----------------------------------------------------

    def find(self, dev: int, ino: int, head: str) -> CheckpointEntry | None:
        """The entry of the file at (dev, ino) whose current head is ``head``.

        An entry whose head was not known yet (truncated, then too short to
        fingerprint) matches any head at its inode.
        """
        unknown = None
        for entry in self.entries.values():
            if entry.ino == ino and entry.dev == dev and not entry.origin:
                if entry.head == head:
                    return entry
                if not entry.head:
                    unknown = entry
        return unknown

    def find_inode(self, dev: int, ino: int) -> list[CheckpointEntry]:
        """Entries recorded for (dev, ino), whatever their head."""
        return [e for e in self.entries.values() if e.ino == ino and e.dev == dev]

    def register(
        self, identity: str, path: str, *, dev: int, ino: int, head: str, generation: int,
        offset: int, size: int, log_path: str = "", meta: dict[str, Any] | None = None,
        origin: str = "", origin_generation: int = 0, streams: Mapping[str, int] | None = None,
        past: int = 0, origin_read: int = 0,
    ) -> CheckpointEntry:
        """Record a file as opened at ``offset`` (per stream: ``streams``, as :attr:`FileMark.streams`);
        an existing entry keeps its offset."""
        entry = self.entries.get(identity)
        if entry is None:
            now = time.time()
            entry = self.entries[identity] = CheckpointEntry(
                identity, path, generation, offset, dev, ino, head, size, offset, None,
                now, now, log_path or path, meta, origin, origin_generation, dict(streams or {}), past,
                origin_read,
            )
        else:
            entry.path, entry.head, entry.size = path, head, max(entry.size, size)
            entry.dev, entry.ino = dev, ino
            if meta is not None:
                entry.meta = meta
            if log_path:
                entry.log_path = log_path
            entry.final_offset = None
        self.dirty = True
        return entry

    def truncated(self, identity: str, generation: int, head: str | None, offset: int = 0) -> None:
        """The file was truncated in place: it restarts at ``offset`` (0) in ``generation``."""
        entry = self.entries.get(identity)
        if entry is not None and generation > entry.generation:
            entry.generation, entry.offset, entry.head = generation, offset, head or ""
            entry.size = entry.spooled = offset
            entry.final_offset = None  # the end read was the old generation's
            entry.streams = {}
            entry.past = 0
            self.dirty = True

    def observed(self, identity: str, size: int, head: str | None = None) -> None:
        """The file was seen at ``size`` bytes (for loss accounting after a restart), and,
        after a truncation, its new generation's head once that is known."""
        entry = self.entries.get(identity)
        if entry is None:
            return
        if size > entry.size:
            entry.size = size
            self.dirty = True  # a file deleted while podlog is down is counted lost up to here
        if head and not entry.head and not entry.origin:
            entry.head = head
            self.dirty = True

    def retire(self, identity: str, final_offset: int) -> None:
        """The file was read to its end and closed; drop it once acknowledged there."""
        entry = self.entries.get(identity)
        if entry is None:
            return
        entry.final_offset = final_offset
        if entry.offset >= final_offset:
            self._done(identity)
        self.dirty = True

    def _done(self, identity: str) -> None:
        """A file read to its end and acknowledged: remembered for a day, not read again."""
        entry = self.entries.pop(identity)
        self.finish_head(entry.head)

    def finish_head(self, head: str | None) -> None:
        """A file generation with this head fingerprint is done (read, or counted lost)."""
        if not head:
            return
        now = time.time()
        self.finished[head] = now
        if len(self.finished) > FINISHED_MAX:
            cutoff = now - FINISHED_SECONDS
            self.finished = {k: t for k, t in self.finished.items() if t >= cutoff}
            while len(self.finished) > FINISHED_MAX:
                self.finished.pop(next(iter(self.finished)))

    def is_known(self, head: str) -> bool:
        """True when a file generation with this head is being read, or is done: a file
        found with it is that generation (or a copy of it), never new content."""
        return head in self.finished or any(e.head == head for e in self.entries.values())

    def skip(self, identity: str, offset: int) -> None:
        """Bytes before ``offset`` are deliberately not collected: resume there."""
        entry = self.entries.get(identity)
        if entry is not None and offset > entry.offset:
            entry.offset = max(entry.offset, offset)
            entry.spooled = max(entry.spooled, offset)
            self.dirty = True

    def forget(self, identity: str) -> None:
        """Drop a file's entry (it is gone and its loss was counted)."""
        if self.entries.pop(identity, None) is not None:
            self.dirty = True

    def spooled(self, marks: Mapping[str, FileMark]) -> None:
        """The sink accepted records up to ``marks`` (durable there, not yet delivered)."""
        for identity, mark in marks.items():
            for _, copy in self._copies_owed(identity):
                if mark.generation > copy.origin_generation and copy.kept_only:
                    copy.spooled = max(copy.spooled, copy.origin_read)
                elif mark.generation == copy.origin_generation and copy.spooled < mark.offset <= copy.origin_read:
                    copy.spooled = mark.offset
                else:
                    continue
                self.dirty = True
            entry = self.entries.get(identity)
            if entry is None or mark.generation != entry.generation:
                continue
            if mark.offset > entry.spooled:
                entry.spooled, entry.past = mark.offset, mark.past
                self.dirty = True
            elif mark.offset == entry.spooled and mark.past > entry.past:
                entry.past = mark.past
                self.dirty = True

    def unread(self, entry: CheckpointEntry) -> int:
        """Bytes of a vanished file that neither the sink nor downstream ever held."""
        end = entry.size if entry.final_offset is None else max(entry.size, entry.final_offset)
        return max(0, end - max(entry.offset, entry.spooled) - entry.past)

    # -- the shipper's side ----------------------------------------------------

    def acknowledged(self, marks: Mapping[str, FileMark]) -> None:
        """Every record before ``marks`` is durable downstream: move the offsets."""
        now = time.time()
        moved = False
        for identity, mark in marks.items():
            entry = self.entries.get(identity)
            if entry is None:
                continue
            moved = self._acknowledged_in_copy(identity, mark, now) or moved
            position = (mark.generation, mark.offset)
            if position < (entry.generation, entry.offset):
                continue
            streams = dict(mark.streams)
            if position == (entry.generation, entry.offset):
                if streams != entry.streams or mark.past > entry.past:
                    # Held at an open fragment; the other stream went on.
                    entry.streams = streams
                    if mark.offset >= entry.spooled:
                        entry.past = max(entry.past, mark.past)
                    self.dirty = moved = True
                continue
            entry.generation, entry.offset, entry.updated = mark.generation, mark.offset, now
            entry.streams = streams
            if mark.offset >= entry.spooled:
                entry.past = mark.past
            if entry.final_offset is not None and entry.offset >= entry.final_offset:
                self._done(identity)
            self.dirty = True
            moved = True
        if moved:
            self._acks += 1
        if self.write_on_ack and self.dirty:
            self.write()

    def _copies_owed(self, identity: str) -> list[tuple[str, CheckpointEntry]]:
        """Entries of copies that continue a truncated generation of ``identity``, read (some of it)
        under ``identity`` before the truncation: what that reading emitted is owed by its marks."""
        return [(key, entry) for key, entry in self.entries.items()
                if entry.origin == identity and entry.origin_read > entry.offset]

    def _acknowledged_in_copy(self, identity: str, mark: FileMark, now: float) -> bool:
        """A mark of ``identity`` moves the entries of the copies continuing its earlier generations
        (same offsets) up to where that generation had been read.  A copy kept only for what was
        read (never read itself) is acknowledged whole by a mark of a later generation: acks are
        in order, and a batch keeps only the last mark of a file."""
        moved = False
        for key, entry in self._copies_owed(identity):
            if mark.generation > entry.origin_generation and entry.kept_only:
                entry.offset, entry.streams, entry.past = entry.origin_read, {}, 0
            elif mark.generation == entry.origin_generation and entry.offset < mark.offset <= entry.origin_read:
                entry.offset, entry.streams, entry.past = mark.offset, dict(mark.streams), mark.past
            else:
                continue
            entry.updated = now
            if entry.final_offset is not None and entry.offset >= entry.final_offset:
                self._done(key)
            self.dirty = moved = True
        return moved

    async def durable(self) -> None:
        """Return once every acknowledgement so far is in the checkpoint file on disk.

        The shipper releases spooled batches only then: whatever the file on
        disk does not hold yet is still in the spool after a SIGKILL, so the
        bytes of a file that vanishes meanwhile are not counted lost.  With
        ``write_on_ack`` (podlog stopping) every acknowledgement was written
        at once.
        """
        target = self._acks
        while self._acks_written < target and not self.write_on_ack:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def offset(self, identity: str) -> int | None:
        """The acknowledged offset of a file, or None when unknown."""
        entry = self.entries.get(identity)
        return None if entry is None else entry.offset

    # -- persistence -----------------------------------------------------------

    def snapshot(self) -> tuple[int, bytes] | None:
        """The checkpoint file's bytes now (on the event loop) with their sequence number,
        or None when nothing changed."""
        if not self.dirty:
            return None
        self._sequence += 1
        doc: dict[str, Any] = {
            "version": CHECKPOINT_VERSION,
            "written": time.time(),
            "files": [dataclasses.asdict(e) for e in self.entries.values()],
            "finished": self.finished,
        }
        self.dirty = False
        self._acks_in[self._sequence] = self._acks
        return self._sequence, orjson.dumps(doc)

    def lost(self, reason: str, path: str, nbytes: int, identity: str) -> None:
        """Bytes of a file are gone before they were read: counted and logged once the checkpoint
        that no longer owes them is on disk.  A crash before that write leaves the file's entry as
        it was, and the next start counts the loss (once, not twice)."""
        if nbytes <= 0:
            return
        self._losses.append((self._sequence + 1, reason, path, nbytes, identity))
        self.dirty = True

    def _report_losses(self, written: int) -> None:
        due = [loss for loss in self._losses if loss[0] <= written]
        if due:
            self._losses = [loss for loss in self._losses if loss[0] > written]
            for _, reason, path, nbytes, identity in due:
                EVENTS.bytes_lost(reason, path, nbytes, identity)

    def write(self) -> bool:
        """Persist every entry (tmp + fsync + rename); False after a logged failure."""
        self.dirty = True
        snapshot = self.snapshot()
        assert snapshot is not None
        written = self.write_bytes(*snapshot)
        self._wake()
        return written

    def write_bytes(self, sequence: int, data: bytes) -> bool:
        """Persist a :meth:`snapshot` (tmp + fsync + rename); safe off the event loop.

        Writes are serialised, and a snapshot older than the one on disk is
        not written over it.
        """
        with self._write_lock:
            if sequence <= self._written:
                return True
            acks = self._acks_in.pop(sequence, 0)
            for older in [s for s in self._acks_in if s < sequence]:
                del self._acks_in[older]
            if self._write_file(data):
                self._written = sequence
                self._acks_written = max(self._acks_written, acks)
                self._report_losses(sequence)
                return True
            return False

    def _write_file(self, data: bytes) -> bool:
        try:
            write_atomically(self.path, self.tmp_path, data)
        except OSError as exc:
            EVENTS.checkpoint_failed(str(self.path), exc)
            self.dirty = True  # try again at the next flush
            return False
        EVENTS.checkpoint_written(str(self.path), len(self.entries))
        return True

    def flush(self) -> None:
        """Write when something changed since the last write."""
        snapshot = self.snapshot()
        if snapshot is not None:
            self.write_bytes(*snapshot)
            self._wake()

    async def flush_async(self) -> None:
        """:meth:`flush` with the write and fsync in a thread (the snapshot on the loop)."""
        snapshot = self.snapshot()
        if snapshot is not None:
            try:
                await asyncio.to_thread(self.write_bytes, *snapshot)
            except asyncio.CancelledError:
                self.dirty = True  # the write may never have started: the next flush writes
                raise
            finally:
                self._wake()


class _Loaded(NamedTuple):
    """A checkpoint file's content, as parsed."""

    entries: dict[str, CheckpointEntry]
    finished: dict[str, float]
    written: float
    """The ``written`` time in the file: which of several complete files is newest."""

