"""Acknowledged marks reach the store of the input they came from."""

from __future__ import annotations

from pathlib import Path

from collector.acks import InputAcks
from collector.checkpoint import CheckpointStore
from collector.journal_cursor import JOURNAL_KEY, JournalCursorStore, journal_mark
from podlog.protocols import FileMark


def test_journal_mark_moves_the_cursor_and_file_marks_the_checkpoints(tmp_path: Path) -> None:
    """One acknowledgement holding both: the cursor moves, the file offset moves, neither sees the other."""
    files = CheckpointStore(tmp_path / "checkpoints")
    files.register("1:2:h", "/var/log/syslog", dev=1, ino=2, head="h", generation=0, offset=0, size=100)
    journal = JournalCursorStore(tmp_path / "checkpoints")
    acks = InputAcks(files, journal)
    acks.acknowledged({
        "1:2:h": FileMark(path="/var/log/syslog", identity="1:2:h", generation=0, offset=40),
        JOURNAL_KEY: journal_mark("s=a;i=5", 5),
    })
    assert files.offset("1:2:h") == 40
    assert journal.position is not None and journal.position.cursor == "s=a;i=5"
    assert files.offset(JOURNAL_KEY) is None


def test_without_a_journal_input_marks_go_to_the_checkpoints_only(tmp_path: Path) -> None:
    """No journal store: a journal mark is ignored by the file checkpoints, as any unknown file."""
    files = CheckpointStore(tmp_path / "checkpoints")
    InputAcks(files).acknowledged({JOURNAL_KEY: journal_mark("s=a;i=5", 5)})
    assert files.entries == {}
