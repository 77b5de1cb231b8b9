"""One log file's life, as a state machine: the only owner of its identity and offsets.

::

               rotate (renamed, replaced)             read to its end
    ACTIVE ─────────────────────────────────▶ ROTATED ──────────────────▶ DONE
      │  ▲ ╲ unlinked (nlink 0)                  ▲                        ▲
      │  │  ╲──────────────────▶ DELETED ────────┼────────────────────────┘
      │  │ back under an included name           │
      │  └───────────────────────────────────────┘
      │ truncated in place (copytruncate)
      ▼
    TRUNCATED ── its copy read to the end (or none found) ──▶ ACTIVE (generation + 1)
                 (ROTATED or DELETED again when it had left its path before the truncation was seen)

A :class:`FileState` is one inode confirmed by its head fingerprint. Every
transition is one method that logs one event; nothing else changes a file's
identity, generation or read offset.  Its persisted form is its entry in
:class:`collector.checkpoint.CheckpointStore`.

A *drain* is a FileState that reads a rotated generation found again after a
restart (renamed, or compressed to ``.gz``) or the copy that copytruncate
left: it reads under the identity and generation of the file it continues,
so every record gets the ``event.id`` it would have had, and ends at the end
of its content.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable

from collector.enrichment import PathMeta
from collector.events import EVENTS
from collector.fingerprint import HEAD_BYTES, fingerprint_head
from collector.reader import Source

__all__ = ["FileState", "State"]


class State(enum.Enum):
    """Where a file is in its life."""

    ACTIVE = "active"
    """A discovered path names the file; it may grow, be truncated, rotated."""
    ROTATED = "rotated"
    """Renamed away or replaced at its path: read to its end, then done."""
    TRUNCATED = "truncated"
    """Truncated in place; the new generation waits until the old one's copy was read."""
    DELETED = "deleted"
    """No name links to it: only the descriptor reads it, to its end."""
    DONE = "done"
    """Read to its end and closed."""


