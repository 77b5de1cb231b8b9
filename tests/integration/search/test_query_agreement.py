"""The two query translators agree: OpenSearch DSL and the embedded index find the same records.

Hypothesis generates queries from the words and field values of the seeded
corpus (words in messages, pods, levels, namespaces, offsets, labels; AND,
OR, NOT, groups, wildcards, ranges), and each one runs on OpenSearch (with
podlog's templates) and on the embedded index, both holding the same corpus.
The event ids found must be the same set.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from search.backends.base import SearchRequest
from search.backends.opensearch import OpenSearchBackend
from search.query import QueryError, parse_query
from tests.fixtures.records import BASE_NS, corpus
from tests.integration.search.loading import (
    embedded_available,
    embedded_close,
    embedded_open,
    opensearch_load,
    unique_prefix,
)

RECORDS = corpus()
WORDS = sorted({w.lower() for r in RECORDS for w in r["message"].split() if w.isalpha() and len(w) > 2})[:40]
OFFSETS = sorted({r["log"]["offset"] for r in RECORDS})

TERMS = st.one_of(
    st.sampled_from([*WORDS, "nosuchword"]),
    st.sampled_from(WORDS).map(lambda w: w[:3] + "*"),
    st.sampled_from(["web-0", "db-0", "api-0", "web-*", "nope-0"]).map(lambda v: f"pod:{v}"),
    st.sampled_from(["info", "error", "warning", "debug", "fatal"]).map(lambda v: f"level:{v}"),
    st.sampled_from(["a", "b", "c"]).map(lambda v: f"namespace:{v}"),
    st.sampled_from(["stdout", "stderr"]).map(lambda v: f"stream:{v}"),
    st.sampled_from(["web", "db", "api"]).map(lambda v: f"labels.app:{v}"),
    st.tuples(st.sampled_from(OFFSETS), st.sampled_from(OFFSETS)).map(
        lambda p: f"log.offset:[{min(p)} TO {max(p)}]"
    ),
    st.sampled_from(OFFSETS).map(lambda o: f"log.offset:>{o}"),
    st.sampled_from(WORDS).flatmap(lambda a: st.sampled_from(WORDS).map(lambda b: f'"{a} {b}"')),
)
QUERIES = st.recursive(
    TERMS,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" AND ", " OR ", " "]), inner).map("".join),
        inner.map(lambda q: f"NOT {q}"),
        inner.map(lambda q: f"({q})"),
    ),
    max_leaves=5,
)


@dataclasses.dataclass
class Pair:
    """Both backends over the same corpus, on one event loop of the test's own."""

    runner: asyncio.Runner
    opensearch: OpenSearchBackend
    embedded: Any

    def ids(self, backend: Any, text: str) -> set[str]:
        request = SearchRequest(
            query=parse_query(text), start_ns=BASE_NS - 10**12, end_ns=BASE_NS + 10**13, size=len(RECORDS) + 10
        )
        page = self.runner.run(backend.search(request))
        return {hit["event"]["id"] for hit in page.hits}


@pytest.fixture
def pair(opensearch_any: str, tmp_path: Path) -> Iterator[Pair]:
    reason = embedded_available()
    if reason:
        pytest.skip(reason)
    prefix = unique_prefix("agree")
    opensearch_load(opensearch_any, prefix, RECORDS)
    with asyncio.Runner() as runner:
        embedded = runner.run(embedded_open(tmp_path))
        runner.run(embedded.write(RECORDS))
        opensearch = OpenSearchBackend([opensearch_any], prefix)
        try:
            yield Pair(runner, opensearch, embedded)
        finally:
            runner.run(opensearch.close())
            runner.run(embedded_close(embedded))


def test_opensearch_and_embedded_translations_find_the_same_records(pair: Pair) -> None:
    """Every generated query matches the same event ids on OpenSearch and on the embedded index."""

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(QUERIES)
    def agree(text: str) -> None:
        try:
            on_opensearch = pair.ids(pair.opensearch, text)
        except QueryError:
            with pytest.raises(QueryError):
                pair.ids(pair.embedded, text)
            return
        assert pair.ids(pair.embedded, text) == on_opensearch, text
        found.append(len(on_opensearch))

    found: list[int] = []
    agree()
    # The generator is not vacuous: many queries ran, some matched nothing, some matched a part.
    assert len(found) >= 30 and 0 in found and any(0 < n < len(RECORDS) for n in found), found
