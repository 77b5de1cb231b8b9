"""The search query language: Lucene syntax parsed by luqum, then validated.

Users type Lucene-style queries (``level:error AND "connection refused"``,
``pod:web-* -stream:stderr``, ``log.offset:[100 TO 200]``).  This module
parses them into a luqum tree and rejects, with the position of the offending
part, everything the backends do not translate or the guards forbid: unknown
fields, leading wildcards and regular expressions (unless enabled), fuzzy and
proximity operators, ranges on free text, non-numeric bounds on numbers.

A bare term searches ``message``; terms side by side mean AND (as in most log
search tools).  Each backend translates the validated tree itself (OpenSearch
into query DSL, the embedded index into its own form); :func:`resolve_field`,
:func:`term_text` and :func:`phrase_text` are the shared reading of the tree so
both backends agree on what a query means.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from luqum.exceptions import IllegalCharacterError, ParseError
from luqum.parser import parser
from luqum.tree import (
    AndOperation,
    Boost,
    FieldGroup,
    From,
    Fuzzy,
    Group,
    Item,
    Not,
    OrOperation,
    Phrase,
    Plus,
    Prohibit,
    Proximity,
    Range,
    Regex,
    SearchField,
    To,
    UnknownOperation,
    Word,
)

from podlog.errors import PodlogError

__all__ = [
    "DEFAULT_FIELD",
    "FIELD_ALIASES",
    "INT64_MAX",
    "INT64_MIN",
    "KNOWN_FIELDS",
    "FieldKind",
    "FieldSpec",
    "QueryError",
    "QueryGuards",
    "is_leading_wildcard",
    "parse_integer",
    "parse_query",
    "phrase_text",
    "resolve_field",
    "term_text",
]

FieldKind = Literal["text", "keyword", "number", "any"]
"""How a field is matched: analyzed words, exact strings, integers, or either."""

DEFAULT_FIELD = "message"
"""Field a term without ``field:`` searches."""

KNOWN_FIELDS: Mapping[str, FieldKind] = {
    "message": "text",
    "stream": "keyword",
    "level": "keyword",
    "@timestamp": "keyword",
    "timestamp_ns": "number",
    "kubernetes.namespace": "keyword",
    "kubernetes.pod.name": "keyword",
    "kubernetes.pod.uid": "keyword",
    "kubernetes.container.name": "keyword",
    "kubernetes.container.id": "keyword",
    "kubernetes.container.image": "keyword",
    "kubernetes.container.restart_count": "number",
    "kubernetes.node.name": "keyword",
    "kubernetes.workload.kind": "keyword",
    "kubernetes.workload.name": "keyword",
    "log.file.path": "keyword",
    "log.file.identity": "keyword",
    "log.offset": "number",
    "log.generation": "number",
    "event.id": "keyword",
    "podlog.metadata": "keyword",
}
"""Every record field a query may name, and how it matches."""

PREFIX_FIELDS: Mapping[str, FieldKind] = {
    "kubernetes.labels.": "keyword",
    "kubernetes.annotations.": "keyword",
    "json.": "any",
}
"""Families of fields by prefix: pod labels, annotations, the parsed JSON payload."""

FIELD_ALIASES: Mapping[str, str] = {
    "namespace": "kubernetes.namespace",
    "ns": "kubernetes.namespace",
    "pod": "kubernetes.pod.name",
    "container": "kubernetes.container.name",
    "node": "kubernetes.node.name",
    "workload": "kubernetes.workload.name",
    "image": "kubernetes.container.image",
    "labels.": "kubernetes.labels.",
    "msg": "message",
    "offset": "log.offset",
    "file": "log.file.path",
    "id": "event.id",
}
"""Short names accepted in queries (``pod:web-1``, ``labels.app:api``)."""

_MAX_TERMS = 256
_MAX_DEPTH = 64
_INTEGER = re.compile(r"-?[0-9]{1,19}")
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class QueryError(PodlogError):
    """A query that does not parse or is not allowed; the message says where and why."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}")
        self.reason = message
        self.position = position


@dataclass(frozen=True, slots=True)
class QueryGuards:
    """What a query may use; the defaults are the safe ones."""

    allow_leading_wildcards: bool = False
    allow_regex: bool = False
    max_length: int = 4096
    max_terms: int = _MAX_TERMS


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A resolved query field: the record path and how it matches."""

    path: str
    kind: FieldKind


def resolve_field(name: str, position: int | None = None) -> FieldSpec:
    """The record field a query name means (aliases resolved); QueryError if unknown."""
    path = FIELD_ALIASES.get(name, name)
    for alias, target in FIELD_ALIASES.items():
        if alias.endswith(".") and name.startswith(alias):
            path = target + name[len(alias) :]
    kind = KNOWN_FIELDS.get(path)
    if kind is not None:
        return FieldSpec(path, kind)
    for prefix, prefix_kind in PREFIX_FIELDS.items():
        if path.startswith(prefix) and len(path) > len(prefix):
            return FieldSpec(path, prefix_kind)
    short = ", ".join(k for k in FIELD_ALIASES if not k.endswith("."))
    raise QueryError(
        f"unknown field {name!r}; use one of {short}, a full record field such as "
        "kubernetes.pod.name, kubernetes.labels.<name> or json.<key>",
        position,
    )


def term_text(word: Word) -> str:
    """A term's text with Lucene escapes removed (wildcards stay in ``word.value``)."""
    return str(word.unescaped_value)


def phrase_text(phrase: Phrase) -> str:
    """A phrase's text without the quotes, escapes removed."""
    inner = str(phrase.value)[1:-1]
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if char == "\\":
            out.append(next(chars, ""))
        else:
            out.append(char)
    return "".join(out)


