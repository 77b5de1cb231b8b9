"""Join fragments into whole lines, separately per stream.

CRI runtimes write ``P`` fragments until an ``F`` line; Docker splits lines
over 16 KiB into entries without a trailing newline.  Both arrive here as
``Entry.partial``.  A joined line is bounded by ``max_bytes``: past it the
rest is cut (and counted) until the final fragment arrives.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.parsers.entry import Entry

__all__ = ["PartialJoiner"]


class _Pending:
    __slots__ = ("cut", "first", "parts", "size")

    def __init__(self, first: Entry) -> None:
        self.first = first
        self.parts = [first.message]
        self.size = len(first.message)
        self.cut = 0


class PartialJoiner:
    """Fragments in, whole lines out; one pending line per stream."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pending: dict[str, _Pending] = {}
        self.cut_chars = 0
        """Characters cut from over-long joined lines since the last :meth:`take_cut`."""

    def feed(self, entries: Sequence[Entry]) -> list[Entry]:
        """Whole lines completed by ``entries``, in the order they completed."""
        pending = self._pending
        if not pending:
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
                if entry.partial:
                    pending[entry.stream] = self._start(entry)
                else:
                    out.append(entry)
                continue
            self._add(open_line, entry.message)
            if not entry.partial:
                del pending[entry.stream]
                out.append(self._finish(open_line))
        return out

    def _start(self, entry: Entry) -> _Pending:
        open_line = _Pending(entry)
        if open_line.size > self.max_bytes:
            open_line.parts = [entry.message[: self.max_bytes]]
            open_line.cut = open_line.size - self.max_bytes
            open_line.size = self.max_bytes
        return open_line

    def _add(self, open_line: _Pending, message: str) -> None:
        room = self.max_bytes - open_line.size
        if len(message) <= room:
            open_line.parts.append(message)
            open_line.size += len(message)
        else:
            if room > 0:
                open_line.parts.append(message[:room])
                open_line.size += room
            open_line.cut += len(message) - max(room, 0)

    def _finish(self, open_line: _Pending) -> Entry:
        first = open_line.first
        self.cut_chars += open_line.cut
        return first._replace(
            message="".join(open_line.parts),
            partial=False,
            truncated=first.truncated or open_line.cut > 0,
        )

    def has_pending(self) -> bool:
        """True while some stream has fragments waiting for their end."""
        return bool(self._pending)

    def pending_offset(self) -> int | None:
        """Offset of the earliest fragment not yet joined, or None."""
        if not self._pending:
            return None
        return min(p.first.offset for p in self._pending.values())

    def flush(self) -> list[Entry]:
        """Every pending line as it is (for a file that ends mid-line)."""
        out = [self._finish(p) for p in self._pending.values()]
        self._pending.clear()
        out.sort(key=lambda e: e.offset)
        return out

    def take_cut(self) -> int:
        """Characters cut since the last call."""
        cut, self.cut_chars = self.cut_chars, 0
        return cut
