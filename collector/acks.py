"""The collector's :class:`podlog.protocols.AckListener`: each input's marks to its store.

File marks (keyed by file identity) move :class:`collector.checkpoint.CheckpointStore`;
the journal's mark (key ``"journal"``) moves :class:`collector.journal_cursor.JournalCursorStore`.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.checkpoint import CheckpointStore
from collector.journal_cursor import JOURNAL_KEY, JournalCursorStore
from podlog.protocols import FileMark

__all__ = ["InputAcks"]


class InputAcks:
    """Routes acknowledged marks to the store of the input they came from."""

    def __init__(self, files: CheckpointStore, journal: JournalCursorStore | None = None) -> None:
        self.files = files
        self.journal = journal

    def acknowledged(self, marks: Mapping[str, FileMark]) -> None:
        """Every record before ``marks`` is durable downstream: move each input's position."""
        if self.journal is not None and JOURNAL_KEY in marks:
            self.journal.acknowledged(marks)
            marks = {key: mark for key, mark in marks.items() if key != JOURNAL_KEY}
        self.files.acknowledged(marks)

    async def durable(self) -> None:
        """Once the file checkpoints hold every acknowledgement so far (see
        :meth:`CheckpointStore.durable`).  A journal cursor written late only replays
        entries (same ``event.id``), so it is not waited for."""
        await self.files.durable()