def parse_integer(text: str) -> int | None:
    """The value of a decimal integer that fits a signed 64-bit field, else None."""
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


def is_leading_wildcard(word: Word) -> bool:
    """True when the term starts with an unescaped ``*`` or ``?`` (and is not just ``*``)."""
    value = str(word.value)
    return value != "*" and value[:1] in ("*", "?")


def parse_query(text: str | None, guards: QueryGuards | None = None) -> Item | None:
    """Parse and validate ``text``; None for an empty query (match everything).

    Raises :class:`QueryError` naming the problem and its position.
    """
    guards = guards or QueryGuards()
    if text is None or not text.strip():
        return None
    if len(text) > guards.max_length:
        raise QueryError(f"query is longer than {guards.max_length} characters")
    try:
        tree = parser.parse(text)
    except (IllegalCharacterError, ParseError) as exc:
        message, position = _clean(exc)
        if position is None and message.endswith("at the end"):
            position = len(text)
        raise QueryError(f"syntax error: {message}", position) from exc
    except (ValueError, TypeError) as exc:  # luqum raises these for some malformed ranges
        raise QueryError(f"syntax error: {exc}") from exc
    except ArithmeticError as exc:  # decimal.InvalidOperation, for a~. or a^1.2.3
        raise QueryError("syntax error: ~ and ^ must be followed by a number") from exc
    except RecursionError:
        raise QueryError(f"query is nested more than {_MAX_DEPTH} levels deep") from None
    terms = sum(1 for _ in _validate(tree, None, guards, 0))
    if terms > guards.max_terms:
        raise QueryError(f"query has {terms} terms; at most {guards.max_terms} are allowed")
    return tree


_AT_POSITION = re.compile(r"\s*at position (\d+)\s*$")


def _clean(exc: Exception) -> tuple[str, int | None]:
    """luqum's message without its boilerplate, and the position it names (if any)."""
    message = str(exc).replace("Syntax error in input : ", "").replace("  ", " ").rstrip("!").strip()
    found = _AT_POSITION.search(message)
    if found is None:
        return message, None
    return message[: found.start()].strip(), int(found.group(1))


def _validate(item: Item, field: FieldSpec | None, guards: QueryGuards, depth: int) -> Iterator[None]:
    """Check ``item`` under ``field``; yields once per term, for the term count."""
    pos = getattr(item, "pos", None)
    if depth > _MAX_DEPTH:
        raise QueryError(f"query is nested more than {_MAX_DEPTH} levels deep", pos)
    depth += 1
    if isinstance(item, SearchField):
        if field is not None:
            raise QueryError(f"field {item.name!r} inside another field's value", pos)
        spec = resolve_field(str(item.name), pos)
        try:
            yield from _validate(item.expr, spec, guards, depth)
        except QueryError as exc:
            if exc.position is not None or pos is None:
                raise
            raise QueryError(exc.reason, pos) from None  # e.g. field:>n, whose operand has no position
    elif isinstance(item, (AndOperation, OrOperation, UnknownOperation)):
        for child in item.children:
            yield from _validate(child, field, guards, depth)
    elif isinstance(item, (Group, FieldGroup, Not, Prohibit, Plus)):
        yield from _validate(item.children[0], field, guards, depth)
    elif isinstance(item, Word):
        _check_word(item, field, guards)
        yield None
    elif isinstance(item, Phrase):
        if field is not None and field.kind == "number":
            raise QueryError(f"{field.path} is a number; a quoted phrase cannot match it", pos)
        yield None
    elif isinstance(item, Regex):
        if not guards.allow_regex:
            raise QueryError("regular expressions are disabled on this server", pos)
        if field is not None and field.kind == "number":
            raise QueryError(f"{field.path} is a number; a regular expression cannot match it", pos)
        yield None
    elif isinstance(item, (Range, From, To)):
        _check_range(item, field, pos)
        yield None
    elif isinstance(item, (Fuzzy, Proximity)):
        raise QueryError("fuzzy and proximity (~) searches are not supported", pos)
    elif isinstance(item, Boost):
        raise QueryError("boosts (^) are not supported; results are ordered by time", pos)
    else:
        raise QueryError(f"unsupported query element {str(item)!r}", pos)


def _check_word(word: Word, field: FieldSpec | None, guards: QueryGuards) -> None:
    pos = getattr(word, "pos", None)
    value = str(word.value)
    if value in ("&&", "||", "!"):
        raise QueryError(f"{value!r} is not an operator here; write AND, OR or NOT", pos)
    if is_leading_wildcard(word) and not guards.allow_leading_wildcards:
        raise QueryError(
            f"leading wildcard in {value!r} is disabled on this server; start with a letter",
            pos,
        )
    if field is None and value == "*":
        return
    if field is not None and field.kind == "number" and value != "*" and parse_integer(term_text(word)) is None:
        raise QueryError(
            f"{field.path} is a number; {value[:40]!r} is not an integer between -2^63 and 2^63-1", pos
        )


def _check_range(item: Range | From | To, field: FieldSpec | None, pos: int | None) -> None:
    if field is None:
        raise QueryError("a range needs a field, as in log.offset:[100 TO 200]", pos)
    if field.kind == "text":
        raise QueryError(f"{field.path} is free text; ranges work on other fields", pos)
    bounds = [item.low, item.high] if isinstance(item, Range) else [item.children[0]]
    for bound in bounds:
        if not isinstance(bound, Word):
            raise QueryError("range bounds must be plain values", pos)
        if field.kind == "number" and bound.value != "*" and parse_integer(term_text(bound)) is None:
            raise QueryError(
                f"{field.path} is a number; range bound {str(bound.value)[:40]!r} is not an integer "
                "between -2^63 and 2^63-1",
                pos,
            )
