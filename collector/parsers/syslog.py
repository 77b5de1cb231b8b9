"""The syslog prefix of a host log line: time, host, app, pid (RFC 3164 and RFC 5424).

Lines as rsyslog and syslog-ng write them under ``/var/log``::

    <34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed      RFC 3164 (PRI optional)
    Dec  6 06:00:01 node-1 kubelet[812]: I1206 ...                traditional file format
    2026-12-06T06:00:01.123456+00:00 node-1 containerd[77]: ...  RFC 3339 file format
    <165>1 2026-12-06T06:00:01.003Z node-1 app 1234 ID47 [x@1 a="b"] message   RFC 5424

A traditional timestamp has no year: :func:`resolve_year` takes the year
that puts it closest before the reference time (the time the line is read),
allowing a day of clock skew into the future, so a ``Dec 31 23:59:59`` line
read on the 1st of January is last year's, and a ``Jan  1 00:00:01`` line
read a second before midnight on the 31st of December is next year's.

Bad input is data: :func:`parse_syslog_line` returns :class:`Rejected` for a
line with no recognisable prefix, never raises.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import NamedTuple

from collector.parsers.entry import Rejected

__all__ = ["SEVERITIES", "SyslogLine", "parse_syslog_line", "resolve_year"]

SEVERITIES = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
"""``level`` by the severity in PRI (``PRI % 8``)."""

_MONTHS = {name: index for index, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_SKEW = timedelta(days=1)
"""How far into the future (of the reference time) a year-less timestamp may lie."""

_PRI = re.compile(rb"<(\d{1,3})>")
_BSD_TIME = re.compile(rb"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? ")
_RFC3339 = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)"
)
_TAG = re.compile(rb"([^\s\[\]:]{1,128})(?:\[(\d{1,10})\])?: ?")


class SyslogLine(NamedTuple):
    """What a syslog prefix says, and the message after it."""

    time_ns: int
    """UTC epoch nanoseconds of the line's timestamp."""
    host: str | None
    app: str | None
    pid: int | None
    level: str | None
    """From PRI's severity, when the line has a PRI."""
    message: str
    """The text after the prefix (invalid UTF-8 replaced)."""
    year_guessed: bool
    """The timestamp had no year; :func:`resolve_year` chose it."""


def resolve_year(month: int, day: int, hour: int, minute: int, second: int, nanos: int,
                 reference: datetime) -> datetime | None:
    """The latest datetime with these fields no later than ``reference`` plus a day, or None.

    Years tried: the reference's next year (only a day of skew can reach it),
    then back from its own year to four years before (a 29 February exists).
    ``reference`` carries the time zone the fields are in.
    """
    limit = reference + _SKEW
    for year in (reference.year + 1, *range(reference.year, reference.year - 5, -1)):
        try:
            moment = datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=reference.tzinfo)
        except ValueError:
            continue
        if moment <= limit:
            return moment
    return None


def _fraction(digits: bytes | None) -> int:
    return 0 if not digits else int(digits.ljust(9, b"0")[:9])


def _epoch_ns(moment: datetime, nanos: int) -> int:
    seconds = int(moment.replace(microsecond=0).timestamp())
    return seconds * 1_000_000_000 + nanos


