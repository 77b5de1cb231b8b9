"""CRI log lines: ``<RFC 3339 time> <stdout|stderr> <P|F>[:tags] <message>``.

Written by containerd and CRI-O; a ``P`` line is a fragment of a longer line
that continues in the next lines of the same stream until an ``F`` line.
"""

from __future__ import annotations

import re

from collector.parsers.entry import Columns, Entry, Rejected, decode_text, timestamp_ns

__all__ = ["decode_cri_batch", "decode_cri_text_batch", "looks_like_cri", "parse_cri_line", "render_cri_line"]

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
        return _new(Entry, (offset, time, ns, stream_name, "", True, False, None, raw, len(line) + 1))
    message, error = decode_text(raw) if raw else ("", None)
    return _new(Entry, (offset, time, ns, stream_name, message, False, False, error, raw, 0))


_new = tuple.__new__
"""Builds an Entry from a full tuple without the NamedTuple ``__new__`` overhead."""


def render_cri_line(time: str, stream: str, message: bytes, *, partial: bool = False) -> bytes:
    """One CRI line with its newline, as a runtime writes it (for tests and benchmarks)."""
    return b"%s %s %s %s\n" % (time.encode(), stream.encode(), b"P" if partial else b"F", message)


def decode_cri_batch(lines: list[bytes], start: int, offset: int, out: Columns) -> tuple[int, int]:
    """Decode whole (``F``) lines from ``lines[start]`` (at ``offset``) into ``out``.

    Stops at the first line that is anything else (a ``P`` fragment, invalid
    UTF-8, a NUL, another stream): the caller decodes it with
    :func:`parse_cri_line`.  Returns the index and offset of that line.
    """
    offsets, times, times_ns, streams, messages = out.offsets, out.times, out.times_ns, out.streams, out.messages
    index = start
    for index in range(start, len(lines)):
        line = lines[index]
        try:
            time_raw, stream_raw, tag, message_raw = line.split(b" ", 3)
            if tag != b"F":
                break
            if stream_raw == b"stdout":
                stream = "stdout"
            elif stream_raw == b"stderr":
                stream = "stderr"
            else:
                break
            time_text = time_raw.decode("ascii")
            message = message_raw.decode()
            if "\x00" in message:
                break
            time_ns = timestamp_ns(time_text)
        except (ValueError, IndexError, OverflowError):
            break  # UnicodeDecodeError is a ValueError
        offsets.append(offset)
        times.append(time_text)
        times_ns.append(time_ns)
        streams.append(stream)
        messages.append(message)
        offset += len(line) + 1
    else:
        return len(lines), offset
    return index, offset


def decode_cri_text_batch(lines: list[str], start: int, offset: int, out: Columns) -> tuple[int, int]:
    """:func:`decode_cri_batch` for the lines of an ASCII chunk already decoded as text.

    ASCII: a line's characters are its bytes, so offsets hold.
    """
    offsets, times, times_ns, streams, messages = out.offsets, out.times, out.times_ns, out.streams, out.messages
    index = start
    for index in range(start, len(lines)):
        line = lines[index]
        try:
            time_text, stream, tag, message = line.split(" ", 3)
            if tag != "F" or (stream != "stdout" and stream != "stderr"):
                break
            time_ns = timestamp_ns(time_text)
        except (ValueError, IndexError, OverflowError):
            break
        offsets.append(offset)
        times.append(time_text)
        times_ns.append(time_ns)
        streams.append(stream)
        messages.append(message)
        offset += len(line) + 1
    else:
        return len(lines), offset
    return index, offset
