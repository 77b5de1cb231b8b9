"""Long responses: the live tail (server-sent events) and NDJSON export.

The tail polls the backend on the server, never in the browser.  Each poll
asks for matches newer than ``(newest seen timestamp - lookback)`` and drops
the event ids it already sent, so a line indexed late (a slow node, a Kafka
backlog) still reaches the stream when its timestamp is within
``tail_lookback_seconds`` of the newest line seen.  The lines that matched when
the tail opened are seeded as seen, so the stream starts "from now".

A tail does not outlive its welcome: before each poll it asks whether its
credential still stands (:class:`TailLimits`), and it ends after
``guards.max_tail_seconds`` or ``guards.tail_idle_seconds`` without a line.
Each of these ends the stream with an ``event: error`` whose data says why
(``{"error": ..., "reason": "revoked" | "max_duration" | "idle"}``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import orjson

from podlog.record import Record
from search.backends.base import Cursor, SearchBackend, SearchRequest

__all__ = ["TailLimits", "TailState", "export_ndjson", "poll_tail", "seed_tail", "sse_event", "tail_events"]

_FAR_FUTURE_NS = 2**62
_PAGES_PER_POLL = 20
_HEARTBEAT_SECONDS = 15.0


def sse_event(event: str, data: object) -> bytes:
    """One server-sent event; JSON data on one line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _never() -> bool:
    return False


@dataclasses.dataclass(slots=True)
class TailLimits:
    """When a live tail must end, and (once it has) why."""

    max_seconds: float = math.inf
    """Longest the stream stays open."""
    idle_seconds: float = math.inf
    """Longest the stream stays open without sending a line."""
    revoked: Callable[[], bool] = _never
    """True once the credential that opened the tail no longer stands."""
    ended: str = ""
    """Why the stream ended: revoked, max_duration, idle, stopping; empty while open."""

    def check(self, opened: float, last_line: float, now: float) -> tuple[str, str] | None:
        """``(reason, message)`` when the stream must end now, else None."""
        if self.revoked():
            return "revoked", "your credential was revoked or your access changed; sign in again"
        if now - opened >= self.max_seconds:
            return "max_duration", f"a live tail stays open at most {self.max_seconds:g} s; reopen it to go on"
        if now - last_line >= self.idle_seconds:
            return "idle", f"no new line for {self.idle_seconds:g} s; the live tail was closed"
        return None


@dataclasses.dataclass(slots=True)
class TailState:
    """What a tail has sent: ids by timestamp, so the lookback window can be pruned."""

    lookback_ns: int
    seen: dict[str, int] = dataclasses.field(default_factory=dict)
    newest_ns: int | None = None
    resume: Cursor | None = None
    """Where to continue when the previous poll hit its page cap."""
    floor: Cursor | None = None
    """Lines at or before this existed when the tail opened (set when seeding was capped)."""

    def window_start(self, now: int) -> Cursor:
        if self.resume is not None:
            return self.resume
        base = self.newest_ns if self.newest_ns is not None else now
        start: Cursor = (base - self.lookback_ns, -1, "")
        if self.floor is not None and self.floor > start:
            return self.floor  # everything up to the floor is old: skip reading it
        return start

    def prune(self) -> None:
        if self.newest_ns is None:
            return
        floor = self.newest_ns - self.lookback_ns
        if len(self.seen) > 1024:
            self.seen = {k: ts for k, ts in self.seen.items() if ts >= floor}


