"""The set of open files: what each discovered path names now, and what rotated away.

:meth:`FileTracker.reconcile` compares a stat pass with the open tailers:

* a new path -> open it, resuming at its checkpoint when its identity is known;
* the same path naming another inode (kubelet rename, Docker ``-json.log`` ->
  ``.1``, a re-pointed symlink) -> the old tailer is *rotated*: it keeps reading
  to its end for ``rotate_wait``, and the new file waits until it got there;
* a path gone (deleted, renamed away) -> rotated likewise: the descriptor still
  reads the data;
* a size below the read offset -> truncated in place (copytruncate): restart
  at 0 in the next generation and count what was never read.

At startup, :meth:`FileTracker.recover` finds files that rotated while podlog
was down (same inode, renamed in the same directory), reads them first, and
counts the bytes of those that are gone for good.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from collector.checkpoint import CheckpointEntry, CheckpointStore
from collector.discovery import Discovery, Found
from collector.enrichment import Enricher, FilePolicy, PathMeta
from collector.events import EVENTS
from collector.fingerprint import head_fingerprint, make_identity
from collector.paths import EMPTY_META, kubernetes_fields, parse_path
from collector.tailer import Tailer, TailerSettings
from podlog.record import Record

__all__ = ["FileTracker"]


class FileTracker:
    """Open tailers by identity and by discovered path."""

    def __init__(
        self, *, settings: TailerSettings, discovery: Discovery, checkpoints: CheckpointStore,
        enricher: Enricher, default_multiline: str, read_from: str, max_open_files: int,
    ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.checkpoints = checkpoints
        self.enricher = enricher
        self.default_multiline = default_multiline
        self.read_from = read_from
        self.max_open_files = max_open_files
        self.tailers: dict[str, Tailer] = {}
        """Every open file by identity, rotated ones included."""
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
        self._last_rotated: dict[str, Tailer] = {}
        """The newest rotated file by the names it had: a new file there reads after it."""
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
            yield os.path.dirname(tailer.real_path)  # noqa: PTH120 - str paths throughout

    # -- reconciliation ---------------------------------------------------------

    def reconcile(self, found: dict[str, Found], now: float, *, initial: bool = False) -> list[Record]:
        """Bring the open set in line with a stat pass; returns records it completed."""
        out: list[Record] = []
        for path, item in found.items():
            current = self.by_path.get(path)
            if current is not None and (current.dev, current.ino) == (item.dev, item.ino):
                if item.size < current.read_offset or self._head_changed(current, item):
                    out.extend(current.restart_truncated(item.size))
                    self.checkpoints.truncated(current.identity, current.generation, current.head)
                elif item.size > current.size_seen:
                    current.size_seen = item.size
                self.checkpoints.observed(current.identity, item.size)
                continue
            if current is not None:
                self._rotated(current, path, now, "replaced")
            tailer = self._open(path, item, initial=initial)
            if tailer is not None:
                tailer.predecessor = self._previous(path, item.real_path)
        for path in [p for p in self.by_path if p not in found]:
            self._rotated(self.by_path[path], path, now, "removed")
        for path in [p for p in self._excluded if p not in found]:
            del self._excluded[path]
            self._excluded_by_policy.discard(path)
        self._from_end.intersection_update(found)
        self.unopened.intersection_update(found)
        return out

    def _head_changed(self, tailer: Tailer, item: Found) -> bool:
        """True when the file's first line changed: truncated and rewritten meanwhile."""
        if tailer.closed or item.size == 0:
            return False
        try:
            head = head_fingerprint(tailer.fd)
        except OSError:
            return False
        return head is not None and head != tailer.head

    def _previous(self, path: str, real_path: str) -> Tailer | None:
        """The file that last rotated away from this name, while it still has data to give."""
        for key in (path, real_path):
            tailer = self._last_rotated.get(key)
            if tailer is not None and not tailer.closed:
                return tailer
        return None

    def _rotated(self, tailer: Tailer, path: str, now: float, how: str) -> None:
        del self.by_path[path]
        self._last_rotated[path] = tailer
        self._last_rotated[tailer.real_path] = tailer
        if tailer.rotated_at is None and tailer not in self.by_path.values():
            tailer.rotated_at = now
            tailer.drained_once = False  # its successor waits until it reaches its end again
            EVENTS.file_rotated(path, tailer.identity, tailer.read_offset, how)

    def _open(self, path: str, item: Found, *, initial: bool) -> Tailer | None:
        for tailer in self.tailers.values():
            if (tailer.dev, tailer.ino) != (item.dev, item.ino) or tailer.closed:
                continue
            # The same file under a second matching name, or back under an included
            # name after it was gone from one: keep reading it, never open it twice.
            if tailer.rotated_at is not None:
                tailer.rotated_at = None
                EVENTS.file_resumed(path, tailer.identity, tailer.read_offset)
            self.by_path[path] = tailer
            return None
        if self._excluded.get(path) == (item.dev, item.ino):
            return None
        meta = parse_path(path) or parse_path(item.real_path)
        if meta is None:
            meta = EMPTY_META
        if self.discovery.is_self(meta):
            self._exclude(path, item, "self")
            return None
        policy = self.enricher.policy(meta)
        if policy.exclude:
            self._exclude(path, item, "policy")
            return None
        if len(self.tailers) >= self.max_open_files:
            if path not in self._waiting:
                self._waiting.add(path)
                EVENTS.file_failed(path, OSError("max_open_files reached"), "open")
            return None
        self._waiting.discard(path)
        try:
            fd = os.open(item.real_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            EVENTS.file_failed(path, exc, "open")
            return None
        try:
            st = os.fstat(fd)
            head = head_fingerprint(fd)
        except OSError as exc:
            os.close(fd)
            EVENTS.file_failed(path, exc, "open")
            return None
        if head is None or (st.st_dev, st.st_ino) != (item.dev, item.ino):
            os.close(fd)  # no complete first line yet, or replaced meanwhile: next pass
            self.unopened.add(path)
            return None
        self.unopened.discard(path)
        tailer = self._resume(path, item.real_path, fd, st.st_dev, st.st_ino, st.st_size, head,
                              meta, initial=initial)
        if path in self._from_end:
            self._from_end.discard(path)
            if tailer.read_offset < st.st_size:
                self.checkpoints.skip(tailer.identity, tailer.skip_to(st.st_size))
        if meta is EMPTY_META:
            EVENTS.path_unparsed(path)
        self._apply_policy(tailer, policy)
        self.tailers[tailer.identity] = tailer
        self.by_path[path] = tailer
        self.meta[tailer.identity] = meta
        return tailer

    def _exclude(self, path: str, item: Found, why: str) -> None:
        self._excluded[path] = (item.dev, item.ino)
        if why == "policy":
            self._excluded_by_policy.add(path)
        EVENTS.file_excluded(path, why)

    # -- podlog.io/exclude changing while files are open -------------------------

    def readmit(self) -> None:
        """Forget exclusions the pod's metadata no longer asks for (before a reconcile).

        The next reconcile opens such a file at its end: what the pod wrote
        while it was excluded is not collected.
        """
        for path in list(self._excluded_by_policy):
            meta = parse_path(path) or EMPTY_META
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
            if tailer.rotated_at is not None or not self.enricher.policy(self.meta_of(tailer)).exclude:
                continue
            self._excluded[path] = (tailer.dev, tailer.ino)
            self._excluded_by_policy.add(path)
            EVENTS.file_excluded(path, "policy")
            out.append(tailer)
        return out

    def _resume(
        self, path: str, real_path: str, fd: int, dev: int, ino: int, size: int, head: str,
        meta: PathMeta, *, initial: bool,
    ) -> Tailer:
        entry = self.checkpoints.find(dev, ino, head)
        generation = 0
        if entry is not None:
            identity, generation, offset = entry.identity, entry.generation, entry.offset
            if offset > size:
                # Truncated while podlog was down: what was past `size` is gone.
                EVENTS.bytes_lost("truncated", path, self.checkpoints.unread(entry), identity)
                generation, offset = generation + 1, 0
                self.checkpoints.truncated(identity, generation, head)
            else:
                EVENTS.file_resumed(path, identity, offset)
        else:
            for stale in self.checkpoints.find_inode(dev, ino):
                if stale.identity not in self.tailers:
                    self._count_gone(stale, "inode_reused")
            identity = make_identity(dev, ino, head)
            if identity in self.checkpoints.entries:
                generation = self.checkpoints.entries[identity].generation + 1
            first_start = initial and not self.checkpoints.existed
            offset = size if first_start and self.read_from == "tail" else 0
        self.checkpoints.register(identity, real_path, dev=dev, ino=ino, head=head,
                                  generation=generation, offset=offset, size=size)
        tailer = Tailer(
            settings=self.settings, path=path, real_path=real_path, fd=fd, dev=dev, ino=ino,
            identity=identity, head=head, generation=generation, offset=offset,
            kubernetes=kubernetes_fields(meta, self.settings.node),
        )
        tailer.size_seen = size
        tailer.last_mark = offset
        EVENTS.file_opened(path, identity, offset, tailer.decoder.format or "auto")
        return tailer

    def _count_gone(self, entry: CheckpointEntry, reason: str) -> None:
        EVENTS.bytes_lost(reason, entry.path, self.checkpoints.unread(entry), entry.identity)
        self.checkpoints.forget(entry.identity)

    # -- policy ------------------------------------------------------------------

    def _apply_policy(self, tailer: Tailer, policy: FilePolicy) -> list[Record]:
        return tailer.set_multiline(policy.multiline or self.default_multiline)

    # -- the end of a file -------------------------------------------------------

    def close(self, tailer: Tailer, reason: str) -> None:
        """Close a tailer whose records were all emitted; retire its checkpoint."""
        self.tailers.pop(tailer.identity, None)
        self.meta.pop(tailer.identity, None)
        for path in [p for p, t in self.by_path.items() if t is tailer]:
            del self.by_path[path]
        tailer.close()
        for key in [k for k, t in self._last_rotated.items() if t is tailer]:
            del self._last_rotated[key]
        self.checkpoints.retire(tailer.identity, tailer.mark().offset)
        EVENTS.file_closed(tailer.path, tailer.identity, tailer.read_offset, reason)

    def close_all(self) -> None:
        """Release every descriptor (shutdown); checkpoints keep their entries."""
        for tailer in list(self.tailers.values()):
            tailer.close()
            EVENTS.file_closed(tailer.path, tailer.identity, tailer.read_offset, "shutdown")
        self.tailers.clear()
        self.by_path.clear()
        self._last_rotated.clear()

    # -- startup -----------------------------------------------------------------

    def recover(self, now: float, found: dict[str, Found]) -> None:
        """After the first pass: read files that rotated while podlog was down, first.

        A checkpointed file that no path names any more is looked for under
        another name in its directory (same inode and head); found, it is read
        from its checkpoint before its successor.  Not found, its unread bytes
        are counted as lost.
        """
        live = {(item.dev, item.ino) for item in found.values()}
        chains: dict[str, list[Tailer]] = {}
        entries = sorted(self.checkpoints.entries.values(), key=lambda e: e.first_seen)
        for entry in entries:
            if entry.identity in self.tailers or (entry.dev, entry.ino) in live:
                continue  # open, or still under an included name: discovery handles it
            tailer = self._find_renamed(entry)
            if tailer is None:
                if entry.final_offset is not None and entry.offset >= entry.final_offset:
                    self.checkpoints.forget(entry.identity)
                else:
                    self._count_gone(entry, "rotated_while_down")
                continue
            tailer.rotated_at = now
            chains.setdefault(entry.path, []).append(tailer)
        recovered: dict[str, Tailer] = {}
        for original, chain in chains.items():
            # Oldest first: each file waits for the one rotated before it.
            for older, newer in itertools.pairwise(chain):
                newer.predecessor = older
            successor = next((t for t in self.tailers.values() if t.real_path == original), None)
            if successor is not None:
                successor.predecessor = chain[-1]
            self._last_rotated[original] = chain[-1]
            for tailer in chain:
                if successor is not None:
                    tailer.path = successor.path
                    tailer.kubernetes = successor.kubernetes
                    self.meta[tailer.identity] = self.meta[successor.identity]
                recovered[tailer.identity] = tailer
        self.tailers = {**recovered, **self.tailers}

    def _find_renamed(self, entry: CheckpointEntry) -> Tailer | None:
        directory = os.path.dirname(entry.path)  # noqa: PTH120 - str paths throughout
        try:
            candidates = list(os.scandir(directory))
        except OSError:
            return None
        for candidate in candidates:
            try:
                st = candidate.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (entry.dev, entry.ino):
                continue
            try:
                fd = os.open(candidate.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                EVENTS.file_failed(candidate.path, exc, "open")
                return None
            try:
                head = head_fingerprint(fd, final=True)
            except OSError:
                head = None
            if head is None:
                os.close(fd)
                return None
            identity, generation, offset = entry.identity, entry.generation, entry.offset
            if head != entry.head or offset > st.st_size:
                # Truncated (and rewritten) before it was renamed: its new content is
                # unread; what the old content still owed is lost.
                self._count_gone(entry, "truncated")
                identity, generation, offset = make_identity(st.st_dev, st.st_ino, head), 0, 0
                self.checkpoints.register(
                    identity, entry.path, dev=st.st_dev, ino=st.st_ino, head=head,
                    generation=0, offset=0, size=st.st_size,
                )
                self.checkpoints.entries[identity].first_seen = entry.first_seen
            meta = parse_path(entry.path) or EMPTY_META
            tailer = Tailer(
                settings=self.settings, path=entry.path, real_path=candidate.path, fd=fd,
                dev=st.st_dev, ino=st.st_ino, identity=identity, head=head,
                generation=generation, offset=offset,
                kubernetes=kubernetes_fields(meta, self.settings.node),
            )
            tailer.size_seen = max(st.st_size, offset)
            tailer.last_mark = offset
            tailer.set_multiline(self.enricher.policy(meta).multiline or self.default_multiline)
            self.meta[identity] = meta
            EVENTS.file_opened(candidate.path, identity, offset, "auto")
            EVENTS.file_rotated(candidate.path, identity, offset, "while_down")
            return tailer
        return None

    def meta_of(self, tailer: Tailer) -> PathMeta:
        """Path metadata of an open tailer."""
        return self.meta.get(tailer.identity, EMPTY_META)


