"""Plain text lines: the whole line is the message, timestamped when read."""

from __future__ import annotations

from collector.parsers.entry import Entry, decode_text

__all__ = ["parse_plain_line"]


def parse_plain_line(line: bytes, offset: int, time: str, time_ns: int) -> Entry:
    """A plain line as an entry on stdout at the read time; never raises."""
    if line.endswith(b"\r"):
        line = line[:-1]
    message, error = decode_text(line)
    return Entry(offset, time, time_ns, "stdout", message, False, False, error)
