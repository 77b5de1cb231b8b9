"""Request parameters: times, cursors, intervals, guards and the namespace limit."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from search.auth import Identity
from search.config import GuardConfig, SearchConfig
from search.errors import RequestError
from search.params import auto_interval, build_request, decode_cursor, encode_cursor, parse_time

NOW = 1_795_737_600_000_000_000
MIN = 60_000_000_000
ADMIN = Identity("admin", ("*",))
TEAM = Identity("team", ("a", "a-*"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("now-15m", NOW - 15 * MIN),
        ("now+1h", NOW + 60 * MIN),
        ("now-2d", NOW - 2 * 24 * 60 * MIN),
        ("1795737600123", NOW + 123_000_000),
        ("2026-11-27T00:00:00.5Z", NOW + 500_000_000),
        ("2026-11-27T01:00:00+01:00", NOW),
        ("2026-11-27T00:00:00.000000007Z", NOW + 7),
    ],
)
def test_times_in_every_accepted_form(text: str, expected: int) -> None:
    """Relative, epoch-millisecond and RFC 3339 times give epoch nanoseconds."""
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "now-5x", "2026-11-27T00:00:00", ""])
def test_unreadable_times_are_request_errors(text: str) -> None:
    """A time without a zone or in no known form is refused, naming the parameter."""
    with pytest.raises(RequestError, match="start"):
        parse_time(text, NOW, "start")


@settings(max_examples=100)
@given(st.integers(0, 2**62), st.integers(0, 2**40), st.text(max_size=30))
def test_cursor_round_trips(ts: int, offset: int, event_id: str) -> None:
    """An encoded cursor decodes to the same triple."""
    assert decode_cursor(encode_cursor((ts, offset, event_id))) == (ts, offset, event_id)


@pytest.mark.parametrize("text", ["x", "WzEsMl0", "eyJhIjoxfQ"])
def test_foreign_cursors_are_refused(text: str) -> None:
    """Anything the API did not hand out is a 400, not a crash."""
    with pytest.raises(RequestError, match="cursor"):
        decode_cursor(text)


def test_auto_interval_is_round_and_bounded() -> None:
    """The interval is the smallest round step giving at most the wanted bucket count."""
    assert auto_interval(0, 15 * MIN) == 15_000_000_000
    assert auto_interval(0, 60 * MIN) == 60_000_000_000
    assert auto_interval(0, 24 * 60 * MIN) == 30 * MIN
    assert auto_interval(0, 10 * 1_000_000) == 1_000_000
    for span in (1, 10**9, 10**12, 10**15):
        assert span / auto_interval(0, span) <= 60 or auto_interval(0, span) == 604_800_000_000_000


def test_request_applies_defaults_filters_and_namespace_limit() -> None:
    """Defaults fill the range and size; repeated filters collect; the identity limits namespaces."""
    config = SearchConfig()
    params = QueryParams("q=level:error&pod=x&pod=y&namespace=&size=50")
    request = build_request(params, TEAM, config, now=NOW)
    assert request.start_ns == NOW - 15 * MIN
    assert request.end_ns > NOW
    assert request.filters == {"pod": ["x", "y"]}
    assert request.allowed_namespaces == ["a", "a-*"]
    assert request.size == 50
    assert build_request(QueryParams(""), ADMIN, config, now=NOW).allowed_namespaces is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=now-1h&end=now-2h", "start must be before end"),
        ("start=now-2d", "longer than the 24 h"),
        ("size=0", "size"),
        ("size=5001", "outside 1..5000"),
        ("size=many", "not an integer"),
    ],
)
def test_guards_refuse_requests(query: str, message: str) -> None:
    """Ranges beyond the maximum, inverted ranges and bad sizes are refused."""
    config = dataclasses.replace(SearchConfig(), guards=GuardConfig(max_range_hours=24))
    with pytest.raises(RequestError, match=message):
        build_request(QueryParams(query), ADMIN, config, now=NOW)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("start", "99999999999999999999"),
        ("start", "now-" + "9" * 5000 + "m"),
        ("end", "now+9999999999w"),
        ("start", "9999-12-31T23:59:59Z"),
        ("start", "1969-12-31T23:59:59Z"),
        ("end", "\u0661\u0662"),
    ],
)
def test_times_beyond_the_range_are_a_request_error_naming_the_parameter(name: str, value: str) -> None:
    """Times outside 1970-2116, huge amounts and non-ASCII digits are RequestErrors, never overflows."""
    from search.errors import RequestError
    from search.params import parse_time

    with pytest.raises(RequestError) as caught:
        parse_time(value, 1_700_000_000_000_000_000, name)
    assert caught.value.parameter == name
