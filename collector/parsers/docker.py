"""Docker json-file lines: ``{"log": "...\\n", "stream": "stdout", "time": "..."}``.

Docker splits lines longer than 16 KiB into several entries; every entry but
the last lacks the trailing newline in ``log`` and is a fragment.
"""

from __future__ import annotations

import orjson

from collector.parsers.entry import Columns, Entry, Rejected, timestamp_ns

__all__ = ["decode_docker_batch", "parse_docker_line", "render_docker_line"]


def parse_docker_line(line: bytes, offset: int) -> Entry | Rejected:
    """Decode one json-file line (without its newline); never raises."""
    error: str | None = None
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 (and NUL-padded lines); retry repaired.
        text = line.decode(errors="replace").replace("\x00", "")
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Rejected("invalid_json", str(exc)[:200])
        error = "invalid_utf8" if "\ufffd" in text else "nul_bytes"
    if type(doc) is not dict:
        return Rejected("invalid_json", "not a JSON object")
    log = doc.get("log")
    if type(log) is not str:
        return Rejected("invalid_json", "no string 'log' field")
    stream = doc.get("stream")
    if stream != "stdout" and stream != "stderr":
        stream = "stdout"
    time = doc.get("time")
    if type(time) is not str:
        return Rejected("invalid_timestamp", "no string 'time' field")
    try:
        ns = timestamp_ns(time)
    except (ValueError, OverflowError) as exc:
        return Rejected("invalid_timestamp", str(exc)[:200])
    if log[-1:] == "\n":
        return _new(Entry, (offset, time, ns, stream, log[:-1], False, False, error, None, 0))
    return _new(Entry, (offset, time, ns, stream, log, True, False, error, None, len(line) + 1))


_new = tuple.__new__
"""Builds an Entry from a full tuple without the NamedTuple ``__new__`` overhead."""


def render_docker_line(time: str, stream: str, log: str) -> bytes:
    """One json-file line with its newline (``log`` includes its own newline)."""
    return orjson.dumps({"log": log, "stream": stream, "time": time}) + b"\n"


def decode_docker_batch(lines: list[bytes], start: int, offset: int, out: Columns) -> tuple[int, int]:
    """Decode whole, well-formed lines from ``lines[start]`` (at ``offset``) into ``out``.

    Stops at the first line that is anything else (a fragment, bad JSON,
    another stream): the caller decodes it with :func:`parse_docker_line`.
    Returns the index and offset of that line (``len(lines)`` when none).
    """
    loads = orjson.loads
    offsets, times, times_ns, streams, messages = out.offsets, out.times, out.times_ns, out.streams, out.messages
    index = start
    for index in range(start, len(lines)):
        line = lines[index]
        try:
            doc = loads(line)
            log = doc["log"]
            time_text = doc["time"]
            stream = doc["stream"]
            if log[-1:] != "\n" or (stream != "stdout" and stream != "stderr"):
                break
            time_ns = timestamp_ns(time_text)
        except (ValueError, KeyError, TypeError, IndexError, OverflowError):
            break  # orjson.JSONDecodeError is a ValueError
        offsets.append(offset)
        times.append(time_text)
        times_ns.append(time_ns)
        streams.append(stream)
        messages.append(log[:-1])
        offset += len(line) + 1
    else:
        return len(lines), offset
    return index, offset
