"""Property tests of the query parser and the OpenSearch translator (Hypothesis).

* parse then print then parse gives the same tree (as printed);
* any string either parses or raises the documented :class:`QueryError`;
* every query that parses translates to OpenSearch DSL (JSON-serializable) or raises QueryError.
"""

from __future__ import annotations

import contextlib

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from search.backends.opensearch_dsl import query_from_tree
from search.query import QueryError, QueryGuards, parse_query

FIELDS = ["pod", "namespace", "level", "stream", "message", "log.offset", "json.user", "labels.app", "timestamp_ns"]
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8).filter(
    lambda w: w.upper() not in ("AND", "OR", "NOT", "TO") and not w.startswith("-")
)
NUMBERS = st.integers(min_value=0, max_value=2**63 - 1).map(str)
"""Non-negative: in Lucene syntax a leading '-' is NOT, so negative values need escaping."""
PHRASES = st.text(alphabet="abc xyz:*?()", min_size=1, max_size=10).map(
    lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'
)


def _field_term(field: str) -> st.SearchStrategy[str]:
    if field in ("log.offset", "timestamp_ns"):
        value = st.one_of(
            NUMBERS,
            st.tuples(NUMBERS, NUMBERS).map(lambda p: f"[{p[0]} TO {p[1]}]"),
            st.tuples(st.sampled_from([">", ">=", "<", "<="]), NUMBERS).map("".join),
        )
    else:
        value = st.one_of(WORDS, PHRASES, WORDS.map(lambda w: w + "*"))
    return value.map(lambda v: f"{field}:{v}")


TERMS = st.one_of(WORDS, PHRASES, st.sampled_from(FIELDS).flatmap(_field_term))

QUERIES = st.recursive(
    TERMS,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" AND ", " OR ", " "]), inner).map("".join),
        inner.map(lambda q: f"NOT {q}"),
        inner.map(lambda q: f"({q})"),
        inner.map(lambda q: f"-{q}" if not q.startswith(("-", "NOT")) else q),
    ),
    max_leaves=8,
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(QUERIES)
def test_generated_queries_parse_and_print_round_trip(text: str) -> None:
    """A query from the grammar parses; printing the tree and parsing that gives the same print."""
    tree = parse_query(text)
    assert tree is not None
    printed = str(tree)
    again = parse_query(printed)
    assert str(again) == printed


@PROPERTY
@given(st.text(max_size=200))
@example("a~.")  # luqum raised decimal.InvalidOperation: a 500 until it was caught
@example("a^1.2.3")
def test_any_string_parses_or_raises_the_query_error(text: str) -> None:
    """No input string raises anything but QueryError, and a QueryError's position lies within the text."""
    try:
        parse_query(text)
    except QueryError as exc:
        assert exc.position is None or 0 <= exc.position <= len(text)


@PROPERTY
@given(st.text(alphabet='abc:*?"()[]{}<>=!~^/\\ -+&|0123456789ANDORTnotX', max_size=60))
def test_query_like_strings_parse_or_raise_the_query_error(text: str) -> None:
    """Strings dense in query syntax parse or raise QueryError, with leading wildcards and regex allowed too."""
    for guards in (QueryGuards(), QueryGuards(allow_leading_wildcards=True, allow_regex=True)):
        try:
            tree = parse_query(text, guards)
        except QueryError:
            continue
        with contextlib.suppress(QueryError):
            orjson.dumps(query_from_tree(tree))


@PROPERTY
@given(QUERIES)
def test_every_parsed_query_translates_to_json_dsl(text: str) -> None:
    """Every query of the grammar translates to OpenSearch DSL that serializes to JSON."""
    tree = parse_query(text)
    body = orjson.loads(orjson.dumps(query_from_tree(tree)))
    assert isinstance(body, dict) and body
