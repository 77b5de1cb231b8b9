"""The journald input: ``journalctl`` as a supervised child process.

::

    journalctl --output=json --all --follow --no-tail [--directory D]
               [--after-cursor <acked cursor>] <match> + <match> + ...
      -> stdout chunks -> lines -> journal_fields.parse_entry -> JournalRecords.build
      -> Batch(records, marks={"journal": FileMark(path=cursor, offset=seqnum)})
      -> the collector's queue -> sink                  (a full queue pauses reading)
    shipper acks -> JournalCursorStore.acknowledged -> journal.json

The child is the reader; this module supervises it: its stderr is logged
line by line (counted), and when it ends (or cannot start: ``journalctl``
missing) it is started again after an exponential backoff, from the last
entry read, so nothing read is read twice while podlog runs.  After a
restart of podlog, reading resumes after the *acknowledged* cursor: entries
read but not acknowledged are read again, with the same ``event.id``.

journalctl reads the journal files itself, so journald's rotation is its
business.  Before each start the resume cursor is checked: when its entry was
vacuumed, journalctl seeks to the nearest entry, which ``--after-cursor``
would skip, so reading starts *at* it (``--cursor``) and the gap is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from collector.events import JOURNAL_EVENTS
from collector.journal_cursor import JOURNAL_KEY, JournalCursorStore, journal_mark
from collector.journal_fields import JournalRecords, parse_entry
from collector.parsers.entry import Rejected
from podlog.logging import get_logger
from podlog.protocols import Batch
from podlog.record import Record

__all__ = ["JournalInput", "JournalSettings", "journalctl_args"]

log = get_logger("collector.journal")

_READ_BYTES = 1 << 20
_BACKOFF_FIRST = 0.2
_STOP_GRACE_SECONDS = 2.0
_OUTPUT_FIELDS = "MESSAGE,PRIORITY,_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_PID,_TRANSPORT"
"""Fields journalctl prints besides the ones it always prints (__CURSOR, timestamps, _BOOT_ID)."""


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """What the journal input needs from the collector's configuration."""

    command: str = "journalctl"
    """The journalctl program."""
    directory: str = ""
    """``--directory``; empty: the journal journalctl finds by itself."""
    matches: tuple[str, ...] = ()
    """Any of these (each one or more ``FIELD=value`` separated by spaces); empty: every entry."""
    read_from: str = "head"
    """Without a cursor: ``head`` (the whole journal) or ``tail`` (new entries only)."""
    max_entry_bytes: int = 1 << 26
    """Longest journalctl output line read; a longer one is skipped and counted."""
    batch_max_records: int = 2048
    """Records per batch at most."""
    restart_max_seconds: float = 30.0
    """Longest backoff before journalctl is started again."""


def journalctl_args(settings: JournalSettings, after_cursor: str | None, *, gone: bool = False) -> list[str]:
    """The journalctl command line: JSON from ``after_cursor`` (or the head or tail), following.

    ``gone``: the cursor's entry no longer exists (vacuumed): reading starts at the
    entry journalctl finds in its place, which ``--after-cursor`` would skip.
    """
    args = [settings.command, "--output=json", "--all", "--follow", "--no-pager",
            f"--output-fields={_OUTPUT_FIELDS}"]
    if settings.directory:
        args.append(f"--directory={settings.directory}")
    if after_cursor:
        # --follow alone starts 10 entries before the end, after a cursor too.
        args += ["--no-tail", f"--{'cursor' if gone else 'after-cursor'}={after_cursor}"]
    elif settings.read_from == "tail":
        args.append("--lines=0")
    else:
        args.append("--no-tail")
    for index, match in enumerate(settings.matches):
        if index:
            args.append("+")
        args.extend(match.split())
    return args


