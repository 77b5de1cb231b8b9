"""An embedded index in a temporary directory, and a compact record builder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podlog.record import Record, SourcePosition, format_timestamp_ns, make_record
from podlog.retention import RetentionConfig
from search.backends.base import SearchRequest
from search.backends.embedded import EmbeddedIndex
from search.config import EmbeddedConfig
from search.query import QueryGuards, parse_query

T0 = 1_795_737_600_000_000_000
"""2026-11-27T00:00:00Z."""

DAY_NS = 86_400_000_000_000


class Clock:
    """The index's "now" for retention, set by the test (records stamped around ``T0``
    stay within retention whatever the date the tests run on)."""

    def __init__(self, now_ns: int = T0 + DAY_NS) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


GUARDS = QueryGuards(allow_leading_wildcards=True, allow_regex=True)


def rec(
    offset: int,
    ts: int,
    message: str = "hello",
    *,
    namespace: str | None = "shop",
    pod: str = "web-1",
    level: str | None = "info",
    stream: str = "stdout",
    identity: str = "1:10:aa",
    generation: int = 0,
    **extra: Any,
) -> Record:
    """A schema-1 record of one file position."""
    kubernetes: dict[str, Any] = {"pod": {"name": pod}, "container": {"name": "app"}}
    if namespace is not None:
        kubernetes["namespace"] = namespace
    record = make_record(
        position=SourcePosition("test", "node-1", identity, generation, offset),
        timestamp=format_timestamp_ns(ts),
        timestamp_ns=ts,
        message=message,
        stream=stream,
        path="/var/log/containers/x.log",
        kubernetes=kubernetes,
        level=level,
        json=extra.pop("json", None),
    )
    record.update(extra)
    return record


def req(q: str | None = None, **kwargs: Any) -> SearchRequest:
    """A request over all time unless told otherwise."""
    base: dict[str, Any] = {"start_ns": 0, "end_ns": 2**62, "size": 1000}
    base.update(kwargs)
    return SearchRequest(query=parse_query(q, GUARDS), **base)


def open_index(directory: Path, **config: Any) -> EmbeddedIndex:
    """An index (not started) under ``directory``."""
    retention = config.pop("retention", RetentionConfig())
    clock = config.pop("clock", None) or Clock()
    return EmbeddedIndex(EmbeddedConfig(**config), retention, directory, clock=clock)


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[EmbeddedIndex]:
    """A started, empty embedded index."""
    idx = open_index(tmp_path)
    await idx.start()
    try:
        yield idx
    finally:
        await idx.stop()
