"""Join fragments into whole lines, separately per stream, as bytes.

CRI runtimes write ``P`` fragments until an ``F`` line, cut at 16 KiB byte
boundaries, so a UTF-8 character may be split between two fragments: they
are joined as bytes (``Entry.raw``) and decoded once.  Docker splits lines
over 16 KiB into entries without a trailing newline; both arrive here as
``Entry.partial``.  A joined line is bounded by ``max_bytes``: past it the
rest is cut (on a character boundary, and counted) until the final fragment.

A fragment still open when its file rotates away continues in the next file
of the same container: :meth:`PartialJoiner.take_open` hands it over and
:meth:`PartialJoiner.carry` takes it in, so the line comes out whole, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collector.parsers.entry import Entry, decode_text
from podlog.record import utf8_boundary

__all__ = ["Carried", "PartialJoiner"]

Carried = tuple[bytes, str, int]
"""An open line handed to the next file: its bytes so far, its time text and epoch ns."""


class _Pending:
    """An open line: bytes parts (CRI), or text parts (Docker's JSON strings are text already)."""

    __slots__ = ("carried", "cut", "first", "held", "parts", "size", "text")

    def __init__(self, first: Entry, carried: Carried | None = None) -> None:
        self.first = first
        self.carried = carried
        """What the previous file handed over, when the line began there."""
        self.text = first.raw is None
        self.parts: list[Any] = []
        prefix = carried[0] if carried is not None else b""
        if prefix:
            self.parts.append(prefix.decode("utf-8", "surrogatepass") if self.text else prefix)
        self.size = len(self.parts[0]) if self.parts else 0
        self.cut = 0
        self.held = 0
        """Bytes of this file its fragments take (a carried prefix lies in the previous file)."""

    def joined(self) -> bytes:
        """The line so far as bytes."""
        if self.text:
            return "".join(self.parts).encode("utf-8", "surrogatepass")
        return b"".join(self.parts)


def message_bytes(entry: Entry) -> bytes:
    """The bytes of an entry's message as written."""
    if entry.raw is not None:
        return entry.raw
    return entry.message.encode("utf-8", "surrogatepass")


class PartialJoiner:
    """Fragments in, whole lines out; one pending line per stream."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pending: dict[str, _Pending] = {}
        self._carried: dict[str, Carried] = {}
        """Fragments handed over from the previous file of the container, by stream."""
        self.cut_bytes = 0
        """Bytes cut from over-long joined lines since the last :meth:`take_cut`."""
        self.errors: dict[str, int] = {}
        """Repairs (``invalid_utf8``, ``nul_bytes``) of joined lines since :meth:`take_errors`."""

    def feed(self, entries: Sequence[Entry]) -> list[Entry]:
        """Whole lines completed by ``entries``, in the order they completed."""
        pending = self._pending
        if not pending and not self._carried:
            # Fast path: no fragment open and none in this batch.
            for entry in entries:
                if entry.partial:
                    break
            else:
                return entries if isinstance(entries, list) else list(entries)
        out: list[Entry] = []
        for entry in entries:
            open_line = pending.get(entry.stream)
            if open_line is None:
                carried = self._carried.pop(entry.stream, None)
                if carried is None:
                    if not entry.partial:
                        out.append(entry)
                        continue
                    open_line = pending[entry.stream] = _Pending(entry)
                else:
                    # The line began in the previous file: its time, this file's offset.
                    first = entry._replace(time=carried[1], time_ns=carried[2])
                    open_line = pending[entry.stream] = _Pending(first, carried)
            self._add(open_line, entry.message if open_line.text else message_bytes(entry))
            open_line.held += entry.size
            if not entry.partial:
                del pending[entry.stream]
                out.append(self._finish(open_line, entry))
        return out

    def _add(self, open_line: _Pending, data: Any) -> None:
        room = self.max_bytes - open_line.size
        if len(data) <= room:
            open_line.parts.append(data)
            open_line.size += len(data)
        else:
            keep = max(room, 0) if open_line.text else utf8_boundary(data, max(room, 0))
            if keep > 0:
                open_line.parts.append(data[:keep])
                open_line.size += keep
            open_line.size = max(open_line.size, self.max_bytes)  # nothing more fits
            open_line.cut += len(data) - keep

    def _finish(self, open_line: _Pending, last: Entry | None) -> Entry:
        first = open_line.first
        self.cut_bytes += open_line.cut
        if open_line.text:
            message, error = "".join(open_line.parts), first.error
        else:
            message, error = decode_text(b"".join(open_line.parts))
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
        truncated = first.truncated or open_line.cut > 0 or (last is not None and last.truncated)
        return first._replace(message=message, partial=False, truncated=truncated, error=error, raw=None)

    def has_pending(self) -> bool:
        """True while some stream has fragments waiting for their end."""
        return bool(self._pending) or bool(self._carried)

    def pending_streams(self) -> set[str]:
        """Streams whose next entry continues an open line."""
        return set(self._pending) | set(self._carried)

    def pending_offset(self) -> int | None:
        """Offset of the earliest fragment of this file not yet joined, or None."""
        if not self._pending:
            return None
        return min(p.first.offset for p in self._pending.values())

    def pending_held(self) -> int:
        """Bytes of this file that the open lines' fragments take."""
        return sum(p.held for p in self._pending.values())

    def pending_starts(self) -> dict[str, int]:
        """Offset of each stream's open fragment in this file."""
        return {stream: p.first.offset for stream, p in self._pending.items()}

    def take_open(self) -> dict[str, Carried]:
        """Every open line by stream, for the next file of the container; clears."""
        out = dict(self._carried)
        for stream, open_line in self._pending.items():
            first = open_line.first
            out[stream] = (open_line.joined(), first.time, first.time_ns)
        self._pending.clear()
        self._carried.clear()
        return out

    def holds_carried(self) -> bool:
        """True while a line an earlier file handed over is not complete yet."""
        return bool(self._carried) or any(p.carried is not None for p in self._pending.values())

    def take_carried(self) -> dict[str, Carried]:
        """What earlier files handed over, as handed over (open lines' own fragments left out):
        for a drain that reads this file's fragments again from its copy."""
        out = dict(self._carried)
        for stream, open_line in self._pending.items():
            if open_line.carried is not None:
                out[stream] = open_line.carried
        self._carried.clear()
        return out

    def drop_carried(self, stream: str) -> None:
        """The line handed over for ``stream`` was emitted whole before a restart (its end in
        this file is skipped): nothing is left to join it to."""
        self._carried.pop(stream, None)

    def carry(self, fragments: dict[str, Carried]) -> None:
        """Open lines of the previous file: the next entry of each stream continues one."""
        self._carried.update(fragments)

    def flush(self, end_offset: int = 0) -> list[Entry]:
        """Every pending line as it is (for a file that ends mid-line).

        A carried fragment that found no continuation in this file becomes a
        line of its own at ``end_offset`` (where no other line of the file starts).
        """
        out = [self._finish(p, None) for p in self._pending.values()]
        self._pending.clear()
        for stream, (data, time, time_ns) in self._carried.items():
            message, error = decode_text(data)
            out.append(Entry(end_offset, time, time_ns, stream, message, False, False, error))
        self._carried.clear()
        out.sort(key=lambda e: e.offset)
        return out

    def take_cut(self) -> int:
        """Bytes cut since the last call."""
        cut, self.cut_bytes = self.cut_bytes, 0
        return cut

    def take_errors(self) -> dict[str, int]:
        """Repairs of joined lines since the last call."""
        errors, self.errors = self.errors, {}
        return errors
