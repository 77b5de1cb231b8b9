"""The set of open files: what each discovered path names now, and what rotated away.

:meth:`FileTracker.reconcile` compares a stat pass with the open files and
drives each one's :class:`~collector.filestate.FileState`:

* a new path -> open it, resuming at its checkpoint when its identity is known;
  it waits for the older files of its container (rotated, or of an earlier
  restart) to be read to their end first, so a container's lines stay in order;
* the same path naming another inode (kubelet rename, Docker ``-json.log`` ->
  ``.1``, a re-pointed symlink), or a path gone -> the old file is *rotated*:
  its descriptor still reads it to its end;
* a size below the read offset, or another head -> truncated in place
  (copytruncate): the copy it left is found by its head and read to its end
  under the old identity, then the file restarts in its next generation.

At startup, :meth:`FileTracker.recover` finds every checkpointed file that no
included path names any more: under a rotated name (same inode and head), or
compressed (a ``.gz`` whose decompressed head matches), and reads it from its
checkpoint before its successor.  Only a file found nowhere is lost, counted.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import os
import time
from collections.abc import Iterator

from collector.checkpoint import CheckpointEntry, CheckpointStore
from collector.discovery import Discovery, Found
from collector.enrichment import Enricher, FilePolicy, PathMeta
from collector.events import EVENTS
from collector.filestate import FileState, State
from collector.fingerprint import (
    HEAD_BYTES,
    compression_of,
    fingerprint_head,
    gzip_head_fingerprint,
    make_identity,
)
from collector.hostfiles import HostFiles
from collector.paths import (
    EMPTY_META,
    generation_order,
    kubernetes_fields,
    parse_path,
    pods_root,
    resolve_meta,
    stream_key,
)
from collector.reader import FdSource, GzipSource, Source
from collector.tailer import Tailer, TailerSettings
from podlog.record import Record

__all__ = ["FileTracker"]

UNSEEN_PASSES = 3
"""Listings of the container directories at start while files vanish under them (renamed, compressed)."""

UNSEEN_MARGIN_SECONDS = 300.0
"""At start, files changed this long before the last checkpoint write may still be unknown
to it (opened after its snapshot): they are read unless known finished."""

Found_ = tuple[str, Source, int, int, str]
"""A file generation found again: (path, open source, dev, inode, head fingerprint)."""


class FileTracker:
    """Open files by identity and by discovered path."""

    def __init__(
        self, *, settings: TailerSettings, discovery: Discovery, checkpoints: CheckpointStore,
        enricher: Enricher, default_multiline: str, read_from: str, max_open_files: int,
        host_files: HostFiles | None = None,
    ) -> None:
        self.settings = settings
        self.host_files = host_files
        """Which files are node files (``log.source: file``), or None when none are read."""
        self.discovery = discovery
        self.checkpoints = checkpoints
        self.enricher = enricher
        self.default_multiline = default_multiline
        self.read_from = read_from
        self.max_open_files = max_open_files
        self.tailers: dict[str, Tailer] = {}
        """Every open file by identity, rotated ones and drains included."""
        self.by_path: dict[str, Tailer] = {}
        """The file each discovered path names now."""
        self.meta: dict[str, PathMeta] = {}
        """Path metadata by identity."""
        self._excluded: dict[str, tuple[int, int]] = {}
        self._excluded_by_policy: set[str] = set()
        self._from_end: set[str] = set()
        """Paths no longer excluded: opened at their end, what was written meanwhile is not collected."""
        self._waiting: set[str] = set()
        self.unopened: set[str] = set()
        """Included files not open yet (no complete first line): a write there means rescan."""
        self._recovered: list[Tailer] | None = None
        """At start, between :meth:`recover` and :meth:`order_recovered`: the drains found."""
        self._cursor = 0

    # -- iteration ---------------------------------------------------------------

    def round(self) -> list[Tailer]:
        """Open tailers in round-robin order: each round starts one file later."""
        tailers = list(self.tailers.values())
        if not tailers:
            return tailers
        self._cursor = (self._cursor + 1) % len(tailers)
        return tailers[self._cursor :] + tailers[: self._cursor]

    def directories(self) -> Iterator[str]:
        """Real parent directories of open files (inotify watches them)."""
        for tailer in self.tailers.values():
            yield os.path.dirname(tailer.file.real_path)  # noqa: PTH120 - str paths throughout

    # -- reconciliation ---------------------------------------------------------

    def reconcile(self, found: dict[str, Found], now: float, *, initial: bool = False) -> list[Record]:
        """Bring the open set in line with a stat pass; returns records it completed."""
        out: list[Record] = []
        new: list[tuple[str, Found]] = []
        for path, item in found.items():
            current = self.by_path.get(path)
            if current is not None and (current.file.dev, current.file.ino) == (item.dev, item.ino):
                file = current.file
                if file.state is State.ACTIVE and item.size < max(file.read_offset, file.size_seen):
                    # The stat pass ran in a thread while reading went on: confirm on the descriptor.
                    out.extend(current.truncated_now())
                elif item.size > file.size_seen:
                    file.size_seen = item.size
                self.checkpoints.observed(file.identity, item.size)
                continue
            if current is not None:
                self._rotated(current, path, now, "replaced")
            new.append((path, item))
        for path in [p for p in self.by_path if p not in found]:
            self._rotated(self.by_path[path], path, now, "removed")
        # Older files of a container first: restart 0 before restart 1.
        new.sort(key=lambda pi: _restart_order(pi[0], pi[1].real_path))
        for path, item in new:
            self._open(path, item, initial=initial)
        for path in [p for p in self._excluded if p not in found]:
            del self._excluded[path]
            self._excluded_by_policy.discard(path)
        self._from_end.intersection_update(found)
        self.unopened.intersection_update(found)
        return out

    def _rotated(self, tailer: Tailer, path: str, now: float, how: str) -> None:
        del self.by_path[path]
        if tailer not in self.by_path.values():
            tailer.file.rotate(now, how)

    def _newest_of(self, key: str, exclude: Tailer | None = None) -> Tailer | None:
        """The most recently opened file of a container stream that is not done."""
        newest = None
        for tailer in self.tailers.values():
            if tailer is not exclude and tailer.file.key == key and not tailer.closed:
                newest = tailer
        return newest

    def _link(self, tailer: Tailer) -> None:
        """Order ``tailer`` after the newest open file of its container."""
        older = self._newest_of(tailer.file.key, exclude=tailer)
        if older is None:
            return
        tailer.file.wait_for(older.file)
        if _same_container(older.file.meta, tailer.file.meta):
            older.successor = tailer  # a rotation: an open fragment continues here

    def _open(self, path: str, item: Found, *, initial: bool) -> None:
        for tailer in self.tailers.values():
            if (tailer.file.dev, tailer.file.ino) != (item.dev, item.ino) or tailer.closed:
                continue
            if tailer.file.drain:
                # Found at start as a generation of its own (renamed to this name, or new here after
                # the scan): never a second reader; it is opened here once that drain is done.
                return
            # The same file under a second matching name, or back under an included
            # name after it was gone from one: keep reading it, never open it twice.
            tailer.file.resume(path)
            self.by_path[path] = tailer
            return
        if self._excluded.get(path) == (item.dev, item.ino):
            return
        try:
            meta = resolve_meta(path) or parse_path(item.real_path) or EMPTY_META
        except OSError as exc:
            self._skip(path, item, "symlink_loop", exc)
            return
        if self.discovery.is_self(meta):
            self._exclude(path, item, "self")
            return
        policy = self.enricher.policy(meta)
        if policy.exclude:
            self._exclude(path, item, "policy")
            return
        if len(self.tailers) >= self.max_open_files:
            if path not in self._waiting:
                self._waiting.add(path)
                EVENTS.file_failed(path, OSError("max_open_files reached"), "open")
            return
        self._waiting.discard(path)
        try:
            fd = os.open(item.real_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            self._gone_before_open(item)
            return
        except OSError as exc:
            EVENTS.file_failed(path, exc, "open")
            return
        try:
            st = os.fstat(fd)
            head_bytes = os.pread(fd, HEAD_BYTES, 0)
        except OSError as exc:
            os.close(fd)
            EVENTS.file_failed(path, exc, "open")
            return
        if (st.st_dev, st.st_ino) != (item.dev, item.ino):
            os.close(fd)  # replaced meanwhile: the new file on the next pass
            self._gone_before_open(item)
            return
        kind = compression_of(head_bytes)
        if kind is not None:
            os.close(fd)
            self._skip(path, item, "compressed" if kind != "binary" else "binary", None)
            return
        head = fingerprint_head(head_bytes)
        if head is None:
            os.close(fd)  # no complete first line yet: next pass
            self.unopened.add(path)
            known = self.checkpoints.find(st.st_dev, st.st_ino, "")  # only an entry of unknown head
            if known is not None:
                # A generation podlog knows (truncated, its new head not whole yet): its size is
                # seen meanwhile, so that bytes lost with it are counted.
                self.checkpoints.observed(known.identity, st.st_size)
            return
        self.unopened.discard(path)
        entry = self.checkpoints.find(st.st_dev, st.st_ino, head)
        first_line_now = entry is not None and not entry.head
        tailer = self._resume(path, item.real_path, FdSource(fd), st.st_dev, st.st_ino, st.st_size, head,
                              meta, entry, initial=initial)
        if path in self._from_end:
            self._from_end.discard(path)
            if tailer.read_offset < st.st_size:
                self.checkpoints.skip(tailer.identity, tailer.skip_to(st.st_size))
        if meta is EMPTY_META:
            EVENTS.path_unparsed(path)
        older = self._newest_of(tailer.file.key)
        if older is not None and not initial and _same_container(older.file.meta, meta):
            self._open_between(older, tailer)
        self._adopt(tailer, meta, policy)
        self.by_path[path] = tailer
        if first_line_now:
            self._copied_while_starting(tailer, older, head)

    def _copied_while_starting(self, tailer: Tailer, older: Tailer | None, head: str) -> None:
        """A generation known only as "after a truncation" (found truncated at start) has its first
        line now.  The file may have been copied and truncated again between that look and this
        one: a generation that only its copy holds is read first, after the container's older files."""
        written = self.checkpoints.written_at
        if not written:
            return
        since_ns = int((written - UNSEEN_MARGIN_SECONDS) * 1e9)
        unseen = self._copied_unseen(tailer, since_ns, older, {head})
        if unseen is not None:
            tailer.file.wait_for_copy(unseen.file)

    def _gone_before_open(self, item: Found) -> None:
        """The file a stat pass found was renamed (and compressed) before it could be opened.

        Had podlog a checkpoint for it, what it still owed is read from
        wherever it went, before its container's next file: no later pass
        names it again, and its head keeps other passes from taking it for a
        stranger.
        """
        for entry in list(self.checkpoints.entries.values()):
            if ((entry.dev, entry.ino) == (item.dev, item.ino) and entry.final_offset is None
                    and entry.identity not in self.tailers):
                self._recover_entry(entry)

    def _open_between(self, older: Tailer, newer: Tailer) -> None:
        """Generations written between ``older`` and ``newer`` that no stat pass saw.

        A busy container can fill a whole file between two passes: it is
        renamed (and compressed) before an included name ever led to it.  Its
        rotated siblings changed since ``older`` was first opened, whose head
        no file podlog knows has, are read whole, in order, before ``newer``.
        """
        entry = self.checkpoints.entries.get(older.identity)
        since = entry.first_seen if entry is not None and entry.first_seen else time.time()
        directory, base = os.path.split(newer.file.real_path)
        names = [n for n in _listdir(directory) if n.startswith(base + ".") and not n.endswith(".tmp")]
        found: list[tuple[str, os.stat_result]] = []
        after: tuple[int, int, str] | None = None
        for name in sorted(names, key=generation_order):
            try:
                st = os.stat(os.path.join(directory, name))  # noqa: PTH116, PTH118 - str paths throughout
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (older.file.dev, older.file.ino):
                after = generation_order(name)  # ``older`` under its rotated name
            found.append((name, st))
        heads: set[str] | None = None
        for name, st in found:
            if after is not None and generation_order(name) <= after:
                continue  # rotated before ``older``, not between it and ``newer``
            path = os.path.join(directory, name)  # noqa: PTH118
            if not _is_regular(st.st_mode) or st.st_mtime < since - 1 or self._is_tracked(st.st_dev, st.st_ino):
                continue
            if heads is None:
                heads = self._owned_heads()
                heads.add(newer.file.head or "")
            self._open_unseen(path, newer.path, st, heads)

    def _adopt(self, tailer: Tailer, meta: PathMeta, policy: FilePolicy | None = None) -> None:
        """Make ``tailer`` one of the open files: ordered after its container's older ones."""
        if policy is None:
            policy = self.enricher.policy(meta)
        self._apply_policy(tailer, policy)
        tailer.on_truncated = self._truncated
        tailer.on_first_line = self._first_line
        tailer.file.on_lost = self.checkpoints.lost
        self._link(tailer)
        self.tailers[tailer.identity] = tailer
        self.meta[tailer.identity] = meta

    def _exclude(self, path: str, item: Found, why: str) -> None:
        self._excluded[path] = (item.dev, item.ino)
        if why == "policy":
            self._excluded_by_policy.add(path)
        EVENTS.file_excluded(path, why)

    def _skip(self, path: str, item: Found, reason: str, error: OSError | None) -> None:
        """Never read this file as it is now: counted and logged once per file."""
        self._excluded[path] = (item.dev, item.ino)
        EVENTS.file_skipped(path, reason, error)

    # -- podlog.io/exclude changing while files are open -------------------------

    def readmit(self) -> None:
        """Forget exclusions the pod's metadata no longer asks for (before a reconcile).

        The next reconcile opens such a file at its end: what the pod wrote
        while it was excluded is not collected.
        """
        for path in list(self._excluded_by_policy):
            try:
                meta = resolve_meta(path) or EMPTY_META
            except OSError:
                meta = EMPTY_META
            if not self.enricher.policy(meta).exclude:
                self._excluded_by_policy.discard(path)
                self._excluded.pop(path, None)
                self._from_end.add(path)
                EVENTS.file_included(path)

    def newly_excluded(self) -> list[Tailer]:
        """Open files whose pod asks for exclusion now; the caller closes them.

        The file is excluded from here on (as if excluded when first seen);
        rotated files still finish, they hold lines written before.
        """
        out: list[Tailer] = []
        for path, tailer in list(self.by_path.items()):
            if tailer.file.draining or not self.enricher.policy(self.meta_of(tailer)).exclude:
                continue
            self._excluded[path] = (tailer.file.dev, tailer.file.ino)
            self._excluded_by_policy.add(path)
            EVENTS.file_excluded(path, "policy")
            out.append(tailer)
        return out

    def _resume(
        self, path: str, real_path: str, source: Source, dev: int, ino: int, size: int, head: str,
        meta: PathMeta, entry: CheckpointEntry | None, *, initial: bool,
    ) -> Tailer:
        """Open the file as a tailer: from ``entry`` (its checkpoint, found by inode and head),
        or new."""
        generation = 0
        streams: dict[str, int] = {}
        past = 0
        if entry is not None:
            identity, generation, offset = entry.identity, entry.generation, entry.offset
            if offset > size:
                # Truncated while podlog was down; the copy it left (if any) is read first.
                copy = self._find_copy(entry.head, real_path, (dev, ino), offset, entry.path)
                if copy is None:
                    self.checkpoints.lost("truncated_before_read", path, self.checkpoints.unread(entry), identity)
                else:
                    self._start_drain(copy, entry, meta, origin=identity, origin_generation=generation)
                self.checkpoints.finish_head(entry.head)
                generation, offset = generation + 1, 0
                self.checkpoints.truncated(identity, generation, head)
            else:
                streams, past = entry.streams, entry.past
                EVENTS.file_resumed(path, identity, offset)
        else:
            for stale in self.checkpoints.find_inode(dev, ino):
                # A retired entry was read to its end here and waits for its acks only:
                # its inode was freed (the file compressed or deleted) and handed on.
                if stale.identity not in self.tailers and not stale.origin and stale.final_offset is None:
                    self._recover_entry(stale, reused=(dev, ino))
            identity = make_identity(dev, ino, head)
            if identity in self.checkpoints.entries:
                generation = self.checkpoints.entries[identity].generation + 1
            first_start = initial and not self.checkpoints.existed
            offset = size if first_start and self.read_from == "tail" else 0
        self.checkpoints.register(identity, real_path, dev=dev, ino=ino, head=head,
                                  generation=generation, offset=offset, size=size, log_path=path,
                                  meta=dataclasses.asdict(meta))
        file = FileState(path=path, real_path=real_path, source=source, dev=dev, ino=ino,
                         identity=identity, head=head, generation=generation, offset=offset, size=size,
                         meta=meta, key=stream_key(meta))
        tailer = Tailer(settings=self.settings, file=file, kubernetes=kubernetes_fields(meta, self.settings.node))
        if self.host_files is not None:
            self.host_files.adopt(tailer)
        tailer.last_mark = offset
        tailer.resume_streams(streams, past)
        EVENTS.file_opened(path, identity, offset, tailer.decoder.format or "auto")
        return tailer

    # -- copytruncate ------------------------------------------------------------

    def _truncated(self, tailer: Tailer, size: int, head: str | None) -> list[Record]:
        """A file was truncated in place: read what it still owed from its copy, if one exists."""
        file = tailer.file
        held = tailer.mark()
        mark = held.offset
        ended_head, seen_whole = file.head, file.eof_mtime
        self.checkpoints.finish_head(file.head)
        copy = None
        if file.head is not None:
            found = self._find_copy(file.head, file.real_path, (file.dev, file.ino), mark, file.real_path)
            if found is not None:
                # Held at an open fragment, the other stream went on: the drain skips what it emitted
                # (and so does a restart before the drain's first acknowledgement).
                copy = self._start_drain_at(found, tailer, mark, dict(held.streams) or tailer.resuming())
                # Fragments an earlier file handed over continue in what the drain reads again.
                copy.joiner.carry(tailer.joiner.take_carried())
                copy.carried_marks.update(tailer.carried_marks)
                tailer.carried_marks = {}
            else:
                self._keep_until_acknowledged(tailer, mark)
        out = tailer.restart_truncated(size, head, copy.file if copy is not None else None)
        unseen = self._copied_unseen(tailer, seen_whole, copy, {ended_head or "", head or ""})
        if unseen is not None:
            file.wait_for_copy(unseen.file)
        self.checkpoints.truncated(file.identity, file.generation, file.head, file.read_offset)
        return out

    def _first_line(self, tailer: Tailer, head: str) -> None:
        """A generation that began empty after a truncation has a whole first line now: what
        was written, copied and truncated away before it is read first."""
        unseen = self._copied_unseen(tailer, tailer.file.eof_mtime, None, {head})
        if unseen is not None:
            tailer.file.wait_for_copy(unseen.file)

    def _copied_unseen(
        self, tailer: Tailer, since_ns: int, after: Tailer | None, not_heads: set[str],
    ) -> Tailer | None:
        """Generations of a copytruncate'd file that no look saw: written, copied and truncated
        away between two reads (two copytruncates in a row, the second before the first
        generation's successor was looked at).

        Their copies are the siblings changed since the file was last seen (``since_ns``,
        its mtime then) whose head no file podlog knows has.  Each is read whole, oldest
        first, after ``after`` (the drain of the generation that ended); the last is
        returned: the file's current generation waits for it.
        """
        file = tailer.file
        if since_ns < 0 or file.drain:
            return None
        directory, name = os.path.split(file.real_path)
        candidates: list[tuple[tuple[int, int, str], int, str, os.stat_result]] = []
        for sibling in _listdir(directory):
            if not (sibling.startswith((name + ".", name + "-"))) or sibling.endswith(".tmp"):
                continue
            path = os.path.join(directory, sibling)  # noqa: PTH118
            try:
                st = os.stat(path)  # noqa: PTH116 - str paths throughout
            except OSError:
                continue
            if (not _is_regular(st.st_mode) or st.st_mtime_ns < since_ns
                    or (st.st_dev, st.st_ino) == (file.dev, file.ino) or self._is_tracked(st.st_dev, st.st_ino)):
                continue
            candidates.append((generation_order(sibling), st.st_mtime_ns, path, st))  # oldest first
        if not candidates:
            return None
        heads = self._owned_heads() | not_heads
        meta = self.meta_of(tailer)
        last = after
        for _, _, path, st in sorted(candidates):
            drain = self._drain_whole(path, st, heads, meta, file.path, order=False, how="copied_unseen")
            if isinstance(drain, Tailer):
                drain.file.wait_for(last.file if last is not None else None)
                last = drain
        return last if last is not after else None

    def _keep_until_acknowledged(self, tailer: Tailer, mark: int) -> None:
        """The generation was read to ``mark`` and its copy holds no more: nothing to drain.  But what
        was read of it is not acknowledged yet: the copy's entry keeps it (retired at ``mark``,
        moved by that generation's acknowledgements), so a restart before them reads it from the copy."""
        file = tailer.file
        entry = self.checkpoints.entries.get(file.identity)
        if file.head is None or entry is None or entry.generation != file.generation or entry.offset >= mark:
            return
        found = self._find_copy(file.head, file.real_path, (file.dev, file.ino), entry.offset, file.real_path)
        if found is None:
            return
        path, source, dev, ino, head = found
        source.close()
        identity = make_identity(dev, ino, head)
        meta = self.meta_of(tailer)
        self.checkpoints.register(identity, path, dev=dev, ino=ino, head=head, generation=0, offset=entry.offset,
                                  size=mark, log_path=file.path, meta=dataclasses.asdict(meta),
                                  origin=file.identity, origin_generation=file.generation, streams=entry.streams,
                                  past=entry.past, origin_read=mark)
        self.checkpoints.retire(identity, mark)

    def _find_copy(
        self, head: str, real_path: str, not_ino: tuple[int, int], beyond: int, original: str,
    ) -> Found_ | None:
        """A sibling of ``real_path`` holding the same head and more than ``beyond`` bytes.

        Plain files by their head, ``.gz`` files by their decompressed head.
        Returns (path, open source, dev, ino, head) or None.
        """
        directory = os.path.dirname(real_path)  # noqa: PTH120 - str paths throughout
        try:
            candidates = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return None
        base = os.path.basename(original).split(".log")[0]  # noqa: PTH119
        for candidate in candidates:
            if not candidate.name.startswith(base):
                continue
            try:
                st = candidate.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == not_ino or not _is_regular(st.st_mode):
                continue
            found = self._open_generation(candidate.path, head, beyond, st.st_dev, st.st_ino)
            if found is not None:
                return found
        return None

    def _open_generation(
        self, path: str, head: str | None, beyond: int, dev: int, ino: int,
    ) -> Found_ | None:
        """``path`` as a source when its (decompressed) head is ``head``, else None.

        A ``head`` of None accepts any plain file longer than ``beyond``.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            start = os.pread(fd, HEAD_BYTES, 0)
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            return None
        kind = compression_of(start)
        if kind is None:
            actual = fingerprint_head(start, final=True)
            if actual is not None and (head is None or actual == head) and size > beyond:
                return path, FdSource(fd), dev, ino, actual
            os.close(fd)
            return None
        os.close(fd)
        if head is None or kind != "gzip" or gzip_head_fingerprint(path) != head:
            return None
        try:
            return path, GzipSource(path), dev, ino, head
        except OSError:
            return None

    def _start_drain_at(self, found: Found_, tailer: Tailer, offset: int, streams: dict[str, int]) -> Tailer:
        """A drain of copytruncate's copy, from ``offset`` (per stream: ``streams``), under
        ``tailer``'s identity and generation.

        Its checkpoint starts where that generation was acknowledged, not where it was read:
        what ``tailer`` emitted is in flight, and a restart before its acknowledgement reads it
        again from the copy.  Those acknowledgements move the copy's entry.
        """
        path, source, dev, ino, head = found
        file = tailer.file
        identity = make_identity(dev, ino, head)
        meta = self.meta_of(tailer)
        acked = self.checkpoints.entries.get(file.identity)
        if acked is not None and acked.generation == file.generation and acked.offset < offset:
            start, start_streams, past = acked.offset, acked.streams, acked.past
        else:
            start, start_streams, past = offset, streams, 0
        entry = self.checkpoints.register(
            identity, path, dev=dev, ino=ino, head=head, generation=0, offset=start, size=offset,
            log_path=file.path, meta=dataclasses.asdict(meta), origin=file.identity,
            origin_generation=file.generation, streams=start_streams, past=past, origin_read=offset)
        if acked is not None and acked.generation == file.generation:
            entry.spooled = max(entry.spooled, min(acked.spooled, offset))
        drain = self._drain(path, source, dev, ino, identity, head, offset, meta, file.path,
                            file.identity, file.generation, order=False)
        drain.resume_streams(streams)
        return drain

    def _start_drain(
        self, found: Found_, entry: CheckpointEntry, meta: PathMeta, *,
        origin: str, origin_generation: int,
    ) -> Tailer:
        """A drain of a file truncated while podlog was down, from its checkpoint."""
        path, source, dev, ino, head = found
        identity = make_identity(dev, ino, head)
        self.checkpoints.register(identity, path, dev=dev, ino=ino, head=head, generation=0,
                                  offset=entry.offset, size=entry.offset, log_path=entry.log_path,
                                  meta=dataclasses.asdict(meta), origin=origin,
                                  origin_generation=origin_generation, streams=entry.streams, past=entry.past)
        drain = self._drain(path, source, dev, ino, identity, head, entry.offset, meta,
                            entry.log_path or entry.path, origin, origin_generation)
        drain.resume_streams(entry.streams, entry.past)
        return drain

    def _drain(
        self, path: str, source: Source, dev: int, ino: int, identity: str, head: str, offset: int,
        meta: PathMeta, log_path: str, origin: str | None, origin_generation: int | None,
        *, generation: int = 0, order: bool = True, how: str = "found_again",
    ) -> Tailer:
        file = FileState(path=log_path, real_path=path, source=source, dev=dev, ino=ino, identity=identity,
                         head=head, generation=generation, offset=offset, size=offset, meta=meta,
                         key=stream_key(meta), drain=True)
        tailer = Tailer(settings=self.settings, file=file, kubernetes=kubernetes_fields(meta, self.settings.node),
                        record_identity=origin, record_generation=origin_generation)
        if self.host_files is not None:
            self.host_files.adopt(tailer)
        tailer.last_mark = offset
        tailer.on_truncated = None
        self._apply_policy(tailer, self.enricher.policy(meta))
        if order and self._recovered is not None:
            self._recovered.append(tailer)  # linked in generation order once all are found
        elif order:
            self._link(tailer)
        self.tailers[identity] = tailer
        self.meta[identity] = meta
        EVENTS.file_opened(path, identity, offset, "auto")
        EVENTS.file_rotated(path, identity, offset, how)
        return tailer

    # -- policy ------------------------------------------------------------------

    def _apply_policy(self, tailer: Tailer, policy: FilePolicy) -> list[Record]:
        return tailer.set_multiline(policy.multiline or tailer.default_multiline or self.default_multiline)

    def apply_policies(self) -> list[tuple[list[Record], Tailer]]:
        """Switch multiline rules where pod annotations changed; records of events it closed."""
        out = []
        for tailer in self.tailers.values():
            records = self._apply_policy(tailer, self.enricher.policy(self.meta_of(tailer)))
            if records:
                out.append((records, tailer))
        return out

    # -- the end of a file -------------------------------------------------------

    def close(self, tailer: Tailer, reason: str) -> None:
        """Close a tailer whose records were all emitted; retire its checkpoint."""
        self.tailers.pop(tailer.identity, None)
        self.meta.pop(tailer.identity, None)
        for path in [p for p, t in self.by_path.items() if t is tailer]:
            del self.by_path[path]
        final = tailer.file_end_mark().offset if tailer.handed_over() else tailer.mark().offset
        tailer.file.close(reason)
        self.checkpoints.retire(tailer.identity, final)

    def close_all(self) -> None:
        """Release every descriptor (shutdown); checkpoints keep their entries."""
        for tailer in list(self.tailers.values()):
            tailer.file.close("shutdown")
        self.tailers.clear()
        self.by_path.clear()

    # -- startup -----------------------------------------------------------------

    def recover(self, found: dict[str, Found]) -> None:
        """Before the first pass: read what files that rotated while podlog was down still owe.

        A checkpointed file that no included path names any more is looked
        for in its directory: under another name (same inode and head), or as
        a compressed generation (decompressed head).  Found, it is read from
        its checkpoint before the newer files of its container.  Found
        nowhere, its unread bytes are counted as lost.
        """
        if self._recovered is None:
            self._recovered = []
        live = {(item.dev, item.ino): item for item in found.values()}
        entries = sorted(self.checkpoints.entries.values(), key=lambda e: e.first_seen)
        for entry in entries:
            if entry.identity in self.tailers:
                continue
            item = live.get((entry.dev, entry.ino))
            if item is None or entry.origin:
                self._recover_entry(entry)
            elif item.real_path != entry.path or entry.final_offset is not None:
                # Its inode names another file now (freed and reused): the file itself is elsewhere.
                # A retired file was closed because it rotated away: one at its old path is new,
                # even on its inode.
                self._recover_entry(entry, reused=(entry.dev, entry.ino))
            else:
                now_at = _now_at(item.real_path, entry)
                if now_at is _At.MOVED:
                    # Renamed after the scan (a rotation as podlog starts): under its new name.
                    self._recover_entry(entry)
                elif now_at is _At.REWRITTEN:
                    self._truncated_while_down(entry)
                # else: still under an included name, as it was: discovery resumes it

    def _truncated_while_down(self, entry: CheckpointEntry) -> None:
        """The file of ``entry`` holds other content now, or less than was read: copytruncate,
        or its inode freed and reused under the same name, while podlog was down.

        What it still owed is read from the copy it left (plain or ``.gz``,
        found by head) under its identity; found nowhere, it is lost.  The
        file at the path is the entry's next generation once it has a first line.
        """
        meta = _meta_of_entry(entry)
        log_path = entry.log_path or entry.path
        copy = None
        if entry.head:
            copy = self._find_copy(entry.head, entry.path, (entry.dev, entry.ino), entry.offset, entry.path)
        if copy is not None:
            self._start_drain(copy, entry, meta, origin=entry.identity, origin_generation=entry.generation)
        elif self.checkpoints.unread(entry):
            self.checkpoints.lost("truncated_before_read", log_path, self.checkpoints.unread(entry), entry.identity)
        self.checkpoints.finish_head(entry.head)
        self.checkpoints.truncated(entry.identity, entry.generation + 1, None)

    def order_recovered(self) -> None:
        """Order the generations found at start oldest first within each container stream.

        They were found in checkpoint order (a file podlog knew, then older
        ones it never saw), not in the order they were written: each now
        waits for the one before it by restart and rotation name.
        """
        recovered, self._recovered = sorted(self._recovered or [], key=_age), None
        newest: dict[str, Tailer] = {}
        for tailer in recovered:
            older = newest.get(tailer.file.key)  # nothing else is open yet
            if older is not None:
                tailer.file.wait_for(older.file)
                if _same_container(older.file.meta, tailer.file.meta):
                    older.successor = tailer
            newest[tailer.file.key] = tailer
        # The newest generation last: a file opened next is ordered after it.
        for tailer in recovered:
            self.tailers[tailer.identity] = self.tailers.pop(tailer.identity)

    def recover_unseen(self, found: dict[str, Found], since: float) -> None:
        """Before the first pass: read container files that changed while podlog was down
        and that no included path names, from their start.

        A container that started and exited while podlog was down (a restart,
        then its link re-pointed or removed) left a file under
        ``/var/log/pods`` that podlog never saw: it is read whole, oldest
        generation first, before the newer files of its container.
        """
        live = {(item.dev, item.ino) for item in found.values()}
        for path in found:
            # A rotation since the scan put a new file under an included name: the first pass opens it.
            try:
                st = os.stat(path)  # noqa: PTH116 - str paths throughout
            except OSError:
                continue
            live.add((st.st_dev, st.st_ino))
        roots: set[str] = set()
        for path in [*found, *(e.path for e in self.checkpoints.entries.values())]:
            root = pods_root(path)
            if root is not None:
                roots.add(root)
        heads = self._owned_heads()
        seen: set[tuple[int, int]] = set()
        for _ in range(UNSEEN_PASSES):
            # kubelet and dockerd rename and compress while podlog starts: a generation that
            # vanished between the listing and its stat is under its next name in a new listing.
            if not self._unseen_pass(sorted(roots), live, since, heads, seen):
                break

    def _unseen_pass(
        self, roots: list[str], live: set[tuple[int, int]], since: float, heads: set[str],
        seen: set[tuple[int, int]],
    ) -> bool:
        """One listing of the container directories; True when a listed file vanished meanwhile."""
        candidates: list[tuple[tuple[str, tuple[int, int, str]], str, str]] = []
        for root in roots:
            for container_dir in glob.glob(os.path.join(glob.escape(root), "*", "*")):  # noqa: PTH118, PTH207
                for name in _listdir(container_dir):
                    path = os.path.join(container_dir, name)  # noqa: PTH118
                    candidates.append(((container_dir, generation_order(name)), path, path))
                    target = os.path.realpath(path)
                    if target != path and os.path.dirname(target) != container_dir:  # noqa: PTH120
                        # Docker: the link names <id>-json.log; its rotations lie beside it.
                        for sibling in _listdir(os.path.dirname(target)):  # noqa: PTH120
                            if sibling.startswith(os.path.basename(target) + "."):  # noqa: PTH119
                                candidates.append(((container_dir, generation_order(sibling)),
                                                   os.path.join(os.path.dirname(target), sibling), path))  # noqa: PTH118, PTH120
        vanished = False
        for _, path, via in sorted(candidates):
            if path.endswith(".tmp"):
                continue
            try:
                st = os.stat(path)  # noqa: PTH116 - str paths throughout
            except FileNotFoundError:
                vanished = True
                continue
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if (not _is_regular(st.st_mode) or st.st_mtime <= since - UNSEEN_MARGIN_SECONDS or key in live
                    or key in seen or self._is_tracked(*key)):
                continue  # a checkpointed file is known by its head, not its (reusable) inode
            if self._open_unseen(path, via, st, heads):
                seen.add(key)
            else:
                vanished = True  # gone while being opened: look again under its next name
        return vanished

    def _owned_heads(self) -> set[str]:
        """Heads of files podlog reads or has a checkpoint for: a generation with one is no stranger."""
        heads = {entry.head for entry in self.checkpoints.entries.values() if entry.head}
        heads.update(t.file.head for t in self.tailers.values() if t.file.head)
        return heads

    def _open_unseen(self, path: str, via: str, st: os.stat_result, heads: set[str]) -> bool:
        """Drain ``path`` from its start unless its head is known; False when it could not be
        read because it vanished (renamed or compressed meanwhile)."""
        try:
            meta = resolve_meta(via) or parse_path(via) or EMPTY_META
        except OSError:
            return True
        if self.discovery.is_excluded(via, via) or self.discovery.is_self(meta):
            return True
        if self.enricher.policy(meta).exclude:
            return True
        drained = self._drain_whole(path, st, heads, meta, via)
        # Unreadable stays skipped; gone is looked for again under its next name.
        return drained is not False or os.path.exists(path)  # noqa: PTH110

    def _drain_whole(
        self, path: str, st: os.stat_result, heads: set[str], meta: PathMeta, log_path: str,
        *, order: bool = True, how: str = "found_again",
    ) -> Tailer | bool:
        """Drain ``path`` (plain, or ``.gz`` decompressed) from its start, as a generation of
        its own, unless its head is in ``heads`` or known to the checkpoints (that generation,
        or copytruncate's copy of it, was read): the drain; True when known; False when it
        could not be opened."""
        if path.endswith(".gz"):
            head = gzip_head_fingerprint(path)
            if head is None:
                return False
            if head in heads or self.checkpoints.is_known(head):
                return True
            found = self._open_generation(path, head, -1, st.st_dev, st.st_ino)
        else:
            found = self._open_generation(path, None, -1, st.st_dev, st.st_ino)
        if found is None:
            return False
        _, source, dev, ino, head = found
        if self.checkpoints.is_known(head) or head in heads:
            source.close()
            return True
        heads.add(head)
        identity = make_identity(dev, ino, head)
        self.checkpoints.register(identity, path, dev=dev, ino=ino, head=head, generation=0, offset=0,
                                  size=0 if source.compressed else st.st_size, log_path=log_path,
                                  meta=dataclasses.asdict(meta))
        return self._drain(path, source, dev, ino, identity, head, 0, meta, log_path, None, None,
                           order=order, how=how)

    def _recover_entry(self, entry: CheckpointEntry, reused: tuple[int, int] | None = None) -> None:
        meta = _meta_of_entry(entry)
        log_path = entry.log_path or entry.path
        if entry.final_offset is not None and entry.offset >= entry.final_offset:
            self.checkpoints.finish_head(entry.head)
            self.checkpoints.forget(entry.identity)
            return
        found, rewritten, complete = self._find_again(entry, reused)
        if complete:
            self.checkpoints.finish_head(entry.head)
            self.checkpoints.forget(entry.identity)
        elif found is None:
            self.checkpoints.lost("deleted_before_read", log_path, self.checkpoints.unread(entry), entry.identity)
            self.checkpoints.forget(entry.identity)
        else:
            path, source, dev, ino, head = found
            origin = entry.origin or None
            origin_generation = entry.origin_generation if entry.origin else None
            entry.path, entry.dev, entry.ino = path, dev, ino
            # A generation truncated to empty was found by inode alone: its head is known now, so
            # no later search takes this file (under any name) for one never read.
            entry.head = entry.head or head
            self.checkpoints.dirty = True
            drain = self._drain(path, source, dev, ino, entry.identity, head, entry.offset, meta, log_path,
                                origin, origin_generation, generation=entry.generation)
            drain.resume_streams(entry.streams, entry.past)
        if rewritten is not None and not entry.origin:
            # Truncated in place and written again while podlog was down, then renamed:
            # the new content is the file's next generation, read whole after the old one.
            path, source, dev, ino, head = rewritten
            identity = make_identity(dev, ino, head)
            generation = entry.generation + 1
            self.checkpoints.register(identity, path, dev=dev, ino=ino, head=head, generation=0, offset=0,
                                      size=0, log_path=log_path, meta=dataclasses.asdict(meta),
                                      origin=entry.identity, origin_generation=generation)
            self._drain(path, source, dev, ino, identity, head, 0, meta, log_path, entry.identity, generation)

    def _find_again(
        self, entry: CheckpointEntry, reused: tuple[int, int] | None,
    ) -> tuple[Found_ | None, Found_ | None, bool]:
        """The file of ``entry`` under any name in its directory: same inode, or a copy, or ``.gz``.

        Also returns the file's own inode under a rotated name when it holds
        other content now (truncated and rewritten), or None; and True when
        the file was found already read to its end (nothing owed, nothing lost).
        """
        directory = os.path.dirname(entry.path)  # noqa: PTH120 - str paths throughout
        try:
            candidates = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return None, None, False
        same_inode = []
        others = []
        for candidate in candidates:
            try:
                st = candidate.stat(follow_symlinks=False)
            except OSError:
                continue
            if not _is_regular(st.st_mode) or (st.st_dev, st.st_ino) == reused:
                continue
            if self._is_tracked(st.st_dev, st.st_ino):
                continue
            if (st.st_dev, st.st_ino) == (entry.dev, entry.ino):
                same_inode.append((candidate.path, st))
            else:
                others.append((candidate.path, st))
        rewritten: Found_ | None = None
        for path, st in same_inode:
            head, compressed = _head_of(path)
            if compressed or head is None:
                continue  # an inode reused by a compressed file: looked at below, by content
            if not entry.head or head == entry.head:
                if st.st_size <= entry.offset:
                    return None, None, True  # read to its end before: nothing owed
                found = self._open_generation(path, None, entry.offset, st.st_dev, st.st_ino)
                if found is not None:
                    return found, None, False
            elif reused is None:
                rewritten = self._open_generation(path, None, -1, st.st_dev, st.st_ino)
        if not entry.head:
            return None, rewritten, False
        for path, st in [*((p, s) for p, s in same_inode), *others]:
            if not path.endswith(".gz"):
                if (st.st_dev, st.st_ino) == (entry.dev, entry.ino):
                    continue  # plain, same inode: decided above
                if st.st_size <= entry.offset:
                    if st.st_size == entry.offset and _head_of(path)[0] == entry.head:
                        return None, rewritten, True  # a copy holding no more than was read
                    continue
            found = self._open_generation(path, entry.head, entry.offset, st.st_dev, st.st_ino)
            if found is not None:
                return found, rewritten, False
        return None, rewritten, False

    def _is_tracked(self, dev: int, ino: int) -> bool:
        return any((t.file.dev, t.file.ino) == (dev, ino) for t in self.tailers.values())

    def meta_of(self, tailer: Tailer) -> PathMeta:
        """Path metadata of an open tailer."""
        return self.meta.get(tailer.identity, EMPTY_META)


def _meta_of_entry(entry: CheckpointEntry) -> PathMeta:
    if entry.meta:
        try:
            return PathMeta(**entry.meta)
        except TypeError:
            pass
    try:
        return resolve_meta(entry.log_path or entry.path) or parse_path(entry.path) or EMPTY_META
    except OSError:
        return parse_path(entry.path) or EMPTY_META


def _same_container(a: PathMeta, b: PathMeta) -> bool:
    """True when two files are generations of one container instance (a rotation).

    A container ID only counts when both paths named one: the ``/var/log/pods``
    link of a Docker container does not, its ``/var/log/containers`` link does.
    """
    if a.restart_count != b.restart_count:
        return False
    return not (a.container_id and b.container_id) or a.container_id == b.container_id


def _age(tailer: Tailer) -> tuple[str, int, tuple[int, int, str]]:
    """Sort key of a found generation: its stream, then restart and rotation name, oldest first."""
    file = tailer.file
    restart = file.meta.restart_count or 0
    return file.key, restart, generation_order(os.path.basename(file.real_path))  # noqa: PTH119


def _restart_order(path: str, real_path: str) -> tuple[int, str]:
    """Sort key of new files: restart 0 before restart 1 of a container.

    The count is in a ``/var/log/pods`` name along the link chain: a Docker
    file's own path (``<id>-json.log``) carries none.
    """
    try:
        meta = resolve_meta(path) or parse_path(real_path)
    except OSError:
        meta = parse_path(real_path)
    restart = meta.restart_count if meta is not None and meta.restart_count is not None else 0
    return restart, real_path


def _head_of(path: str) -> tuple[str | None, bool]:
    """The head fingerprint of a plain file as it is (final), and whether it is compressed."""
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - str paths throughout
            start = handle.read(HEAD_BYTES)
    except OSError:
        return None, False
    if compression_of(start) is not None:
        return None, True
    return fingerprint_head(start, final=True), False


class _At(enum.Enum):
    """What the path of a checkpointed file holds at start, against its entry."""

    SAME = "same"
    """Its file, starting with its head and reaching its offset (or unreadable now)."""
    MOVED = "moved"
    """Another inode: the file was renamed away after the start scan named it."""
    REWRITTEN = "rewritten"
    """Its inode with other content, or less than was read: truncated while podlog was down."""


def _now_at(path: str, entry: CheckpointEntry) -> _At:
    """What ``path`` holds now for ``entry``, told on one descriptor."""
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - str paths throughout
            st = os.fstat(handle.fileno())
            start = handle.read(HEAD_BYTES)
    except OSError:
        return _At.SAME  # unreadable now: discovery finds out, and counts it
    if (st.st_dev, st.st_ino) != (entry.dev, entry.ino):
        return _At.MOVED
    if st.st_size < entry.offset or (entry.head and fingerprint_head(start) != entry.head):
        return _At.REWRITTEN
    return _At.SAME


def _listdir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)  # noqa: PTH208 - str paths throughout
    except OSError:
        return []


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
