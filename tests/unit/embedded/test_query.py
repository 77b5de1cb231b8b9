"""Query translation corners: exists, numbers in JSON, @timestamp ranges, large expansions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlog.record import format_timestamp_ns
from search.backends.embedded import EmbeddedIndex
from search.backends.embedded_query import fts_string, translate
from search.backends.embedded_schema import Dictionary
from search.query import QueryError, parse_query
from tests.unit.embedded.conftest import GUARDS, T0, open_index, rec, req

MS = 1_000_000


async def matches(index: EmbeddedIndex, q: str) -> list[int]:
    """Offsets of the matches of ``q``, ascending."""
    return sorted(hit["log"]["offset"] for hit in (await index.search(req(q))).hits)


@pytest.fixture
async def loaded(tmp_path: Path) -> AsyncIterator[EmbeddedIndex]:
    """Four records, and at most two tokens per wildcard expansion."""
    index = open_index(tmp_path, wildcard_expansion_limit=2)
    await index.start()
    await index.write(
        [
            rec(0, T0, "GET /a 200", pod="web-1", json={"status": 200, "user": "ann", "ok": True}),
            rec(1, T0 + MS, "GET /b 500", pod="web-2", json={"status": 500, "user": "bob"}),
            rec(2, T0 + 2 * MS, "boot", pod="db-0", level=None),
            rec(3, T0 + 3 * MS, "naïve café", pod="web-3", json={"status": "500"}),
        ]
    )
    try:
        yield index
    finally:
        await index.stop()


async def test_field_exists_and_missing(loaded: EmbeddedIndex) -> None:
    """field:* matches records that have the field; NOT field:* the others."""
    assert await matches(loaded, "level:*") == [0, 1, 3]
    assert await matches(loaded, "NOT level:*") == [2]
    assert await matches(loaded, "json.status:*") == [0, 1, 3]


async def test_json_values_match_as_numbers_or_strings(loaded: EmbeddedIndex) -> None:
    """json.status:500 matches the number and the string; ranges compare numbers."""
    assert await matches(loaded, "json.status:500") == [1, 3]
    assert await matches(loaded, "json.status:[200 TO 499]") == [0]
    assert await matches(loaded, "json.user:b*") == [1]


async def test_timestamp_ranges_compare_instants(loaded: EmbeddedIndex) -> None:
    """@timestamp ranges in RFC 3339 select by time, whatever the fraction digits."""
    start = format_timestamp_ns(T0 + MS).replace(":", "\\:")
    end = format_timestamp_ns(T0 + 2 * MS).replace(".002000000Z", ".002Z").replace(":", "\\:")
    assert await matches(loaded, f"@timestamp:[{start} TO {end}}}") == [1]
    assert await matches(loaded, f"timestamp_ns:>={T0 + 2 * MS}") == [2, 3]


async def test_wildcards_past_the_expansion_limit_still_match(loaded: EmbeddedIndex) -> None:
    """pod:web-* matches three pods, more than the limit of two tokens: SQL takes over."""
    assert await matches(loaded, "pod:web-*") == [0, 1, 3]
    assert await matches(loaded, "pod:web-* AND 500") == [1]
    assert await matches(loaded, "pod:nomatch-*") == []


async def test_unicode_and_inner_wildcards_on_message(loaded: EmbeddedIndex) -> None:
    """Words with accents match case-insensitively; a?c and *x work on words."""
    assert await matches(loaded, "CAFÉ") == [3]
    assert await matches(loaded, "b?ot") == [2]
    assert await matches(loaded, "*oot") == [2]
    assert await matches(loaded, "/GET \\/[ab] 500/") == [1]


def test_bad_regex_is_a_query_error() -> None:
    """A regex Python cannot compile is reported as a query error, not a crash."""
    with pytest.raises(QueryError, match="invalid regular expression"):
        translate(parse_query("/a(b/", GUARDS), Dictionary())


def test_fts_strings_double_their_quotes() -> None:
    """A quote inside a term cannot end the FTS5 string early."""
    assert fts_string('say "hi"') == '"say ""hi"""'