def _rfc3339(match: re.Match[bytes]) -> int | None:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    nanos = _fraction(match.group(7))
    zone = match.group(8)
    if zone == b"Z":
        offset = timedelta(0)
    else:
        sign = -1 if zone[:1] == b"-" else 1
        digits = zone[1:].replace(b":", b"")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    return _epoch_ns(moment, nanos)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def parse_syslog_line(line: bytes, reference: datetime, local: tzinfo = UTC) -> SyslogLine | Rejected:
    """The prefix of ``line``; ``reference`` (aware) resolves a year-less time in ``local``."""
    at = 0
    level: str | None = None
    pri = _PRI.match(line)
    if pri is not None:
        value = int(pri.group(1))
        if value > 191:
            return Rejected("invalid_syslog", f"PRI {value} over 191")
        level = SEVERITIES[value % 8]
        at = pri.end()
        if line[at : at + 2] == b"1 ":
            return _rfc5424(line, at + 2, level, reference)
    year_guessed = False
    stamp = _RFC3339.match(line, at)
    if stamp is not None:
        time_ns = _rfc3339(stamp)
        if time_ns is None:
            return Rejected("invalid_timestamp", _text(stamp.group(0)))
        at = stamp.end()
        if line[at : at + 1] != b" ":
            return Rejected("invalid_syslog", "no space after the timestamp")
        at += 1
    else:
        bsd = _BSD_TIME.match(line, at)
        if bsd is None:
            return Rejected("invalid_syslog", "no syslog timestamp")
        month = _MONTHS.get(bsd.group(1).decode("ascii"))
        if month is None:
            return Rejected("invalid_timestamp", _text(bsd.group(0)))
        nanos = _fraction(bsd.group(6))
        moment = resolve_year(month, int(bsd.group(2)), int(bsd.group(3)), int(bsd.group(4)),
                              int(bsd.group(5)), nanos, reference.astimezone(local))
        if moment is None:
            return Rejected("invalid_timestamp", _text(bsd.group(0)))
        time_ns = _epoch_ns(moment, nanos)
        year_guessed = True
        at = bsd.end()
    host_end = line.find(b" ", at)
    if host_end <= at:
        return SyslogLine(time_ns, None, None, None, level, _text(line[at:]), year_guessed)
    host = _text(line[at:host_end])
    at = host_end + 1
    tag = _TAG.match(line, at)
    if tag is None:
        return SyslogLine(time_ns, host, None, None, level, _text(line[at:]), year_guessed)
    pid = int(tag.group(2)) if tag.group(2) else None
    return SyslogLine(time_ns, host, _text(tag.group(1)), pid, level, _text(line[tag.end():]), year_guessed)


def _field(line: bytes, at: int) -> tuple[str | None, int]:
    end = line.find(b" ", at)
    if end < 0:
        end = len(line)
    value = line[at:end]
    return (None if value == b"-" else _text(value)), end + 1


def _rfc5424(line: bytes, at: int, level: str | None, reference: datetime) -> SyslogLine | Rejected:
    if line[at : at + 2] == b"- ":
        time_ns = int(reference.timestamp() * 1_000_000_000)
        at += 2
    else:
        stamp = _RFC3339.match(line, at)
        if stamp is None:
            return Rejected("invalid_timestamp", "RFC 5424 line without an RFC 3339 timestamp")
        parsed = _rfc3339(stamp)
        if parsed is None:
            return Rejected("invalid_timestamp", _text(stamp.group(0)))
        time_ns = parsed
        at = stamp.end() + 1
    host, at = _field(line, at)
    app, at = _field(line, at)
    procid, at = _field(line, at)
    _, at = _field(line, at)  # MSGID
    at = _skip_structured_data(line, at)
    message = line[at:]
    if message.startswith(b"\xef\xbb\xbf"):  # the BOM RFC 5424 allows before UTF-8 text
        message = message[3:]
    pid = int(procid) if procid is not None and procid.isdigit() and len(procid) <= 10 else None
    return SyslogLine(time_ns, host, app, pid, level, _text(message), False)


def _skip_structured_data(line: bytes, at: int) -> int:
    """The position after STRUCTURED-DATA (``-`` or ``[id k="v"]...``) and its space."""
    if line[at : at + 1] == b"-":
        return at + 2
    while line[at : at + 1] == b"[":
        at += 1
        while at < len(line):
            char = line[at : at + 1]
            if char == b"\\":
                at += 2
                continue
            if char == b'"':
                at += 1
                while at < len(line) and line[at : at + 1] != b'"':
                    at += 2 if line[at : at + 1] == b"\\" else 1
                at += 1
                continue
            at += 1
            if char == b"]":
                break
    return at + 1 if line[at : at + 1] == b" " else at
