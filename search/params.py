"""Request parameters to a validated :class:`SearchRequest`, guards applied.

Times are ``now``, ``now-15m``, ``now+1h`` (units s, m, h, d, w), epoch milliseconds, or
RFC 3339.  Cursors are opaque URL-safe strings.  Authorization is applied
here: the caller's namespace patterns become ``allowed_namespaces`` of every
request, whatever the query or filters ask for.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Sequence
from datetime import datetime

import orjson
from starlette.datastructures import QueryParams

from podlog.record import parse_timestamp_ns
from search.auth import Identity
from search.backends.base import FILTER_FIELDS, Cursor, SearchRequest
from search.config import SearchConfig
from search.errors import RequestError
from search.query import QueryGuards, parse_query

__all__ = [
    "MAX_CURSOR_INT",
    "MAX_TIME_NS",
    "auto_interval",
    "build_request",
    "decode_cursor",
    "encode_cursor",
    "int_param",
    "now_ns",
    "parse_time",
]

_RELATIVE = re.compile(r"^now(?:([+-])([0-9]{1,12})([smhdw]))?$")
_EPOCH_MS = re.compile(r"^[0-9]{1,16}$")
MAX_TIME_NS = 2**62
"""Latest time a parameter may name (year 2116): far beyond any log, and every sum stays in int64."""
MAX_CURSOR_INT = 2**63 - 1
_UNIT_NS = {
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_NICE_INTERVALS_NS = [
    n * 1_000_000
    for n in (
        1, 2, 5, 10, 20, 50, 100, 200, 500,
        1_000, 2_000, 5_000, 10_000, 15_000, 30_000,
        60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
        3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
        86_400_000, 172_800_000, 604_800_000,
    )
]  # fmt: skip
"""Histogram intervals, 1 ms to 1 week, in nanoseconds."""


def now_ns() -> int:
    """Wall-clock time in epoch nanoseconds."""
    return time.time_ns()


def parse_time(value: str, now: int, name: str = "time") -> int:
    """Epoch nanoseconds of ``value``; RequestError naming ``name`` if unreadable or out of range."""
    ns = _parse_time(value.strip(), now)
    if ns is None:
        raise RequestError(
            f"{name}: {value[:100]!r} is not a time; use now, now-15m, epoch milliseconds or RFC 3339 with a zone",
            parameter=name,
        )
    if not 0 <= ns <= MAX_TIME_NS:
        raise RequestError(f"{name}: {value[:100]!r} is out of range (1970 to 2116)", parameter=name)
    return ns


def _parse_time(text: str, now: int) -> int | None:
    match = _RELATIVE.match(text)
    if match:
        sign, amount, unit = match.groups()
        if not amount:
            return now
        delta = int(amount) * _UNIT_NS[unit]
        return now + delta if sign == "+" else now - delta
    if _EPOCH_MS.match(text):
        return int(text) * 1_000_000
    if len(text) > 64:
        return None
    try:
        return parse_timestamp_ns(text)
    except (ValueError, OverflowError):
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
    except (OverflowError, ValueError, OSError):
        return None


def int_param(params: QueryParams, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter within ``[low, high]``."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw.strip()):
        raise RequestError(f"{name}: {raw[:100]!r} is not an integer in {low}..{high}", parameter=name)
    value = int(raw)
    if not low <= value <= high:
        raise RequestError(f"{name}: {value} is outside {low}..{high}", parameter=name)
    return value


def encode_cursor(cursor: Cursor | None) -> str | None:
    """An opaque, URL-safe form of a cursor."""
    if cursor is None:
        return None
    return base64.urlsafe_b64encode(orjson.dumps(list(cursor))).rstrip(b"=").decode()


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor :func:`encode_cursor` made; RequestError for anything else."""
    if not text:
        return None
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise RequestError("cursor: not a cursor this API returned", parameter="cursor") from None
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or not isinstance(raw[0], int)
        or not isinstance(raw[1], int)
        or not isinstance(raw[2], str)
        or not all(-MAX_CURSOR_INT <= n <= MAX_CURSOR_INT for n in raw[:2])
    ):
        raise RequestError("cursor: not a cursor this API returned", parameter="cursor")
    return (raw[0], raw[1], raw[2])


def auto_interval(start_ns: int, end_ns: int, target_buckets: int = 60) -> int:
    """The smallest round interval that splits the range into at most ``target_buckets``."""
    span = max(1, end_ns - start_ns)
    for interval in _NICE_INTERVALS_NS:
        if span / interval <= target_buckets:
            return interval
    return _NICE_INTERVALS_NS[-1]


def guards_of(config: SearchConfig) -> QueryGuards:
    """Query guards from the settings."""
    guards = config.guards
    return QueryGuards(
        allow_leading_wildcards=guards.allow_leading_wildcards,
        allow_regex=guards.allow_regex,
        max_length=guards.max_query_length,
    )


def _filters(params: QueryParams) -> dict[str, Sequence[str]]:
    filters: dict[str, Sequence[str]] = {}
    for name in FILTER_FIELDS:
        values = [v for v in params.getlist(name) if v != ""]
        if values:
            filters[name] = values
    return filters


def build_request(
    params: QueryParams,
    identity: Identity,
    config: SearchConfig,
    *,
    now: int | None = None,
    size_default: int = 100,
    size_max: int | None = None,
    require_range_guard: bool = True,
) -> SearchRequest:
    """A validated request from query parameters, limited to the caller's namespaces."""
    now = now_ns() if now is None else now
    guards = config.guards
    end_raw = params.get("end")
    start_raw = params.get("start")
    end = parse_time(end_raw, now, "end") if end_raw else now + 60_000_000_000
    default_start = now - int(config.default_range_minutes * 60_000_000_000)
    start = parse_time(start_raw, now, "start") if start_raw else default_start
    if start >= end:
        raise RequestError("start must be before end", parameter="start")
    max_range = int(guards.max_range_hours * _UNIT_NS["h"])
    if require_range_guard and end - start > max_range:
        raise RequestError(
            f"time range is longer than the {guards.max_range_hours:g} h this server allows", parameter="start"
        )
    size = int_param(params, "size", size_default, 1, size_max or guards.max_page_size)
    return SearchRequest(
        query=parse_query(params.get("q"), guards_of(config)),
        start_ns=start,
        end_ns=end,
        filters=_filters(params),
        allowed_namespaces=None if "*" in identity.namespaces else list(identity.namespaces),
        size=size,
        search_after=decode_cursor(params.get("cursor")),
        timeout_seconds=guards.timeout_seconds,
    )