class JournalInput:
    """Reads the journal into batches handed to ``put``; a lifecycle Service."""

    name = "journal"

    def __init__(
        self, settings: JournalSettings, *, builder: JournalRecords, cursors: JournalCursorStore,
        put: Callable[[Batch], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.builder = builder
        self.cursors = cursors
        self.put = put
        self.read_cursor: str | None = None
        """The cursor of the last entry handed on (where a restarted child resumes)."""
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        """Children started so far."""
        self._stopping = asyncio.Event()
        self._stderr_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the acknowledged cursor: reading resumes after it."""
        position = await asyncio.to_thread(self.cursors.load)
        if position is not None:
            self.read_cursor = position.cursor

    async def run(self) -> None:
        """Run journalctl until stopped, restarting it with backoff whenever it ends."""
        failures = 0
        while not self._stopping.is_set():
            read = await self._run_child()
            if self._stopping.is_set():
                return
            failures = 0 if read else failures + 1
            delay = min(_BACKOFF_FIRST * 2 ** min(failures, 16), self.settings.restart_max_seconds)
            JOURNAL_EVENTS.reader_failed(self._last_failure[0], self._last_failure[1], delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def stop(self) -> None:
        """Stop the child (by its pid) and stop reading; idempotent."""
        self._stopping.set()
        await self._end_child()

    async def flush_cursor(self) -> None:
        """Persist the acknowledged cursor if it moved (the collector's checkpoint timer)."""
        await self.cursors.flush_async()

    # -- the child -------------------------------------------------------------

    _last_failure: tuple[str, str] = ("exited", "")

    async def _cursor_gone(self, cursor: str) -> bool:
        """True when the entry at ``cursor`` is no longer in the journal (vacuumed, rotated away).

        journalctl seeks to the nearest entry then; ``--after-cursor`` would skip that one.
        Any failure here says False: the reader's own start reports it.  An empty journal
        says True: the entry is gone, and whatever comes first is to be read.
        """
        args = [self.settings.command, "--output=json", "--no-pager", "--lines=1",
                "--output-fields=__CURSOR", f"--cursor={cursor}"]
        if self.settings.directory:
            args.append(f"--directory={self.settings.directory}")
        try:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            return False
        try:
            async with asyncio.timeout(_STOP_GRACE_SECONDS * 5):
                out, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, 9)
            await process.wait()
            return False
        if process.returncode != 0:
            return False
        first = parse_entry(out.split(b"\n", 1)[0]) if out.strip() else None
        found = None if first is None or isinstance(first, Rejected) else first.cursor
        return found != cursor

    async def _run_child(self) -> bool:
        """One child from start to end; True when it delivered at least one entry."""
        gone = False
        if self.read_cursor is not None and await self._cursor_gone(self.read_cursor):
            JOURNAL_EVENTS.cursor_gone(self.read_cursor)
            gone = True
        args = journalctl_args(self.settings, self.read_cursor, gone=gone)
        try:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self._last_failure = ("missing", f"cannot run {args[0]!r}: {exc}")
            return False
        self.process = process
        self.starts += 1
        JOURNAL_EVENTS.reader_started(process.pid, self.read_cursor)
        assert process.stderr is not None
        assert process.stdout is not None
        self._stderr_task = asyncio.create_task(self._log_stderr(process.pid, process.stderr),
                                                name="journal-stderr")
        delivered = False
        try:
            delivered = await self._read(process.stdout)
        finally:
            await self._end_child()
        code = process.returncode
        self._last_failure = ("exited", f"journalctl exited with code {code}")
        return delivered

    async def _end_child(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, 15)
            try:
                async with asyncio.timeout(_STOP_GRACE_SECONDS):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, 9)
                await process.wait()
        task, self._stderr_task = self._stderr_task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        JOURNAL_EVENTS.reader_stopped(process.pid, process.returncode)

    async def _log_stderr(self, pid: int, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the stream limit: logged in part
                line = await stream.read(4096)
            if not line:
                return
            JOURNAL_EVENTS.reader_stderr(pid, line.decode("utf-8", "replace").rstrip())

    # -- reading -------------------------------------------------------------

    async def _read(self, stdout: asyncio.StreamReader) -> bool:
        """Read the child's output to its end (or until stopped); True if an entry came."""
        pending = bytearray()
        skipping = False
        delivered = False
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                reading = asyncio.ensure_future(stdout.read(_READ_BYTES))
                await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                    return delivered
                chunk = reading.result()
                if not chunk:
                    return delivered
                lines, pending, skipping = self._split(pending, chunk, skipping)
                if lines and await self._deliver(lines):
                    delivered = True
        finally:
            stopping.cancel()

    def _split(self, pending: bytearray, chunk: bytes, skipping: bool) -> tuple[list[bytes], bytearray, bool]:
        """Complete lines of ``pending + chunk``; a line longer than the limit is skipped whole."""
        limit = self.settings.max_entry_bytes
        lines: list[bytes] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if skipping:
                skipping = False
            elif pending:
                pending += chunk[start:end]
                if len(pending) <= limit:
                    lines.append(bytes(pending))
                else:
                    JOURNAL_EVENTS.entry_rejected("line_too_long", f"{len(pending)} bytes")
                pending = bytearray()
            elif end - start <= limit:
                lines.append(chunk[start:end])
            else:
                JOURNAL_EVENTS.entry_rejected("line_too_long", f"{end - start} bytes")
            start = end + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > limit:
                JOURNAL_EVENTS.entry_rejected("line_too_long", f"over {limit} bytes")
                pending, skipping = bytearray(), True
        return lines, pending, skipping

    async def _deliver(self, lines: list[bytes]) -> bool:
        """Build the records of ``lines`` and hand them on in batches; True if any entry."""
        records: list[Record] = []
        cursor: str | None = None
        seqnum = 0
        nbytes = 0
        any_entry = False
        for line in lines:
            nbytes += len(line) + 1
            if not line.strip():
                continue
            entry = parse_entry(line)
            if isinstance(entry, Rejected):
                JOURNAL_EVENTS.entry_rejected(entry.error_code, entry.detail)
                continue
            record, truncated, invalid = self.builder.build(entry)
            if truncated:
                JOURNAL_EVENTS.entry_flagged("truncated", entry.cursor)
            if invalid:
                JOURNAL_EVENTS.entry_flagged("invalid_utf8", entry.cursor)
            records.append(record)
            cursor, seqnum = entry.cursor, entry.seqnum
            any_entry = True
            if len(records) >= self.settings.batch_max_records:
                await self._hand_on(records, cursor, seqnum)
                records = []
        JOURNAL_EVENTS.entries_read(len(lines), nbytes)
        if records and cursor is not None:
            await self._hand_on(records, cursor, seqnum)
        return any_entry

    async def _hand_on(self, records: list[Record], cursor: str, seqnum: int) -> None:
        # Records of one group (unit, identifier, pid, level) side by side: one schema 2
        # message per group, its maps once.  The order within a group is the journal's.
        records.sort(key=_identity)
        await self.put(Batch(records=records, marks={JOURNAL_KEY: journal_mark(cursor, seqnum)}))
        self.read_cursor = cursor


def _identity(record: Record) -> str:
    return str(record["log"]["file"]["identity"])
