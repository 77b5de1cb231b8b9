"""What every line decoder returns: an :class:`Entry`, or a :class:`Rejected` line.

Bad input is data: a decoder never raises for any bytes.  A line that is not
its format at all is :class:`Rejected` (the stage ships it as raw text and
counts the ``error_code``); a line that decodes with a repair (invalid UTF-8
replaced) is an :class:`Entry` whose ``error`` names the repair.
"""

from __future__ import annotations

from typing import NamedTuple

from podlog.record import format_timestamp_ns, parse_timestamp_ns

__all__ = ["SCALE", "SECOND_NS", "Columns", "Entry", "Rejected", "decode_text", "timestamp_ns"]


class Entry(NamedTuple):
    """One decoded line (or fragment) of a container stream."""

    offset: int
    """Byte offset of the line's first byte in the file."""
    time: str
    """Timestamp as the runtime wrote it (or the read time for plain text)."""
    time_ns: int
    """UTC epoch nanoseconds of ``time``."""
    stream: str
    """``stdout`` or ``stderr``."""
    message: str
    """The text, without the trailing newline."""
    partial: bool = False
    """A fragment to be joined with the following ones of the same stream."""
    truncated: bool = False
    """The line was longer than ``max_line_bytes`` and was cut."""
    error: str | None = None
    """An error code when the line decoded only after a repair (``invalid_utf8``)."""
    raw: bytes | None = None
    """The message's bytes as written (CRI): fragments are joined as bytes, decoded once."""
    size: int = 0
    """Bytes of the line in the file, newline included; set on fragments only (what an open
    line holds back of the file)."""


class Rejected(NamedTuple):
    """A line that is not in the file's format."""

    error_code: str
    """Bounded reason: ``invalid_json``, ``invalid_cri``, ``invalid_timestamp``..."""
    detail: str
    """Human-readable specifics for the log line."""


def decode_text(raw: bytes) -> tuple[str, str | None]:
    """``raw`` as text, and ``invalid_utf8``/``nul_bytes`` when it had to be repaired."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = raw.decode(errors="replace")
        if "\x00" in text:
            text = text.replace("\x00", "")
        return text, "invalid_utf8"
    if "\x00" in text:
        return text.replace("\x00", ""), "nul_bytes"
    return text, None


SECOND_NS: dict[str, int] = {}
"""Epoch ns of whole seconds by their ``YYYY-MM-DDTHH:MM:SS`` text (recent ones)."""


def timestamp_ns(value: str) -> int:
    """Epoch ns of an RFC 3339 timestamp; fast for the ``...ss.fffffffffZ`` form.

    Raises ``ValueError`` for anything that is not a timestamp.
    """
    size = len(value)
    if 21 < size <= 30 and value[-1] == "Z" and value[19] == ".":
        frac = value[20:-1]
        if frac.isdigit():
            head = value[:19]
            second_ns = SECOND_NS.get(head)
            if second_ns is None:
                second_ns = parse_timestamp_ns(head + "Z")
                if len(SECOND_NS) > 8192:
                    SECOND_NS.clear()
                SECOND_NS[head] = second_ns
            ns: int = second_ns + int(frac) * SCALE[size - 22]
            return ns
    return parse_timestamp_ns(value)


SCALE = [10 ** (9 - digits) for digits in range(1, 10)]
"""Multiplier of a fraction with 1..9 digits to nanoseconds."""


def now_timestamp(now_ns: int) -> str:
    """The read time as a record timestamp, for lines that carry none."""
    return format_timestamp_ns(now_ns)


class Columns:
    """Decoded whole lines of one batch, column by column (the fast path's output)."""

    __slots__ = ("messages", "offsets", "streams", "times", "times_ns")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        """Byte offset of each line in its file."""
        self.times: list[str] = []
        """Timestamp text as the runtime wrote it."""
        self.times_ns: list[int] = []
        """UTC epoch nanoseconds of each timestamp."""
        self.streams: list[str] = []
        """``stdout`` or ``stderr``."""
        self.messages: list[str] = []
        """The text, without the trailing newline."""

    def __len__(self) -> int:
        return len(self.offsets)
