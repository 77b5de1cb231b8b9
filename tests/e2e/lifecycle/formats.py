"""The bytes container runtimes write: CRI (containerd) lines and Docker json-file entries.

Both runtimes cut lines longer than 16 KiB, at exact 16384-byte boundaries
of the message bytes, whatever character that cuts in two:

* containerd (``internal/cri/io/logger.go`` ``redirectLogs``, max line size
  16384): ``<RFC 3339, 9 fraction digits> <stream> P <16384 bytes>\\n`` per
  full piece, each with its own ``time.Now()``, then ``... F <rest>\\n``.  A
  line of exactly 16384 bytes is one ``F`` line; 32768 bytes are ``P`` + ``F``.
* dockerd (``daemon/logger/copier.go``, 16 KiB buffer): a partial message for
  every full 16384-byte buffer without a newline, all sharing the first
  partial's timestamp, then the last message with what remains (possibly
  nothing) and ``\\n`` appended (``jsonfilelog.marshalMessage``).  A line of
  exactly 16384 bytes is a partial and then ``{"log":"\\n",...}``.
  ``jsonlog.ffjsonWriteJSONBytesAsString`` writes every byte that is not
  valid UTF-8 as ``\\ufffd``: a character cut at a boundary is gone from the
  file, replaced on disk, so the text a collector can deliver has U+FFFD
  there (:func:`docker_entries` returns that text).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import NamedTuple

__all__ = [
    "MAX_PIECE_BYTES",
    "Entries",
    "cri_entries",
    "cri_time",
    "docker_entries",
    "docker_time",
    "go_json_string",
    "piece_text",
]

MAX_PIECE_BYTES = 16 * 1024
"""containerd's default max_container_log_line_size and dockerd's copier buffer."""

_TEXT_ESCAPES = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\udc80-\udcff]')


class Entries(NamedTuple):
    """What one log line becomes on disk."""

    data: list[bytes]
    """The framed pieces (CRI lines or json-file entries), each ending in ``\\n``."""
    text: str
    """The line's text as a collector can rebuild it from those bytes."""


def _seconds(ns: int) -> tuple[str, int]:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"), fraction


def cri_time(ns: int) -> str:
    """containerd's ``2006-01-02T15:04:05.000000000Z07:00`` in UTC: always nine digits."""
    base, fraction = _seconds(ns)
    return f"{base}.{fraction:09d}Z"


def docker_time(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC, as json-file writes it: trailing zeros trimmed."""
    base, fraction = _seconds(ns)
    if fraction == 0:
        return f"{base}Z"
    return f"{base}.{f'{fraction:09d}'.rstrip('0')}Z"


def _cut(message: bytes) -> list[bytes]:
    return [message[i : i + MAX_PIECE_BYTES] for i in range(0, len(message), MAX_PIECE_BYTES)] or [b""]


def cri_entries(message: bytes, stream: str, time_ns: int, step_ns: int = 1000) -> Entries:
    """The CRI lines of one message: ``P`` pieces of 16384 bytes, then ``F``; each piece stamped anew."""
    pieces = _cut(message)
    data = []
    for number, piece in enumerate(pieces):
        tag = "F" if number == len(pieces) - 1 else "P"
        data.append(f"{cri_time(time_ns + number * step_ns)} {stream} {tag} ".encode() + piece + b"\n")
    return Entries(data, message.decode("utf-8"))


def _escape_text(match: re.Match[str]) -> str:
    char = match.group()
    if "\udc80" <= char <= "\udcff":  # a byte that starts no valid character (surrogateescape)
        return "\\ufffd"
    if char in '"\\':
        return "\\" + char
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    return f"\\u{ord(char):04x}"


def go_json_string(data: bytes) -> bytes:
    """``jsonlog.ffjsonWriteJSONBytesAsString``: a JSON string as dockerd writes it.

    ``"``, ``\\``, ``\\n``, ``\\r`` escaped by letter, other control bytes and
    ``<``, ``>``, ``&`` as ``\\u00XX``, U+2028/U+2029 as ``\\u202X``, and every
    byte that does not start a valid UTF-8 character as ``\\ufffd`` (Go's
    ``DecodeRune`` gives RuneError of size 1 exactly for the bytes Python's
    strict decoder cannot place, which ``surrogateescape`` maps one by one).
    """
    text = data.decode("utf-8", "surrogateescape")
    return b'"' + _TEXT_ESCAPES.sub(_escape_text, text).encode() + b'"'


def _json_entry(log: bytes, stream: str, time_ns: int) -> bytes:
    return b'{"log":' + go_json_string(log) + f',"stream":"{stream}","time":"{docker_time(time_ns)}"}}\n'.encode()


def docker_entries(message: bytes, stream: str, time_ns: int) -> Entries:
    """The json-file entries of one message, and the text they hold (U+FFFD where dockerd put it)."""
    logs = []
    rest = message
    while len(rest) >= MAX_PIECE_BYTES:  # a full copier buffer without a newline: a partial message
        logs.append(rest[:MAX_PIECE_BYTES])
        rest = rest[MAX_PIECE_BYTES:]
    logs.append(rest + b"\n")  # the last message; jsonfilelog appends the newline
    data = [_json_entry(log, stream, time_ns) for log in logs]
    text = "".join(json.loads(entry)["log"] for entry in data)
    return Entries(data, text.removesuffix("\n"))


def piece_text(data: bytes, *, docker: bool) -> bytes:
    """The message bytes one framed piece holds (a partial line's share, without the final newline)."""
    if docker:
        log: str = json.loads(data)["log"]
        return log.removesuffix("\n").encode("utf-8", "surrogatepass")
    return data.split(b" ", 3)[3].removesuffix(b"\n")