class FileState:
    """One file (one inode, one head): identity, generation, offsets, state."""

    def __init__(
        self, *, path: str, real_path: str, source: Source, dev: int, ino: int, identity: str,
        head: str | None, generation: int, offset: int, size: int, meta: PathMeta, key: str,
        drain: bool = False,
    ) -> None:
        self.path = path
        """The path as discovered (``log.file.path``)."""
        self.real_path = real_path
        """The file the path names (symlinks followed), or the rotated name it was found by."""
        self.source = source
        self.dev = dev
        self.ino = ino
        self.identity = identity
        """``"<dev>:<inode>:<fingerprint>"`` when first confirmed: the checkpoint key."""
        self.head = head
        """Fingerprint of the current generation's head; None until it has enough bytes."""
        self.generation = generation
        self.read_offset = offset
        self.size_seen = max(size, offset)
        self.meta = meta
        self.key = key
        """The container stream this file belongs to (:func:`collector.paths.stream_key`)."""
        self.drain = drain
        """True for a found-again rotated generation or a copytruncate copy: it only drains."""
        self.state = State.ROTATED if drain else State.ACTIVE
        self.state_since: float | None = None
        """Monotonic time of the last transition out of ACTIVE (rotate_wait counts from it)."""
        self.eof_count = 0
        """Times the end was reached; a successor waits for one more than it saw."""
        self.at_eof = False
        self.predecessor: FileState | None = None
        """An older file of the same stream that must be read to its end first."""
        self._waited_eofs = 0
        self.copy: FileState | None = None
        """While TRUNCATED: the drain reading the copy copytruncate left."""
        self._after_copy = State.ACTIVE
        """The state a truncation returns to once its copy is read: a file already rotated
        away or deleted stays so, and still ends at its end."""
        self.eof_mtime = -1
        """The file's mtime (ns) when last seen holding its current generation: a copy made
        after it holds that generation or a later one."""
        self._head_len: int | None = None
        """Bytes of the line the head fingerprint covers, once known."""
        self.holds_fragment = False
        """An open partial line ends what was read: a rotation's successor waits for it."""
        self.on_lost: Callable[[str, str, int, str], None] = EVENTS.bytes_lost
        """Where bytes lost to a truncation are counted (the checkpoint store, under a tracker)."""

    # -- order between the files of a stream -------------------------------------

    def wait_for(self, older: FileState | None) -> None:
        """Read nothing until ``older`` has reached its end once more (or is done)."""
        self.predecessor = older
        self._waited_eofs = older.eof_count if older is not None else 0

    def is_blocked(self) -> bool:
        """True while an older file of the stream still has to reach its end."""
        older = self.predecessor
        if older is None:
            return False
        if older.state is State.DONE:
            self.predecessor = None
            return False
        if older.holds_fragment:
            return True  # its line may end there or here: wait until it is done
        if older.eof_count > self._waited_eofs:
            self.predecessor = None
            return False
        return True

    @property
    def closed(self) -> bool:
        return self.state is State.DONE

    @property
    def draining(self) -> bool:
        """True once no path names the file any more: it ends at its end."""
        return self.state in (State.ROTATED, State.DELETED)

    # -- transitions -------------------------------------------------------------

    def rotate(self, now: float, how: str) -> None:
        """ACTIVE -> ROTATED: its path names another file now, or none.  While TRUNCATED (its
        copy is read first), it is ROTATED once the copy is done."""
        if self.state is State.TRUNCATED and self._after_copy is State.ACTIVE:
            self._after_copy = State.ROTATED
        elif self.state is not State.ACTIVE:
            return
        else:
            self.state = State.ROTATED
        self.state_since = now
        self._waited_eofs = self.eof_count
        EVENTS.file_rotated(self.path, self.identity, self.read_offset, how)

    def resume(self, path: str) -> None:
        """ROTATED -> ACTIVE: the file is back under an included name."""
        if self.state is State.TRUNCATED and self._after_copy is State.ROTATED and not self.drain:
            self._after_copy = State.ACTIVE
            self.state_since = None
            EVENTS.file_resumed(path, self.identity, self.read_offset)
        elif self.state is State.ROTATED and not self.drain:
            self.state = State.ACTIVE
            self.state_since = None
            EVENTS.file_resumed(path, self.identity, self.read_offset)

    def deleted(self, now: float) -> None:
        """-> DELETED: unlinked; only the descriptor reaches the rest.  While TRUNCATED, DELETED
        once its copy is done."""
        if self.state is State.TRUNCATED and self._after_copy is not State.DELETED:
            self._after_copy = State.DELETED
            self.state_since = self.state_since if self.state_since is not None else now
            EVENTS.file_deleted(self.path, self.identity, self.read_offset)
        elif self.state in (State.ACTIVE, State.ROTATED):
            self.state = State.DELETED
            self.state_since = self.state_since if self.state_since is not None else now
            EVENTS.file_deleted(self.path, self.identity, self.read_offset)

    def truncate(self, new_size: int, head: str | None, copy: FileState | None) -> int:
        """ACTIVE -> TRUNCATED: the content was cut in place; returns bytes lost.

        ``head`` is the fingerprint of what the file holds now (None if it is
        too short to tell).  When the head is unchanged and the file is not
        empty, it shrank without being rewritten: the new generation resumes
        at the new size, not at 0, since what lies before was read.  ``copy``
        is a drain of the copy copytruncate left; without one, what was never
        read is lost.
        """
        lost = 0 if copy is not None else max(0, self.size_seen - self.read_offset)
        resume_at = new_size if (new_size > 0 and head is not None and head == self.head) else 0
        EVENTS.file_truncated(self.path, self.identity, self.read_offset, new_size)
        if lost:
            self.on_lost("truncated_before_read", self.path, lost, self.identity)
        self.generation += 1
        self.read_offset = resume_at
        self.size_seen = new_size
        self.head = head  # the new content's first line, when it is whole already
        self._head_len = None
        self.at_eof = False
        self.copy = copy
        self._after_copy = self._state_after_copy()
        self.state = State.TRUNCATED if copy is not None else self._after_copy
        return lost

    def wait_for_copy(self, drain: FileState) -> None:
        """Read nothing more until ``drain`` is done: generations written and copied away
        unseen before the current one (their drains read after the ended one's)."""
        self._after_copy = self._state_after_copy()
        self.state = State.TRUNCATED
        self.copy = drain

    def _state_after_copy(self) -> State:
        """Where a file waiting for a copy goes once it is read: rotated away or deleted stays so
        (also when that happened while it already waited), else ACTIVE."""
        prior = self._after_copy if self.state is State.TRUNCATED else self.state
        return prior if prior in (State.ROTATED, State.DELETED) else State.ACTIVE

    def copy_done(self) -> bool:
        """TRUNCATED -> ACTIVE once the copy was read to its end; True when reading may go on."""
        if self.state is not State.TRUNCATED:
            return True
        if self.copy is not None and self.copy.state is not State.DONE:
            return False
        self.copy = None
        self.state = self._after_copy
        return True

    def close(self, reason: str) -> None:
        """-> DONE: release the source; idempotent."""
        if self.state is State.DONE:
            return
        self.state = State.DONE
        try:
            self.source.close()
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "close")
        EVENTS.file_closed(self.path, self.identity, self.read_offset, reason)

    # -- observations ------------------------------------------------------------

    def confirm_head(self) -> str | None:
        """Take the head fingerprint once the generation has enough bytes; the head now."""
        if self.head is None and not self.source.compressed:
            try:
                self.head = fingerprint_head(self.source.pread(HEAD_BYTES, 0))
            except OSError as exc:
                EVENTS.file_failed(self.path, exc, "fingerprint")
        return self.head

    def head_unchanged(self) -> bool:
        """True while the file still starts with the line its head fingerprint was taken of.

        Reads only that line's bytes (cheap enough to ask before every chunk).
        """
        if self.head is None:
            return True
        try:
            if self._head_len is None:
                start = self.source.pread(HEAD_BYTES, 0)
                if fingerprint_head(start) != self.head:
                    return False
                newline = start.find(b"\n")
                self._head_len = newline + 1 if newline >= 0 else HEAD_BYTES
                return True
            return fingerprint_head(self.source.pread(self._head_len, 0)) == self.head
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fingerprint")
            return True  # unreadable now: the next read reports it

    def head_now(self) -> str | None:
        """The fingerprint of the file's head as it is now (None: too short, or unreadable)."""
        try:
            return fingerprint_head(self.source.pread(HEAD_BYTES, 0))
        except OSError as exc:
            EVENTS.file_failed(self.path, exc, "fingerprint")
            return None

    def is_unlinked(self) -> bool:
        """True when no name links to the file any more."""
        if self.source.compressed:
            return False
        try:
            return self.source.fstat().st_nlink == 0
        except OSError:
            return False

    def should_close(self, now: float, rotate_wait: float) -> bool:
        """True when draining, read to its end, and rotate_wait passed (a drain: at once)."""
        if not self.draining or not self.at_eof:
            return False
        if self.drain:
            return True
        return self.state_since is not None and now - self.state_since >= rotate_wait


def stat_size(fd: int) -> int:
    """The size of an open file (0 when it cannot be read)."""
    try:
        return os.fstat(fd).st_size
    except OSError:
        return 0
