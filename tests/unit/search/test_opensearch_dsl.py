"""Query DSL built from validated trees: structure, never strings spliced from input."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from search.backends.base import SearchRequest
from search.backends.opensearch_dsl import build_filter, namespace_clause, query_from_tree
from search.query import QueryError, parse_query


def dsl(text: str) -> dict[str, object]:
    return query_from_tree(parse_query(text))


def test_words_phrases_and_fields_translate() -> None:
    """Bare words match message with AND, phrases are match_phrase, keyword fields are terms."""
    assert dsl("timeout") == {"match": {"message": {"query": "timeout", "operator": "and"}}}
    assert dsl('"connection refused"') == {"match_phrase": {"message": "connection refused"}}
    assert dsl("pod:web-0") == {"term": {"kubernetes.pod.name": "web-0"}}
    assert dsl("offset:42") == {"term": {"log.offset": 42}}
    assert dsl("pod:web-*") == {"wildcard": {"kubernetes.pod.name": {"value": "web-*"}}}
    assert dsl("level:*") == {"exists": {"field": "level"}}


def test_boolean_structure_translates() -> None:
    """AND/implicit AND become must (NOT parts must_not), OR becomes should."""
    assert dsl("a -b") == {
        "bool": {
            "must": [{"match": {"message": {"query": "a", "operator": "and"}}}],
            "must_not": [{"match": {"message": {"query": "b", "operator": "and"}}}],
        }
    }
    ored = dsl("level:error OR level:warning")
    assert ored == {
        "bool": {
            "should": [{"term": {"level": "error"}}, {"term": {"level": "warning"}}],
            "minimum_should_match": 1,
        }
    }
    grouped = dsl("pod:(a OR b)")
    assert grouped["bool"]["should"][0] == {"term": {"kubernetes.pod.name": "a"}}  # type: ignore[index]


def test_ranges_translate_with_inclusivity() -> None:
    """[a TO b] is inclusive, {a TO b} exclusive, * is open, >= and < work."""
    assert dsl("offset:[1 TO 9]") == {"range": {"log.offset": {"gte": 1, "lte": 9}}}
    assert dsl("offset:{1 TO *]") == {"range": {"log.offset": {"gt": 1}}}
    assert dsl("offset:>=5") == {"range": {"log.offset": {"gte": 5}}}
    assert dsl("offset:<5") == {"range": {"log.offset": {"lt": 5}}}


def test_flat_fields_match_every_index_layout() -> None:
    """A label matches the flat subfield or the key=value fallback list."""
    assert dsl("labels.app:web") == {
        "bool": {
            "should": [
                {"term": {"kubernetes.labels.app": "web"}},
                {"term": {"kubernetes.labels_kv": "app=web"}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_namespace_patterns_become_filters() -> None:
    """Allowed patterns become term/wildcard clauses; * is no filter; none allowed matches nothing."""
    assert namespace_clause(None) is None
    assert namespace_clause(["*"]) is None
    assert namespace_clause([]) == {"match_none": {}}
    assert namespace_clause(["a", "team-*"]) == {
        "bool": {
            "should": [
                {"term": {"kubernetes.namespace": "a"}},
                {"wildcard": {"kubernetes.namespace": {"value": "team-*"}}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_filters_range_and_authorization_are_all_applied() -> None:
    """The filter list holds the time range, each sidebar filter and the namespace limit."""
    request = SearchRequest(query=None, start_ns=1, end_ns=2, filters={"pod": ["x", "y"]}, allowed_namespaces=["a"])
    assert build_filter(request) == [
        {"range": {"timestamp_ns": {"gte": 1, "lt": 2}}},
        {"terms": {"kubernetes.pod.name": ["x", "y"]}},
        {"bool": {"should": [{"term": {"kubernetes.namespace": "a"}}], "minimum_should_match": 1}},
    ]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20))
def test_user_values_stay_values(value: str) -> None:
    """Whatever a quoted value holds, it appears only as a JSON value, never as query structure."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    try:
        query = dsl(f'pod:"{escaped}"')
    except QueryError:
        return
    assert query == {"term": {"kubernetes.pod.name": value}}
    assert json.loads(json.dumps(query)) == query


QUERY_PIECES = st.sampled_from(
    ["level:", "pod:", "offset:", "labels.app:", "json.k:", "error", "web-*", "42", '"a b"', "(", ")",
     "[1 TO 5]", "{a TO *]", ">=3", "<9", " AND ", " OR ", "NOT ", "-", "+", " ", "*", "?x", "x?"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(QUERY_PIECES, min_size=1, max_size=12).map("".join))
def test_every_accepted_query_translates(text: str) -> None:
    """A query the validator accepts always becomes DSL; only QueryError ever comes back."""
    try:
        tree = parse_query(text)
    except QueryError:
        return
    query = query_from_tree(tree)
    assert json.loads(json.dumps(query)) == query
