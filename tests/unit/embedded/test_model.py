"""The embedded index against a plain-Python model: random records, random queries."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podlog.record import Record
from tests.unit.embedded.conftest import T0, open_index, rec, req

WORDS = ("alpha", "beta", "gamma", "error", "alphabet", "ok-200")
NAMESPACES = ("a", "b", "c")
LEVELS = ("info", "error", None)

Predicate = Callable[[Record], bool]


def tokens(record: Record) -> list[str]:
    return re.findall(r"\w+", record["message"].lower())


@st.composite
def records(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(1, 60))
    out = []
    for offset in range(count):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
        out.append(
            rec(
                offset * 10,
                T0 + draw(st.integers(0, 5)) * 1_000_000 + draw(st.sampled_from((0, 0, 1, 999_999))),
                " ".join(words),
                namespace=draw(st.sampled_from(NAMESPACES)),
                level=draw(st.sampled_from(LEVELS)),
                stream=draw(st.sampled_from(("stdout", "stderr"))),
            )
        )
    return out


def leaves() -> st.SearchStrategy[tuple[str, Predicate]]:
    word = st.sampled_from(("alpha", "beta", "gamma", "error", "ok")).map(
        lambda w: (w, lambda r, w=w: w in tokens(r))
    )
    prefix = st.sampled_from(("alph", "gam", "er")).map(
        lambda p: (f"{p}*", lambda r, p=p: any(t.startswith(p) for t in tokens(r)))
    )
    phrase = st.just(('"ok 200"', lambda r: "ok-200" in r["message"]))
    level = st.sampled_from(("info", "error")).map(
        lambda v: (f"level:{v}", lambda r, v=v: r["level"] == v)
    )
    namespace = st.sampled_from(NAMESPACES).map(
        lambda v: (f"namespace:{v}", lambda r, v=v: r["kubernetes"]["namespace"] == v)
    )
    offsets = st.tuples(st.integers(0, 600), st.integers(0, 600)).map(sorted).map(
        lambda b: (
            f"offset:[{b[0]} TO {b[1]}]",
            lambda r, b=b: b[0] <= r["log"]["offset"] <= b[1],
        )
    )
    stream = st.just(("stream:std*", lambda r: True))
    return st.one_of(word, prefix, phrase, level, namespace, offsets, stream)


def combine(children: st.SearchStrategy[tuple[str, Predicate]]) -> st.SearchStrategy[tuple[str, Predicate]]:
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: (f"({p[0][0]} AND {p[1][0]})", lambda r, p=p: p[0][1](r) and p[1][1](r))),
        pair.map(lambda p: (f"({p[0][0]} OR {p[1][0]})", lambda r, p=p: p[0][1](r) or p[1][1](r))),
        children.map(lambda c: (f"(NOT {c[0]})", lambda r, c=c: not c[1](r))),
    )


queries = st.recursive(leaves(), combine, max_leaves=5)


def key(record: Record) -> tuple[Any, ...]:
    return (record["timestamp_ns"], record["log"]["offset"], record["event"]["id"])


async def check(corpus: list[Record], cases: list[tuple[str, Predicate]], page: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with open_index(Path(directory)) as index:
            await index.write(corpus)
            for q, predicate in cases:
                expected = [r["event"]["id"] for r in sorted(corpus, key=key, reverse=True) if predicate(r)]
                got: list[str] = []
                cursor = None
                while True:
                    result = await index.search(req(q, size=page, search_after=cursor))
                    assert result.total == len(expected), q
                    got.extend(r["event"]["id"] for r in result.hits)
                    if result.next_cursor is None:
                        break
                    cursor = result.next_cursor
                assert got == expected, q
                buckets = await index.histogram(req(q), 1_000_000)
                assert sum(b.count for b in buckets) == len(expected), q


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=records(), cases=st.lists(queries, min_size=1, max_size=6), page=st.integers(1, 25))
def test_search_agrees_with_a_python_model(
    corpus: list[Record], cases: list[tuple[str, Predicate]], page: int
) -> None:
    """Every query returns exactly the model's matches, newest first, over every page."""
    asyncio.run(check(corpus, cases, page))
