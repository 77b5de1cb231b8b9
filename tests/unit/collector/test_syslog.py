"""The syslog prefix of host log lines: RFC 3164, RFC 5424, the file formats, years across New Year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from collector.parsers.entry import Rejected
from collector.parsers.syslog import SyslogLine, parse_syslog_line, resolve_year

NOW = datetime(2026, 12, 6, 6, 0, 0, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def _parsed(line: bytes, reference: datetime = NOW, **kw: object) -> SyslogLine:
    result = parse_syslog_line(line, reference, **kw)  # type: ignore[arg-type]
    assert isinstance(result, SyslogLine), result
    return result


def test_traditional_file_line_gives_time_host_app_pid_and_message() -> None:
    """``Dec  6 05:59:58 node-1 kubelet[812]: text``: this year, as written."""
    line = _parsed(b"Dec  6 05:59:58 node-1 kubelet[812]: I1206 started")
    assert line.time_ns == _ns(datetime(2026, 12, 6, 5, 59, 58, tzinfo=UTC))
    assert (line.host, line.app, line.pid, line.level) == ("node-1", "kubelet", 812, None)
    assert line.message == "I1206 started"
    assert line.year_guessed


def test_rfc3164_with_pri_gives_the_level() -> None:
    """PRI 34 is facility 4, severity 2: crit; a tag without pid has no pid."""
    line = _parsed(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed")
    assert (line.level, line.app, line.pid) == ("crit", "su", None)
    assert line.message == "'su root' failed"


def test_rfc3339_file_format_keeps_fraction_and_offset() -> None:
    """rsyslog's high-precision format: the year and zone are in the line."""
    line = _parsed(b"2026-12-06T07:00:01.123456+01:00 node-1 containerd[77]: pulled")
    assert line.time_ns == _ns(datetime(2026, 12, 6, 6, 0, 1, tzinfo=UTC)) + 123_456_000
    assert (line.host, line.app, line.pid, line.message) == ("node-1", "containerd", 77, "pulled")
    assert not line.year_guessed


def test_rfc5424_with_structured_data_and_bom() -> None:
    """Version 1 lines: host, app, procid, msgid, structured data skipped, BOM dropped."""
    raw = b'<165>1 2003-10-11T22:14:15.003Z host.example.com evntslog 1234 ID47 [x@1 a="b]\\"c"][y@2] \xef\xbb\xbfhi'
    line = _parsed(raw)
    assert line.time_ns == _ns(datetime(2003, 10, 11, 22, 14, 15, tzinfo=UTC)) + 3_000_000
    assert (line.host, line.app, line.pid, line.level) == ("host.example.com", "evntslog", 1234, "notice")
    assert line.message == "hi"


def test_rfc5424_nil_values() -> None:
    """``-`` fields are absent; a nil timestamp is the reference time."""
    line = _parsed(b"<14>1 - - - - - - plain")
    assert (line.host, line.app, line.pid, line.message) == (None, None, None, "plain")
    assert line.time_ns == _ns(NOW)


def test_december_line_read_in_january_is_last_year() -> None:
    """A year-less Dec 31 line read on Jan 1 belongs to the year before."""
    reference = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    line = _parsed(b"Dec 31 23:59:59 h app: late", reference)
    assert line.time_ns == _ns(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))


def test_january_line_read_just_before_midnight_is_next_year() -> None:
    """A host clock a little ahead: a Jan 1 line read on Dec 31 is next year's."""
    reference = datetime(2026, 12, 31, 23, 59, 50, tzinfo=UTC)
    line = _parsed(b"Jan  1 00:00:05 h app: early", reference)
    assert line.time_ns == _ns(datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC))


def test_old_rotated_line_is_not_put_in_the_future() -> None:
    """A line from March read in December stays in this year's March."""
    assert _parsed(b"Mar  3 10:00:00 h app: x").time_ns == _ns(datetime(2026, 3, 3, 10, tzinfo=UTC))


def test_february_29_finds_the_last_leap_year() -> None:
    """A 29 February read in a common year is the last leap year's."""
    moment = resolve_year(2, 29, 12, 0, 0, 0, datetime(2027, 3, 1, tzinfo=UTC))
    assert moment == datetime(2024, 2, 29, 12, tzinfo=UTC)


def test_local_time_zone_applies_to_year_less_lines() -> None:
    """A traditional timestamp is in the host's zone when one is configured."""
    line = _parsed(b"Dec  6 07:00:00 h app: x", local=ZoneInfo("Europe/Berlin"))
    assert line.time_ns == _ns(datetime(2026, 12, 6, 6, tzinfo=UTC))
    assert datetime(2026, 12, 6, 7, tzinfo=timezone(timedelta(hours=1))).astimezone(UTC).hour == 6


def test_lines_without_a_prefix_are_rejected() -> None:
    """No timestamp, a PRI over 191, a month that is none: Rejected with a bounded code."""
    assert parse_syslog_line(b"just text", NOW) == Rejected("invalid_syslog", "no syslog timestamp")
    assert isinstance(parse_syslog_line(b"<999>Dec  6 05:59:58 h a: x", NOW), Rejected)
    rejected = parse_syslog_line(b"Foo  6 05:59:58 h a: x", NOW)
    assert isinstance(rejected, Rejected) and rejected.error_code == "invalid_timestamp"


@given(st.binary(max_size=200))
def test_any_bytes_give_a_line_or_rejected(data: bytes) -> None:
    """Arbitrary input never raises."""
    assert isinstance(parse_syslog_line(data, NOW), (SyslogLine, Rejected))


@given(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31)),
       st.integers(min_value=0, max_value=86_399))
def test_a_year_less_time_up_to_a_day_ahead_or_a_year_behind_resolves_to_itself(
    written: datetime, behind: int,
) -> None:
    """Render a traditional line, read it up to a day later: the same instant comes back."""
    written = written.replace(microsecond=0, tzinfo=UTC)
    reference = written + timedelta(seconds=behind) - timedelta(hours=12)
    raw = f"{written:%b} {written.day:2d} {written:%H:%M:%S} h app[1]: m".encode()
    assert _parsed(raw, reference).time_ns == _ns(written)
