"""Live tail bookkeeping and NDJSON export over an in-memory stand-in for the backend seam."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson

from podlog.record import Record
from search.backends.base import ContextResult, Cursor, HistogramBucket, SearchPage, SearchRequest
from search.streams import TailState, export_ndjson, poll_tail, seed_tail, tail_events
from tests.fixtures.records import BASE_NS, ContainerSpec, one_line

SPEC = ContainerSpec("a", "web-0", "app")
SECOND = 1_000_000_000


def key(record: Record) -> Cursor:
    return (record["timestamp_ns"], record["log"]["offset"], record["event"]["id"])


class ListBackend:
    """Records in a list; tail and search follow the SearchBackend contract (no query support)."""

    name = "list"

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.tail_calls = 0

    def add(self, ts: int, offset: int, message: str = "line") -> Record:
        record = one_line(SPEC, timestamp_ns=ts, offset=offset, message=message)
        self.records.append(record)
        return record

    async def search(self, request: SearchRequest) -> SearchPage:
        rows = sorted(
            (r for r in self.records if request.start_ns <= r["timestamp_ns"] < request.end_ns),
            key=key,
            reverse=True,
        )
        if request.search_after is not None:
            rows = [r for r in rows if key(r) < request.search_after]
        page = rows[: request.size]
        cursor = key(page[-1]) if len(page) == request.size else None
        return SearchPage(hits=page, total=len(rows), next_cursor=cursor)

    async def tail(self, request: SearchRequest, after: Cursor | None) -> tuple[list[Record], Cursor | None]:
        self.tail_calls += 1
        rows = sorted(self.records, key=key)
        if after is None:
            return [], (key(rows[-1]) if rows else None)
        newer = [r for r in rows if key(r) > after][: request.size]
        return newer, (key(newer[-1]) if newer else after)

    async def histogram(self, request: SearchRequest, interval_ns: int) -> list[HistogramBucket]:
        raise NotImplementedError

    async def top_values(self, request: SearchRequest, field: str, size: int) -> list[tuple[str, int]]:
        raise NotImplementedError

    async def context(
        self, event_id: str, before: int, after: int, allowed_namespaces: Sequence[str] | None
    ) -> ContextResult | None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def request(size: int = 10) -> SearchRequest:
    return SearchRequest(query=None, start_ns=0, end_ns=2**62, size=size)


async def test_seeded_tail_emits_only_new_lines_once() -> None:
    """Lines present at open are not sent; a new line is sent once, not on the next poll."""
    backend = ListBackend()
    for i in range(5):
        backend.add(BASE_NS + i, i * 10)
    state = TailState(lookback_ns=10 * SECOND)
    await seed_tail(backend, request(), state, BASE_NS)
    assert await poll_tail(backend, request(), state, BASE_NS, emit=True) == []
    new = backend.add(BASE_NS + SECOND, 100, "new")
    assert await poll_tail(backend, request(), state, BASE_NS, emit=True) == [new]
    assert await poll_tail(backend, request(), state, BASE_NS, emit=True) == []


async def test_late_line_within_lookback_is_sent_and_older_is_not() -> None:
    """A line arriving late with a timestamp inside the lookback window still streams."""
    backend = ListBackend()
    backend.add(BASE_NS + 20 * SECOND, 0)
    state = TailState(lookback_ns=10 * SECOND)
    await seed_tail(backend, request(), state, BASE_NS)
    late = backend.add(BASE_NS + 15 * SECOND, 50, "late")
    too_late = backend.add(BASE_NS + 5 * SECOND, 60, "too late")
    sent = await poll_tail(backend, request(), state, BASE_NS, emit=True)
    assert late in sent and too_late not in sent


async def test_busy_window_at_open_is_not_replayed() -> None:
    """When more lines match at open than one poll reads, none of them are sent later."""
    backend = ListBackend()
    for i in range(500):
        backend.add(BASE_NS + i, i)
    state = TailState(lookback_ns=10 * SECOND)
    await seed_tail(backend, request(size=10), state, BASE_NS)
    assert state.floor == key(backend.records[-1])
    assert await poll_tail(backend, request(size=10), state, BASE_NS, emit=True) == []
    new = backend.add(BASE_NS + 1000, 9999, "new")
    assert await poll_tail(backend, request(size=10), state, BASE_NS, emit=True) == [new]


async def test_tail_events_send_ready_then_records_and_end_on_close() -> None:
    """The stream opens with 'ready', carries new lines as 'records', and ends when closing is set."""
    backend = ListBackend()
    closing = asyncio.Event()
    stream = tail_events(backend, request(), poll_seconds=0.01, lookback_seconds=10, closing=closing)
    ready, count = await anext(stream)
    assert ready.startswith(b"event: ready") and count == 0
    backend.add(time.time_ns(), 1, "hello")
    chunk, count = await anext(stream)
    assert count == 1
    assert orjson.loads(chunk.split(b"data: ", 1)[1])["records"][0]["message"] == "hello"
    closing.set()
    assert [item async for item in stream] == []


async def test_export_pages_through_everything_up_to_the_limit() -> None:
    """Export walks pages by cursor, newest first, and stops at the limit."""
    backend = ListBackend()
    for i in range(25):
        backend.add(BASE_NS + i, i)
    lines = b"".join([chunk async for chunk in export_ndjson(backend, request(size=7), 1000)]).splitlines()
    assert [orjson.loads(line)["timestamp_ns"] for line in lines] == [BASE_NS + i for i in reversed(range(25))]
    capped = b"".join([chunk async for chunk in export_ndjson(backend, request(size=7), 10)]).splitlines()
    assert len(capped) == 10


async def test_tail_limits_end_the_stream_with_an_error_event_saying_why() -> None:
    """A revoked credential, the maximum duration and idleness each end the tail with their reason."""
    from search.streams import TailLimits

    for limits, reason in (
        (TailLimits(revoked=lambda: True), "revoked"),
        (TailLimits(max_seconds=0.05), "max_duration"),
        (TailLimits(idle_seconds=0.05), "idle"),
    ):
        stream = tail_events(
            ListBackend(), request(), poll_seconds=0.01, lookback_seconds=10, closing=asyncio.Event(), limits=limits
        )
        chunks = [chunk async for chunk, _ in stream]
        assert chunks[0].startswith(b"event: ready")
        assert chunks[-1].startswith(b"event: error")
        assert orjson.loads(chunks[-1].split(b"data: ", 1)[1])["reason"] == reason
        assert limits.ended == reason