async def poll_tail(
    backend: SearchBackend, request: SearchRequest, state: TailState, now: int, *, emit: bool
) -> list[Record]:
    """One poll: records not sent before, oldest first (none when ``emit`` is False)."""
    ranged = dataclasses.replace(request, start_ns=0, end_ns=_FAR_FUTURE_NS, search_after=None)
    after: Cursor | None = state.window_start(now)
    state.resume = None
    fresh: list[Record] = []
    for _ in range(_PAGES_PER_POLL):
        records, cursor = await backend.tail(ranged, after)
        for record in records:
            event_id = str((record.get("event") or {}).get("id") or "")
            ts = int(record.get("timestamp_ns") or 0)
            if event_id in state.seen or (state.floor is not None and _key(record) <= state.floor):
                continue
            state.seen[event_id] = ts
            if state.newest_ns is None or ts > state.newest_ns:
                state.newest_ns = ts
            if emit:
                fresh.append(record)
        if len(records) < request.size or cursor is None:
            break
        after = cursor
    else:
        state.resume = after
    state.prune()
    return fresh


def _key(record: Record) -> Cursor:
    log = record.get("log") or {}
    event = record.get("event") or {}
    return (int(record.get("timestamp_ns") or 0), int(log.get("offset") or 0), str(event.get("id") or ""))


async def seed_tail(backend: SearchBackend, request: SearchRequest, state: TailState, now: int) -> None:
    """Mark what already matches as sent, so the tail starts "from now".

    When the lookback window holds more lines than one poll reads, the rest
    are excluded by the newest match's cursor instead of one by one.
    """
    await poll_tail(backend, request, state, now, emit=False)
    if state.resume is not None:
        ranged = dataclasses.replace(request, start_ns=0, end_ns=_FAR_FUTURE_NS, search_after=None)
        _, newest = await backend.tail(ranged, None)
        state.floor = newest
        state.resume = None
        if newest is not None:
            state.newest_ns = newest[0]


async def tail_events(
    backend: SearchBackend,
    request: SearchRequest,
    *,
    poll_seconds: float,
    lookback_seconds: float,
    closing: asyncio.Event,
    limits: TailLimits | None = None,
    clock: Callable[[], int] = time.time_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[tuple[bytes, int]]:
    """Server-sent events and how many records each carries: ``ready`` once, then
    ``records`` batches, a comment line as keep-alive when idle, and an ``error``
    event last when ``limits`` end the stream."""
    limits = limits if limits is not None else TailLimits()
    state = TailState(lookback_ns=int(lookback_seconds * 1_000_000_000))
    await seed_tail(backend, request, state, clock())
    yield sse_event("ready", {"poll_seconds": poll_seconds}), 0
    opened = last_line = monotonic()
    idle = 0.0
    while not closing.is_set():
        now = monotonic()
        until_end = min(opened + limits.max_seconds, last_line + limits.idle_seconds) - now
        wait = max(0.0, min(poll_seconds, until_end))
        try:
            await asyncio.wait_for(closing.wait(), timeout=wait)
            break
        except TimeoutError:
            pass
        end = limits.check(opened, last_line, monotonic())
        if end is not None:
            limits.ended = end[0]
            yield sse_event("error", {"error": end[1], "reason": end[0]}), 0
            return
        records = await poll_tail(backend, request, state, clock(), emit=True)
        if records:
            idle = 0.0
            last_line = monotonic()
            yield sse_event("records", {"records": records}), len(records)
        else:
            idle += poll_seconds
            if idle >= _HEARTBEAT_SECONDS:
                idle = 0.0
                yield b": keep-alive\n\n", 0
    limits.ended = "stopping"


async def export_ndjson(backend: SearchBackend, request: SearchRequest, limit: int) -> AsyncIterator[bytes]:
    """Every match (up to ``limit``), newest first, one JSON record per line.

    Pages by cursor, so a long export holds no more than one page in memory.
    """
    sent = 0
    page_request = request
    while sent < limit:
        size = min(request.size, limit - sent)
        page = await backend.search(dataclasses.replace(page_request, size=size))
        if not page.hits:
            break
        chunk = b"".join(orjson.dumps(hit) + b"\n" for hit in page.hits)
        sent += len(page.hits)
        yield chunk
        if page.next_cursor is None:
            break
        page_request = dataclasses.replace(page_request, search_after=page.next_cursor)
