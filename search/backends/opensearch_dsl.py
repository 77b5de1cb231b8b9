"""Query DSL for OpenSearch, built from a validated luqum tree and request filters.

Every user value lands in the request body as a JSON value inside a query
object (``term``, ``match``, ``range``...), never spliced into a query string:
``query_string`` is not used at all.  The tree was validated by
:func:`search.query.parse_query`, so anything unexpected here is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from luqum.tree import (
    AndOperation,
    FieldGroup,
    From,
    Group,
    Item,
    Not,
    OrOperation,
    Phrase,
    Plus,
    Prohibit,
    Range,
    Regex,
    SearchField,
    To,
    UnknownOperation,
    Word,
)

from search.backends.base import FILTER_FIELDS, Cursor, SearchRequest
from search.query import (
    DEFAULT_FIELD,
    FieldSpec,
    QueryError,
    phrase_text,
    resolve_field,
    term_text,
)

__all__ = [
    "NEWEST_FIRST",
    "OLDEST_FIRST",
    "build_filter",
    "cursor_of",
    "namespace_clause",
    "query_from_tree",
]

Query = dict[str, Any]

NEWEST_FIRST: list[dict[str, Any]] = [
    {"timestamp_ns": {"order": "desc"}},
    {"log.offset": {"order": "desc"}},
    {"event.id": {"order": "desc"}},
]
"""The one ordering of results: newest first, ties in file order reversed, then id."""

OLDEST_FIRST: list[dict[str, Any]] = [
    {"timestamp_ns": {"order": "asc"}},
    {"log.offset": {"order": "asc"}},
    {"event.id": {"order": "asc"}},
]

_MATCH_NONE: Query = {"match_none": {}}

FLAT_FIELDS = ("kubernetes.labels", "kubernetes.annotations", "json")
"""Map-valued fields the indexer stores as one flat field each (see indexer/templates.py)."""
_DEFAULT = FieldSpec(DEFAULT_FIELD, "text")


def cursor_of(record: dict[str, Any]) -> Cursor:
    """The ``(timestamp_ns, log.offset, event.id)`` sort key of a record."""
    log = record.get("log") or {}
    event = record.get("event") or {}
    return (int(record.get("timestamp_ns") or 0), int(log.get("offset") or 0), str(event.get("id") or ""))


def namespace_clause(patterns: Sequence[str] | None) -> Query | None:
    """A filter that admits only namespaces matching one of ``patterns`` (fnmatch ``*``/``?``).

    None means no restriction; an empty list admits nothing.
    """
    if patterns is None:
        return None
    if "*" in patterns:
        return None
    should: list[Query] = []
    for pattern in patterns:
        if "*" in pattern or "?" in pattern:
            should.append({"wildcard": {FILTER_FIELDS["namespace"]: {"value": pattern}}})
        else:
            should.append({"term": {FILTER_FIELDS["namespace"]: pattern}})
    if not should:
        return _MATCH_NONE
    return {"bool": {"should": should, "minimum_should_match": 1}}


def build_filter(request: SearchRequest, *, with_range: bool = True) -> list[Query]:
    """Filter clauses for the time range, the sidebar filters and authorization."""
    clauses: list[Query] = []
    if with_range:
        clauses.append({"range": {"timestamp_ns": {"gte": request.start_ns, "lt": request.end_ns}}})
    for name, values in sorted(request.filters.items()):
        if name not in FILTER_FIELDS:
            raise QueryError(f"unknown filter {name!r}; valid: {', '.join(FILTER_FIELDS)}")
        if values:
            clauses.append({"terms": {FILTER_FIELDS[name]: list(values)}})
    allowed = namespace_clause(request.allowed_namespaces)
    if allowed is not None:
        clauses.append(allowed)
    return clauses


def query_from_tree(tree: Item | None) -> Query:
    """Query DSL for a validated luqum tree; ``match_all`` for None."""
    if tree is None:
        return {"match_all": {}}
    return _translate(tree, None)


def _translate(item: Item, field: FieldSpec | None) -> Query:
    if isinstance(item, SearchField):
        return _translate(item.expr, resolve_field(str(item.name)))
    if isinstance(item, (AndOperation, UnknownOperation)):
        must: list[Query] = []
        must_not: list[Query] = []
        for child in item.children:
            if isinstance(child, (Not, Prohibit)):
                must_not.append(_translate(child.children[0], field))
            else:
                must.append(_translate(child, field))
        body: dict[str, Any] = {}
        if must:
            body["must"] = must
        if must_not:
            body["must_not"] = must_not
        return {"bool": body}
    if isinstance(item, OrOperation):
        should = [_translate(child, field) for child in item.children]
        return {"bool": {"should": should, "minimum_should_match": 1}}
    if isinstance(item, (Not, Prohibit)):
        return {"bool": {"must_not": [_translate(item.children[0], field)]}}
    if isinstance(item, (Group, FieldGroup, Plus)):
        return _translate(item.children[0], field)
    spec = field or _DEFAULT
    if isinstance(item, Word):
        return _word(item, spec)
    if isinstance(item, Phrase):
        text = phrase_text(item)
        if _flat_parts(spec.path) is not None:
            return _flat_exact(spec.path, text, wildcard=False)
        if spec.kind in ("text", "any"):
            return {"match_phrase": {spec.path: text}}
        return {"term": {spec.path: text}}
    if isinstance(item, Regex):
        return {"regexp": {spec.path: {"value": str(item.value)[1:-1]}}}
    if isinstance(item, (Range, From, To)):
        return _range(item, spec)
    raise QueryError(f"unsupported query element {str(item)!r}")


def _flat_parts(path: str) -> tuple[str, str] | None:
    """``(flat field, key)`` for a path inside labels, annotations or json."""
    for flat in FLAT_FIELDS:
        if path.startswith(flat + "."):
            return flat, path[len(flat) + 1 :]
    return None


def _flat_exact(path: str, value: str, *, wildcard: bool) -> Query:
    """Match a key of a flat field in every layout the indexer may have chosen.

    ``flat_object``/``flattened`` index ``labels.app`` as a keyword subfield;
    the fallback layout has ``labels_kv: "app=web"``.  A term on a field the
    index does not map matches nothing, so asking both is safe.
    """
    parts = _flat_parts(path)
    assert parts is not None, path
    flat, key = parts
    kind = "wildcard" if wildcard else "term"
    body: Any = {"value": value} if wildcard else value
    kv: Any = {"value": f"{key}={value}"} if wildcard else f"{key}={value}"
    return {
        "bool": {
            "should": [{kind: {path: body}}, {kind: {f"{flat}_kv": kv}}],
            "minimum_should_match": 1,
        }
    }


def _word(word: Word, spec: FieldSpec) -> Query:
    raw = str(word.value)
    flat = _flat_parts(spec.path) is not None
    if raw == "*":
        if spec.path == DEFAULT_FIELD:
            return {"match_all": {}}
        if flat:
            return _flat_exact(spec.path, "*", wildcard=True)
        return {"exists": {"field": spec.path}}
    if word.has_wildcard():
        if flat:
            return _flat_exact(spec.path, raw, wildcard=True)
        value = raw.lower() if spec.kind == "text" else raw
        return {"wildcard": {spec.path: {"value": value}}}
    text = term_text(word)
    if flat:
        return _flat_exact(spec.path, text, wildcard=False)
    if spec.kind == "number":
        return {"term": {spec.path: int(text)}}
    if spec.kind == "keyword":
        return {"term": {spec.path: text}}
    return {"match": {spec.path: {"query": text, "operator": "and"}}}


def _bound(word: Item, spec: FieldSpec) -> Any:
    assert isinstance(word, Word), word
    text = term_text(word)
    return int(text) if spec.kind == "number" else text


def _range(item: Range | From | To, spec: FieldSpec) -> Query:
    bounds: dict[str, Any] = {}
    if isinstance(item, Range):
        if str(item.low.value) != "*":
            bounds["gte" if item.include_low else "gt"] = _bound(item.low, spec)
        if str(item.high.value) != "*":
            bounds["lte" if item.include_high else "lt"] = _bound(item.high, spec)
    elif isinstance(item, From):
        bounds["gte" if item.include else "gt"] = _bound(item.children[0], spec)
    else:
        bounds["lte" if item.include else "lt"] = _bound(item.children[0], spec)
    if not bounds:
        return {"exists": {"field": spec.path}}
    return {"range": {spec.path: bounds}}
