"""The SearchBackend contract, run against OpenSearch (each flavour) and the embedded index.

Expected results come from a plain-Python reading of the same records, so
each backend is checked against the meaning of the query, not against the
other backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from podlog.record import Record, get_field
from search.backends.base import SearchRequest
from search.query import parse_query
from tests.fixtures.records import BASE_NS, MS, ContainerSpec, container_lines, one_line
from tests.integration.search.conftest import CORPUS, LoadedBackend

END_NS = BASE_NS + 10_000 * MS


def newest_first(records: Sequence[Record]) -> list[Record]:
    return sorted(
        records,
        key=lambda r: (r["timestamp_ns"], r["log"]["offset"], r["event"]["id"]),
        reverse=True,
    )


def ids(records: Sequence[Record]) -> list[str]:
    return [r["event"]["id"] for r in records]


def request(q: str | None = None, **kwargs: Any) -> SearchRequest:
    base: dict[str, Any] = {"start_ns": BASE_NS - MS, "end_ns": END_NS, "size": 1000}
    base.update(kwargs)
    return SearchRequest(query=parse_query(q), **base)


def ns(record: Record) -> str:
    return str(record["kubernetes"]["namespace"])


def pod(record: Record) -> str:
    return str(record["kubernetes"]["pod"]["name"])


def container(record: Record) -> str:
    return str(record["kubernetes"]["container"]["name"])


def node(record: Record) -> str:
    return str(record["kubernetes"]["node"]["name"])


def words(record: Record) -> list[str]:
    text = str(record["message"]).lower()
    return text.replace("/", " ").replace("=", " ").replace(":", " ").split()


QUERIES: list[tuple[str, Callable[[Record], bool]]] = [
    ('"connection refused"', lambda r: "connection refused" in r["message"]),
    ("alice", lambda r: "alice" in words(r)),
    ("level:error", lambda r: r["level"] == "error"),
    ("level:error AND namespace:a", lambda r: r["level"] == "error" and ns(r) == "a"),
    ("level:error OR level:warning", lambda r: r["level"] in ("error", "warning")),
    ("NOT level:info", lambda r: r["level"] != "info"),
    ("timeout -namespace:b", lambda r: "timeout" in words(r) and ns(r) != "b"),
    ("pod:web-* AND stream:stderr", lambda r: pod(r).startswith("web-") and r["stream"] == "stderr"),
    ("log.offset:[400 TO 900]", lambda r: 400 <= r["log"]["offset"] <= 900),
    ("offset:{400 TO 900}", lambda r: 400 < r["log"]["offset"] < 900),
    ("offset:>=2000", lambda r: r["log"]["offset"] >= 2000),
    ("labels.app:db", lambda r: get_field(r, "kubernetes.labels")["app"] == "db"),
    (
        'container:(api OR postgres) AND "healthz ok"',
        lambda r: container(r) in ("api", "postgres") and r["message"] == "healthz ok",
    ),
    ("(cache OR slow) AND node:node-2", lambda r: bool({"cache", "slow"} & set(words(r))) and node(r) == "node-2"),
]  # fmt: skip


async def test_search_returns_full_records_newest_first(backend: LoadedBackend) -> None:
    """An empty query returns every record in range, as indexed, newest first."""
    page = await backend.backend.search(request())
    assert page.total == len(CORPUS)
    assert ids(page.hits) == ids(newest_first(CORPUS))
    by_id = {r["event"]["id"]: r for r in CORPUS}
    for hit in page.hits[:20]:
        assert hit == by_id[hit["event"]["id"]]


@pytest.mark.parametrize(("q", "predicate"), QUERIES, ids=[q for q, _ in QUERIES])
async def test_query_syntax_matches_its_meaning(
    backend: LoadedBackend, q: str, predicate: Callable[[Record], bool]
) -> None:
    """Phrases, words, field:value, AND/OR/NOT, wildcards and ranges select what they say."""
    expected = ids(newest_first([r for r in CORPUS if predicate(r)]))
    assert expected, f"the corpus has no match for {q}; the test would prove nothing"
    page = await backend.backend.search(request(q))
    assert ids(page.hits) == expected
    assert page.total == len(expected)


async def test_filters_match_any_value_and_combine(backend: LoadedBackend) -> None:
    """Repeated values of a filter are OR-ed; different filters are AND-ed."""
    filters = {"pod": ["web-0", "db-0"], "level": ["error", "warning"]}
    expected = [
        r for r in CORPUS if r["kubernetes"]["pod"]["name"] in ("web-0", "db-0") and r["level"] in ("error", "warning")
    ]
    page = await backend.backend.search(request(filters=filters))
    assert ids(page.hits) == ids(newest_first(expected))


async def test_time_range_is_start_inclusive_end_exclusive(backend: LoadedBackend) -> None:
    """Only records with start <= timestamp_ns < end are returned."""
    start, end = BASE_NS + 10 * MS - 500_000, BASE_NS + 20 * MS - 500_000
    expected = [r for r in CORPUS if start <= r["timestamp_ns"] < end]
    page = await backend.backend.search(request(start_ns=start, end_ns=end))
    assert ids(page.hits) == ids(newest_first(expected))


async def test_paging_with_cursor_has_no_gaps_or_repeats(backend: LoadedBackend) -> None:
    """Walking pages by next_cursor yields every match once, in order, across equal timestamps."""
    collected: list[Record] = []
    cursor = None
    for _ in range(100):
        page = await backend.backend.search(request(size=7, search_after=cursor))
        collected += page.hits
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids(collected) == ids(newest_first(CORPUS))


async def test_histogram_counts_add_up(backend: LoadedBackend) -> None:
    """Bucket counts match the records in each interval and sum to the total."""
    interval = 10 * MS
    buckets = await backend.backend.histogram(request("level:info"), interval)
    matching = [r for r in CORPUS if r["level"] == "info"]
    expected: dict[int, int] = {}
    for record in matching:
        start = record["timestamp_ns"] // interval * interval
        expected[start] = expected.get(start, 0) + 1
    assert {b.start_ns: b.count for b in buckets if b.count} == expected
    assert sum(b.count for b in buckets) == len(matching)


async def test_top_values_count_matches(backend: LoadedBackend) -> None:
    """Top values of a filter field are counted among matches only, most frequent first."""
    top = await backend.backend.top_values(request("level:error"), "pod", 10)
    expected: dict[str, int] = {}
    for record in CORPUS:
        if record["level"] == "error":
            pod = record["kubernetes"]["pod"]["name"]
            expected[pod] = expected.get(pod, 0) + 1
    assert dict(top) == expected
    counts = [count for _, count in top]
    assert counts == sorted(counts, reverse=True)


async def test_context_is_file_order_of_the_same_stream(backend: LoadedBackend) -> None:
    """Context lines come from the anchor's file and stream, in offset order, across equal timestamps."""
    same_file = sorted(
        (r for r in CORPUS if r["kubernetes"]["container"]["name"] == "app" and r["kubernetes"]["namespace"] == "a"),
        key=lambda r: r["log"]["offset"],
    )
    stdout = [r for r in same_file if r["stream"] == "stdout"]
    anchor = stdout[len(stdout) // 2]
    index = stdout.index(anchor)
    result = await backend.backend.context(anchor["event"]["id"], 4, 3, None)
    assert result is not None
    assert result.anchor == anchor
    assert ids(result.before) == ids(stdout[index - 4 : index])
    assert ids(result.after) == ids(stdout[index + 1 : index + 4])
    # Equal timestamps around the anchor do not reorder the lines.
    timestamps = [r["timestamp_ns"] for r in [*result.before, anchor, *result.after]]
    assert len(set(timestamps)) < len(timestamps)


async def test_context_of_unknown_or_forbidden_record_is_none(backend: LoadedBackend) -> None:
    """Context is None for an id that does not exist or lies outside the allowed namespaces."""
    in_b = next(r for r in CORPUS if r["kubernetes"]["namespace"] == "b")
    assert await backend.backend.context("no-such-id", 2, 2, None) is None
    assert await backend.backend.context(in_b["event"]["id"], 2, 2, ["a"]) is None
    assert await backend.backend.context(in_b["event"]["id"], 2, 2, ["b*"]) is not None


async def test_allowed_namespaces_limit_every_call(backend: LoadedBackend) -> None:
    """A request limited to namespace a never sees b in search, histogram or top values."""
    limited = request(allowed_namespaces=["a"], filters={"namespace": ["a", "b"]})
    page = await backend.backend.search(limited)
    assert page.hits and {h["kubernetes"]["namespace"] for h in page.hits} == {"a"}
    in_a = sum(1 for r in CORPUS if r["kubernetes"]["namespace"] == "a")
    assert page.total == in_a
    buckets = await backend.backend.histogram(limited, 1000 * MS)
    assert sum(b.count for b in buckets) == in_a
    top = await backend.backend.top_values(limited, "namespace", 10)
    assert dict(top) == {"a": in_a}
    nothing = await backend.backend.search(request(allowed_namespaces=[]))
    assert nothing.hits == [] and nothing.total == 0


async def test_tail_returns_lines_indexed_after_it_started(fresh_backend: LoadedBackend) -> None:
    """tail(after=None) marks now; a later call returns only newer matching lines, oldest first."""
    spec = ContainerSpec("a", "tail-0", "app")
    old = container_lines(spec, 5, start_ns=BASE_NS)
    await fresh_backend.add(old)
    tail_request = request("level:error", start_ns=0, end_ns=2**62, size=100)
    records, cursor = await fresh_backend.backend.tail(tail_request, None)
    assert records == []
    assert cursor is not None
    new_ts = BASE_NS + 60_000 * MS
    new = [
        one_line(spec, timestamp_ns=new_ts, offset=10_000, message="boom one", level="error"),
        one_line(spec, timestamp_ns=new_ts, offset=10_100, message="quiet", level="info"),
        one_line(spec, timestamp_ns=new_ts + MS, offset=10_200, message="boom two", level="error"),
    ]
    await fresh_backend.add(new)
    records, cursor2 = await fresh_backend.backend.tail(tail_request, cursor)
    assert [r["message"] for r in records] == ["boom one", "boom two"]
    assert cursor2 is not None and cursor2[0] == new_ts + MS
    again, _ = await fresh_backend.backend.tail(tail_request, cursor2)
    assert again == []
