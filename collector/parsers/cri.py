"""CRI log lines: ``<RFC 3339 time> <stdout|stderr> <P|F>[:tags] <message>``.

Written by containerd and CRI-O; a ``P`` line is a fragment of a longer line
that continues in the next lines of the same stream until an ``F`` line.
"""

from __future__ import annotations

import re

from collector.parsers.entry import Entry, Rejected, decode_text, timestamp_ns

__all__ = ["looks_like_cri", "parse_cri_line", "render_cri_line"]

_CRI = re.compile(rb"^\d{4}-\d\d-\d\dT\S+ (?:stdout|stderr) [PF]")


def looks_like_cri(line: bytes) -> bool:
    """True when ``line`` starts like a CRI log line."""
    return _CRI.match(line) is not None


def parse_cri_line(line: bytes, offset: int) -> Entry | Rejected:
    """Decode one CRI line (without its newline); never raises."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return Rejected("invalid_cri", "fewer than three space-separated fields")
    stream = parts[1]
    if stream == b"stdout":
        stream_name = "stdout"
    elif stream == b"stderr":
        stream_name = "stderr"
    else:
        return Rejected("invalid_cri", "stream is neither stdout nor stderr")
    tag = parts[2]
    if tag[:1] == b"P":
        partial = True
    elif tag[:1] == b"F":
        partial = False
    else:
        return Rejected("invalid_cri", "tag is neither P nor F")
    try:
        time = parts[0].decode("ascii")
        ns = timestamp_ns(time)
    except (UnicodeDecodeError, ValueError, OverflowError) as exc:
        return Rejected("invalid_timestamp", str(exc)[:200])
    raw = parts[3] if len(parts) == 4 else b""
    if partial:
        # A fragment may end inside a UTF-8 character (runtimes cut at 16 KiB):
        # it is decoded once, joined with the rest (collector.partial).
        return _new(Entry, (offset, time, ns, stream_name, "", True, False, None, raw))
    message, error = decode_text(raw) if raw else ("", None)
    return _new(Entry, (offset, time, ns, stream_name, message, False, False, error, raw))


_new = tuple.__new__
"""Builds an Entry from a full tuple without the NamedTuple ``__new__`` overhead."""


def render_cri_line(time: str, stream: str, message: bytes, *, partial: bool = False) -> bytes:
    """One CRI line with its newline, as a runtime writes it (for tests and benchmarks)."""
    return b"%s %s %s %s\n" % (time.encode(), stream.encode(), b"P" if partial else b"F", message)
