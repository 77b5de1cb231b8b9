"""Decode a file's lines in its format (detected from its first line), batch in, batch out.

A line that is not in the file's format is never dropped: it becomes a raw
text entry and its ``error_code`` is counted; repairs (invalid UTF-8, NUL
bytes) are counted the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from collector.events import EVENTS
from collector.parsers.cri import looks_like_cri, parse_cri_line
from collector.parsers.docker import parse_docker_line
from collector.parsers.entry import Entry, Rejected, now_timestamp
from collector.parsers.plain import parse_plain_line
from collector.parsers.syslog import SyslogLine, parse_syslog_line
from podlog.record import format_timestamp_ns

__all__ = ["FORMATS", "LineDecoder", "detect_format"]

FORMATS = ("cri", "docker", "plain", "syslog")


def detect_format(first_line: bytes) -> str:
    """``docker``, ``cri`` or ``plain`` from the first line of a file."""
    stripped = first_line.lstrip(b"\x00")
    if stripped.startswith(b'{"log":') or (stripped.startswith(b"{") and b'"log"' in stripped):
        return "docker"
    if looks_like_cri(stripped):
        return "cri"
    return "plain"


class LineDecoder:
    """Turns one file's raw lines into entries; counts every rejection and repair."""

    def __init__(self, path: str, fmt: str | None = None) -> None:
        self.path = path
        self.format = fmt
        """Detected on the first non-empty line when None."""
        self.syslog_zone: tzinfo | None = None
        """Set for a node file (:mod:`collector.hostfiles`): its format is ``syslog`` when its
        first line has a syslog prefix (year-less times in this zone), else ``plain``."""

    def _detect(self, line: bytes) -> str:
        if self.syslog_zone is None:
            return detect_format(line)
        found = parse_syslog_line(line, datetime.now(UTC), self.syslog_zone)
        return "syslog" if isinstance(found, SyslogLine) else "plain"

    def detect(self, lines: Sequence[bytes]) -> str | None:
        """Set the format from the first non-empty line, if not known yet."""
        if self.format is None:
            for line in lines:
                if line.strip(b"\x00 \t\r"):
                    self.format = self._detect(line)
                    break
        return self.format

    def decode(
        self, lines: Sequence[bytes], offsets: Sequence[int], open_streams: set[str] | None = None,
    ) -> list[Entry]:
        """Entries for ``lines`` (without newlines) starting at ``offsets``.

        ``open_streams`` are the streams with a fragment waiting for its end:
        the line that ends one is decoded (and its repairs counted) only once
        joined, by the joiner.
        """
        if not lines:
            return []
        if self.format is None:
            self.detect(lines)
        if self.format is None:
            self.format = "plain"  # nothing but empty lines so far
        now_ns = time.time_ns()
        now = now_timestamp(now_ns)
        out: list[Entry] = []
        append = out.append
        errors: dict[str, list[str]] = {}
        fmt = self.format
        if fmt == "plain":
            for line, offset in zip(lines, offsets, strict=True):
                entry = parse_plain_line(line, offset, now, now_ns)
                if entry.error is not None:
                    errors.setdefault(entry.error, []).append("")
                append(entry)
        elif fmt == "syslog":
            self._decode_syslog(lines, offsets, now, now_ns, out, errors)
        else:
            parse = parse_cri_line if fmt == "cri" else parse_docker_line
            joining = set(open_streams) if open_streams else set()
            for line, offset in zip(lines, offsets, strict=True):
                result = parse(line, offset)
                if type(result) is Entry:
                    if result.partial:
                        joining.add(result.stream)
                    elif result.stream in joining:
                        joining.discard(result.stream)  # the joiner decodes and counts it
                    elif result.error is not None:
                        errors.setdefault(result.error, []).append("")
                    append(result)
                    continue
                assert isinstance(result, Rejected)
                if not line.strip(b"\x00 \t\r"):
                    # Empty or NUL padding (a pre-allocated file after a crash).
                    errors.setdefault("empty_line", []).append("")
                    continue
                errors.setdefault(result.error_code, []).append(result.detail)
                raw = parse_plain_line(line, offset, now, now_ns)
                append(raw)
        for code, details in errors.items():
            EVENTS.line_rejected(code, self.path, len(details), details[0])
        return out

    def _decode_syslog(
        self, lines: Sequence[bytes], offsets: Sequence[int], now: str, now_ns: int, out: list[Entry],
        errors: dict[str, list[str]],
    ) -> None:
        """The whole line is the message; its time is the prefix's.  A line without a prefix
        (a continuation, a stray line) is kept at the read time and counted."""
        reference = datetime.fromtimestamp(now_ns / 1e9, UTC)
        zone = self.syslog_zone or UTC
        for line, offset in zip(lines, offsets, strict=True):
            entry = parse_plain_line(line, offset, now, now_ns)
            if entry.error is not None:
                errors.setdefault(entry.error, []).append("")
            if not line.strip(b"\x00 \t\r"):
                out.append(entry)  # kept, as a plain file keeps it
                continue
            found = parse_syslog_line(line[:512], reference, zone)
            if isinstance(found, Rejected):
                errors.setdefault(found.error_code, []).append(found.detail)
                out.append(entry)
                continue
            out.append(entry._replace(time=format_timestamp_ns(found.time_ns), time_ns=found.time_ns))
