"""Parsing and validating the query language."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from luqum.tree import AndOperation, SearchField, UnknownOperation

from search.query import QueryError, QueryGuards, parse_query, phrase_text, resolve_field


def test_empty_query_means_everything() -> None:
    """Blank text parses to None, which backends treat as match-all."""
    assert parse_query("") is None
    assert parse_query("   ") is None
    assert parse_query(None) is None


def test_fields_operators_and_ranges_parse() -> None:
    """Field terms, boolean operators, groups and ranges are accepted."""
    tree = parse_query('level:error AND (pod:web-* OR "connection refused") -stream:stderr offset:[1 TO 9]')
    assert isinstance(tree, UnknownOperation)
    assert isinstance(tree.children[0], AndOperation)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("*rror", "leading wildcard", 0),
        ("level:error AND ?rror", "leading wildcard", 16),
        ("/err.*/", "regular expressions are disabled", 0),
        ("colour:red", "unknown field 'colour'", 0),
        ("offset:abc", "is not an integer", 7),
        ("message:[a TO b]", "free text", 8),
        ("offset:[1 TO x]", "range bound 'x' is not an integer", 7),
        ("foo~2", "fuzzy", 0),
        ("foo^3", "boosts", 0),
        ("a && b", "write AND, OR or NOT", 2),
        ("pod:a:b", "inside another field", 4),
    ],
)
def test_rejections_name_the_problem_and_position(text: str, message: str, position: int) -> None:
    """Disallowed or meaningless queries fail with a clear reason and where it is."""
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert message in caught.value.reason
    assert caught.value.position == position


def test_syntax_errors_are_query_errors() -> None:
    """Unbalanced parentheses and quotes are reported, not raised as parser internals."""
    for text in ("level:error AND (pod:x", 'message:"open', "a AND", "foo ) bar"):
        with pytest.raises(QueryError, match="syntax error"):
            parse_query(text)


def test_guards_can_allow_leading_wildcards_and_regex() -> None:
    """A server that enables them accepts leading wildcards and regular expressions."""
    guards = QueryGuards(allow_leading_wildcards=True, allow_regex=True)
    assert parse_query("*rror", guards) is not None
    assert parse_query("pod:/web-[0-9]+/", guards) is not None


def test_length_and_term_count_are_capped() -> None:
    """Overlong queries and queries with too many terms are refused."""
    with pytest.raises(QueryError, match="longer than 10"):
        parse_query("a" * 11, QueryGuards(max_length=10))
    with pytest.raises(QueryError, match="at most 3"):
        parse_query("a b c d", QueryGuards(max_terms=3))


def test_aliases_and_prefixes_resolve() -> None:
    """Short names map to record fields; labels, annotations and json keys are open families."""
    assert resolve_field("pod").path == "kubernetes.pod.name"
    assert resolve_field("ns").path == "kubernetes.namespace"
    assert resolve_field("labels.app").path == "kubernetes.labels.app"
    assert resolve_field("json.user.id").kind == "any"
    assert resolve_field("log.offset").kind == "number"
    with pytest.raises(QueryError):
        resolve_field("json.")


def test_phrase_text_unescapes_quotes() -> None:
    """A phrase's text drops the quotes and backslash escapes."""
    tree = parse_query(r'message:"say \"hi\" now"')
    assert isinstance(tree, SearchField)
    assert phrase_text(tree.expr) == 'say "hi" now'


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_query_error(text: str) -> None:
    """Whatever the user types, the result is a tree, None, or a QueryError: never a crash."""
    with contextlib.suppress(QueryError):
        parse_query(text)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    """Thousands of nested groups or NOTs give a QueryError, never a RecursionError."""
    for text in ("(" * 1500 + "a" + ")" * 1500, "NOT " * 1000 + "a"):
        with pytest.raises(QueryError, match="nested more than"):
            parse_query(text)
    assert parse_query("(" * 30 + "a" + ")" * 30) is not None
