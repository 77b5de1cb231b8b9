"""Where journal reading resumes: the cursor, moved only by acknowledgements.

The journal's position travels through the spool as a :class:`FileMark`
under the key :data:`JOURNAL_KEY`: ``path`` holds the journald cursor (an
opaque string ``journalctl --after-cursor`` takes) and ``offset`` the entry's
sequence number, so the spool keeps it with the records exactly as it keeps
a file's offset, and hands it back once they are durable downstream.  Only
then does :meth:`JournalCursorStore.acknowledged` move the cursor; a crash
before that replays the entries after the previous cursor, with the same
``event.id``.

The file (``<state_dir>/checkpoints/journal.json``) is versioned JSON,
written to a temporary file, fsynced and renamed over the old one.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import orjson

from collector.events import EVENTS
from podlog.files import write_atomically
from podlog.protocols import FileMark

__all__ = ["JOURNAL_CURSOR_VERSION", "JOURNAL_KEY", "JournalCursorStore", "JournalPosition", "journal_mark"]

JOURNAL_KEY = "journal"
"""The key (and identity) of the journal's mark in a :class:`podlog.protocols.Batch`."""
JOURNAL_CURSOR_VERSION = 1


class JournalPosition(NamedTuple):
    """An acknowledged journal position."""

    cursor: str
    seqnum: int


def _seqnum_id(cursor: str) -> str | None:
    for part in cursor.split(";"):
        if part.startswith("s="):
            return part[2:]
    return None


def journal_mark(cursor: str, seqnum: int) -> FileMark:
    """The mark of the journal after the entry at ``cursor``."""
    return FileMark(path=cursor, identity=JOURNAL_KEY, generation=0, offset=seqnum)


class JournalCursorStore:
    """The journal's acknowledged cursor, persisted (an :class:`podlog.protocols.AckListener`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "journal.json"
        self.tmp_path = directory / f"journal.json.tmp.{os.getpid()}"
        self.position: JournalPosition | None = None
        self.write_on_ack = False
        """Write at each acknowledgement (set while stopping); else :meth:`flush_async` writes."""
        self.dirty = False
        self._lock = threading.Lock()

    def load(self) -> JournalPosition | None:
        """Read the persisted cursor; None (reading starts anew) when absent or unreadable."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            EVENTS.checkpoint_invalid(str(self.path), str(exc))
            return None
        try:
            doc = orjson.loads(data)
            version = doc.get("version")
            position = JournalPosition(str(doc["cursor"]), int(doc["seqnum"]))
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            EVENTS.checkpoint_invalid(str(self.path), str(exc))
            return None
        if version != JOURNAL_CURSOR_VERSION:
            EVENTS.checkpoint_invalid(str(self.path), f"version {version!r}, expected {JOURNAL_CURSOR_VERSION}")
            return None
        self.position = position
        EVENTS.checkpoint_loaded(str(self.path), 1, "journal")
        return self.position

    def acknowledged(self, marks: Mapping[str, FileMark]) -> None:
        """Every record before ``marks`` is durable downstream: move the cursor."""
        mark = marks.get(JOURNAL_KEY)
        if mark is None or (self.position is not None and mark.path == self.position.cursor):
            return
        if self.position is not None and _seqnum_id(mark.path) == _seqnum_id(self.position.cursor) \
                and mark.offset <= self.position.seqnum:
            # After a crash, batches the spool still held are acknowledged before the same
            # entries read again: the cursor never goes back.
            return
        self.position = JournalPosition(mark.path, mark.offset)
        self.dirty = True
        if self.write_on_ack:
            self.flush()

    def _snapshot(self) -> bytes | None:
        if not self.dirty or self.position is None:
            return None
        self.dirty = False
        return orjson.dumps({
            "version": JOURNAL_CURSOR_VERSION,
            "cursor": self.position.cursor,
            "seqnum": self.position.seqnum,
            "written": time.time(),
        })

    def flush(self) -> None:
        """Write the cursor when it moved since the last write."""
        data = self._snapshot()
        if data is not None:
            self._write(data)

    async def flush_async(self) -> None:
        """:meth:`flush` with the write and fsync in a thread."""
        data = self._snapshot()
        if data is not None:
            try:
                await asyncio.to_thread(self._write, data)
            except asyncio.CancelledError:
                self.dirty = True
                raise

    def _write(self, data: bytes) -> None:
        with self._lock:
            try:
                write_atomically(self.path, self.tmp_path, data)
            except OSError as exc:
                EVENTS.checkpoint_failed(str(self.path), exc)
                self.dirty = True
                return
        EVENTS.checkpoint_written(str(self.path), 1)
