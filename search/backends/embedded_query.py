"""Translate a validated luqum tree into an SQLite FTS5 MATCH expression plus SQL.

The embedded index keeps two structures (see :mod:`search.backends.embedded_schema`):
the FTS5 table ``f`` with the analysed ``message`` and a ``meta`` column of
one opaque token per filter-field value (``v17`` is ``kubernetes.namespace =
"shop"``), and the row table ``r`` with exact columns and the record's JSON.

A query becomes a :class:`Clause`: an FTS5 expression (fast: every term and
filter intersects inverted lists), an SQL condition over ``r`` (numbers,
ranges, other fields, non-prefix wildcards), or both ANDed.  Every value a
user typed reaches SQLite as a bound parameter or inside a double-quoted FTS5
string whose quotes are doubled, so no query can change the statement.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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

from podlog.record import parse_timestamp_ns
from search.query import (
    DEFAULT_FIELD,
    INT64_MAX,
    INT64_MIN,
    FieldSpec,
    QueryError,
    phrase_text,
    resolve_field,
)

__all__ = [
    "ALL_TOKEN",
    "COLUMN_FIELDS",
    "TOKEN_FIELDS",
    "Clause",
    "Vocabulary",
    "and_clauses",
    "fts_string",
    "glob_match",
    "id_set",
    "translate",
    "wildcard_regex",
]

ALL_TOKEN = "zall"  # noqa: S105 - an index token, not a secret
"""A meta token every row carries: lets FTS5 express a query that starts with NOT."""

TOKEN_FIELDS: Mapping[str, str] = {
    "kubernetes.namespace": "ns",
    "kubernetes.pod.name": "pod",
    "kubernetes.container.name": "ctr",
    "kubernetes.node.name": "node",
    "kubernetes.workload.name": "wl",
    "level": "lvl",
    "stream": "strm",
}
"""Filter fields stored as dictionary ids: record path to the ``r`` column (and vocabulary)."""

COLUMN_FIELDS: Mapping[str, str] = {
    "timestamp_ns": "r.ts",
    "log.offset": "r.off",
    "log.generation": "r.gen",
    "log.file.identity": "r.ident",
    "event.id": "r.eid",
}
"""Fields with their own exact column in ``r``."""

_NUMBER_FIELDS = frozenset({"timestamp_ns", "log.offset", "log.generation"})


class Vocabulary(Protocol):
    """The dictionary of filter-field values the index has seen."""

    def ids(self, column: str, predicate: Callable[[str], bool]) -> list[int]:
        """Ids of every value of ``column`` for which ``predicate`` holds."""

    def id_of(self, column: str, value: str) -> int | None:
        """The id of one exact value, or None when no record has it."""


@dataclass(frozen=True, slots=True)
class Clause:
    """``fts AND sql``; a missing part is true.  ``FALSE`` is ``sql == "0"``."""

    fts: str | None = None
    """An FTS5 MATCH expression over ``f``."""
    sql: str | None = None
    """An SQL boolean expression over ``r``."""
    params: tuple[Any, ...] = ()
    """Parameters of ``sql``, in order."""

    @property
    def is_true(self) -> bool:
        """Matches every record."""
        return self.fts is None and self.sql is None

    @property
    def is_false(self) -> bool:
        """Matches no record."""
        return self.sql == "0"

    def as_sql(self) -> tuple[str, tuple[Any, ...]]:
        """The whole clause as one SQL condition over ``r``."""
        parts: list[str] = []
        params: list[Any] = []
        if self.fts is not None:
            parts.append("r.rowid IN (SELECT rowid FROM f WHERE f MATCH ?)")
            params.append(self.fts)
        if self.sql is not None:
            parts.append(self.sql)
            params.extend(self.params)
        if not parts:
            return "1", ()
        return (parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"), tuple(params)


TRUE = Clause()
FALSE = Clause(sql="0")


def fts_string(text: str) -> str:
    """``text`` as one FTS5 string literal (a phrase of its tokens)."""
    return '"' + text.replace('"', '""') + '"'


def _meta(ids: Sequence[int]) -> str:
    tokens = " OR ".join(f"v{i}" for i in ids)
    return f"meta:({tokens})" if len(ids) > 1 else f"meta:{tokens}"


def _has_token_chars(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def wildcard_regex(value: str, any_char: str = ".") -> str:
    """A Lucene wildcard term (raw, with ``\\`` escapes) as a regex body;
    ``any_char`` is what ``?`` matches (and ``*`` any run of)."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            out.append(re.escape(next(chars, "")))
        elif char == "*":
            out.append(any_char + "*")
        elif char == "?":
            out.append(any_char)
        else:
            out.append(re.escape(char))
    return "".join(out)


def _trailing_prefix(value: str) -> str | None:
    """The literal prefix of ``pre*`` (one unescaped trailing ``*``), else None."""
    if not value.endswith("*") or value.endswith("\\*"):
        return None
    body = value[:-1]
    plain = re.sub(r"\\(.)", "", body)
    if "*" in plain or "?" in plain:
        return None
    return re.sub(r"\\(.)", r"\1", body)


def and_clauses(clauses: Sequence[Clause]) -> Clause:
    """The conjunction of ``clauses``."""
    if any(c.is_false for c in clauses):
        return FALSE
    fts = [c.fts for c in clauses if c.fts is not None]
    sql = [c for c in clauses if c.sql is not None]
    params: list[Any] = []
    for c in sql:
        params.extend(c.params)
    return Clause(
        fts=None if not fts else fts[0] if len(fts) == 1 else " AND ".join(f"({f})" for f in fts),
        sql=None
        if not sql
        else sql[0].sql
        if len(sql) == 1
        else "(" + " AND ".join(str(c.sql) for c in sql) + ")",
        params=tuple(params),
    )


def _or_clauses(clauses: Sequence[Clause]) -> Clause:
    live = [c for c in clauses if not c.is_false]
    if not live:
        return FALSE
    if any(c.is_true for c in live):
        return TRUE
    if all(c.sql is None for c in live):
        return Clause(fts=" OR ".join(f"({c.fts})" for c in live))
    parts: list[str] = []
    params: list[Any] = []
    for c in live:
        sql, p = c.as_sql()
        parts.append(sql)
        params.extend(p)
    return Clause(sql="(" + " OR ".join(parts) + ")", params=tuple(params))


def _not_clause(clause: Clause) -> Clause:
    if clause.is_true:
        return FALSE
    if clause.is_false:
        return TRUE
    if clause.sql is None:
        return Clause(fts=f"{ALL_TOKEN} NOT ({clause.fts})")
    sql, params = clause.as_sql()
    return Clause(sql=f"NOT {sql}", params=params)


_KUBERNETES = '$."kubernetes"'


def _json_path(path: str) -> str | None:
    """SQLite JSON path of a dotted record field; label and annotation keys stay whole."""
    for family in ("kubernetes.labels.", "kubernetes.annotations."):
        if path.startswith(family):
            keys = [*family.rstrip(".").split("."), path[len(family) :]]
            break
    else:
        keys = path.split(".")
    if any('"' in key or not key for key in keys):
        return None
    return "$" + "".join(f'."{key}"' for key in keys)


class _Translator:
    def __init__(self, vocabulary: Vocabulary, expansion_limit: int) -> None:
        self.vocabulary = vocabulary
        self.expansion_limit = expansion_limit

    def item(self, item: Item, spec: FieldSpec | None) -> Clause:
        if isinstance(item, SearchField):
            return self.item(item.expr, resolve_field(str(item.name), getattr(item, "pos", None)))
        if isinstance(item, (AndOperation, UnknownOperation)):
            return and_clauses([self.item(child, spec) for child in item.children])
        if isinstance(item, OrOperation):
            return _or_clauses([self.item(child, spec) for child in item.children])
        if isinstance(item, (Group, FieldGroup, Plus)):
            return self.item(item.children[0], spec)
        if isinstance(item, (Not, Prohibit)):
            return _not_clause(self.item(item.children[0], spec))
        field = spec or FieldSpec(DEFAULT_FIELD, "text")
        if isinstance(item, (Word, Phrase, Regex, Range, From, To)):
            return self.leaf(item, field)
        raise QueryError(f"unsupported query element {str(item)!r}", getattr(item, "pos", None))

    # -- leaves ---------------------------------------------------------------

    def leaf(self, item: Item, field: FieldSpec) -> Clause:
        if field.path == DEFAULT_FIELD:
            return self.text(item)
        column = TOKEN_FIELDS.get(field.path)
        if column is not None:
            return self.token_field(item, column)
        expr, params = self.expression(field.path)
        if expr is None:
            return FALSE
        number = field.path in _NUMBER_FIELDS or field.kind == "number"
        return self.value_field(item, field, expr, params, number=number)

    def text(self, item: Item) -> Clause:
        message = "json_extract(r.doc, '$.message')"
        if isinstance(item, Regex):
            pattern = _regex_body(item)
            return Clause(sql=f"regexp_search(?, {message})", params=(pattern,))
        if isinstance(item, Phrase):
            text = phrase_text(item)
        elif isinstance(item, Word):
            value = str(item.value)
            if value == "*":
                return TRUE
            if item.has_wildcard():
                return self.text_wildcard(value, message)
            text = str(item.unescaped_value)
        else:  # ranges on text are rejected by the parser
            raise QueryError("ranges do not apply to message", getattr(item, "pos", None))
        if not _has_token_chars(text):
            return Clause(sql=f"instr(lower({message}), ?) > 0", params=(text.lower(),))
        return Clause(fts=f"message:{fts_string(text)}")

    def text_wildcard(self, value: str, message: str) -> Clause:
        prefix = _trailing_prefix(value)
        if prefix is not None and _has_token_chars(prefix):
            return Clause(fts=f"message:{fts_string(prefix)}*")
        # Inner or leading wildcards: some word of the message must match the pattern.
        regex = r"(?i)(?<!\w)" + wildcard_regex(value, any_char=r"\w") + r"(?!\w)"
        scan = Clause(sql=f"regexp_search(?, {message})", params=(regex,))
        head = re.sub(r"\\(.)", r"\1", re.split(r"(?<!\\)[*?]", value)[0])
        if _has_token_chars(head):
            # Narrow the scan to messages with a word starting with the literal head.
            return and_clauses([Clause(fts=f"message:{fts_string(head)}*"), scan])
        return scan

    def token_field(self, item: Item, column: str) -> Clause:
        ids: list[int]
        if isinstance(item, (Word, Phrase)):
            if isinstance(item, Word) and str(item.value) == "*":
                return Clause(sql=f"r.{column} IS NOT NULL")
            if isinstance(item, Word) and item.has_wildcard():
                pattern = re.compile(wildcard_regex(str(item.value)), re.DOTALL)
                ids = self.vocabulary.ids(column, lambda v: pattern.fullmatch(v) is not None)
            else:
                text = phrase_text(item) if isinstance(item, Phrase) else str(item.unescaped_value)
                found = self.vocabulary.id_of(column, text)
                ids = [] if found is None else [found]
        elif isinstance(item, Regex):
            pattern = re.compile(_regex_body(item))
            ids = self.vocabulary.ids(column, lambda v: pattern.fullmatch(v) is not None)
        else:
            low, high, include_low, include_high = _bounds(item)
            ids = self.vocabulary.ids(
                column, lambda v: _in_range(v, low, high, include_low, include_high)
            )
        return self.id_set(column, ids)

    def id_set(self, column: str, ids: list[int]) -> Clause:
        return id_set(column, ids, self.expansion_limit)

    @staticmethod
    def expression(path: str) -> tuple[str | None, tuple[Any, ...]]:
        column = COLUMN_FIELDS.get(path)
        if column is not None:
            return column, ()
        json_path = _json_path(path)
        if json_path is None:
            return None, ()
        if json_path == _KUBERNETES or json_path.startswith((f"{_KUBERNETES}.", f"{_KUBERNETES}[")):
            # The section is in ``shared`` when the row names one (see embedded_schema).
            inner = "$" + json_path[len(_KUBERNETES) :]
            return (
                "(CASE WHEN r.k IS NULL THEN json_extract(r.doc, ?)"
                " ELSE (SELECT json_extract(shared.doc, ?) FROM shared WHERE shared.id = r.k) END)"
            ), (json_path, inner)
        return "json_extract(r.doc, ?)", (json_path,)

    def value_field(
        self, item: Item, field: FieldSpec, expr: str, params: tuple[Any, ...], *, number: bool
    ) -> Clause:
        if isinstance(item, Word) and str(item.value) == "*":
            return Clause(sql=f"{expr} IS NOT NULL", params=params)
        if isinstance(item, Word) and item.has_wildcard():
            regex = wildcard_regex(str(item.value))
            return Clause(
                sql=f"regexp_full(?, CAST({expr} AS TEXT))", params=(regex, *params)
            )
        if isinstance(item, Regex):
            return Clause(
                sql=f"regexp_full(?, CAST({expr} AS TEXT))", params=(_regex_body(item), *params)
            )
        if isinstance(item, (Word, Phrase)):
            text = phrase_text(item) if isinstance(item, Phrase) else str(item.unescaped_value)
            numeric = _as_number(text) if isinstance(item, Word) else None
            if number:
                if numeric is None:
                    return FALSE
                return Clause(sql=f"{expr} = ?", params=(*params, numeric))
            if numeric is not None and field.kind == "any":
                return Clause(sql=f"{expr} IN (?, ?)", params=(*params, numeric, text))
            return Clause(sql=f"{expr} = ?", params=(*params, text))
        low, high, include_low, include_high = _bounds(item)
        if field.path == "@timestamp":
            return self.timestamp_range(low, high, include_low, include_high, expr, params)
        conditions: list[str] = []
        values: list[Any] = []
        for bound, op in ((low, ">=" if include_low else ">"), (high, "<=" if include_high else "<")):
            if bound is None:
                continue
            numeric = _as_number(bound)
            if number or (field.kind == "any" and numeric is not None):
                if numeric is None:
                    return FALSE
                conditions.append(f"{expr} {op} ?")
                values.extend((*params, numeric))
            else:
                conditions.append(f"CAST({expr} AS TEXT) {op} ?")
                values.extend((*params, bound))
        if not conditions:
            return Clause(sql=f"{expr} IS NOT NULL", params=params)
        return Clause(sql="(" + " AND ".join(conditions) + ")", params=tuple(values))

    @staticmethod
    def timestamp_range(
        low: str | None,
        high: str | None,
        include_low: bool,
        include_high: bool,
        expr: str,
        params: tuple[Any, ...],
    ) -> Clause:
        """``@timestamp`` ranges compare instants (``r.ts``) when the bounds parse."""
        conditions: list[str] = []
        values: list[Any] = []
        for bound, op in ((low, ">=" if include_low else ">"), (high, "<=" if include_high else "<")):
            if bound is None:
                continue
            try:
                ns = parse_timestamp_ns(bound)
            except (ValueError, OverflowError):
                conditions.append(f"{expr} {op} ?")
                values.extend((*params, bound))
            else:
                conditions.append(f"r.ts {op} ?")
                values.append(max(INT64_MIN, min(INT64_MAX, ns)))  # SQLite integers are 64-bit
        if not conditions:
            return TRUE
        return Clause(sql="(" + " AND ".join(conditions) + ")", params=tuple(values))


def _regex_body(item: Regex) -> str:
    """The pattern of ``/.../``; QueryError when Python's ``re`` cannot compile it."""
    body = str(item.value)[1:-1]
    try:
        re.compile(body)
    except re.error as exc:
        raise QueryError(f"invalid regular expression: {exc}", getattr(item, "pos", None)) from exc
    return body


def _bounds(item: Item) -> tuple[str | None, str | None, bool, bool]:
    def value(bound: Any) -> str | None:
        text = str(bound.unescaped_value) if isinstance(bound, Word) else str(bound)
        return None if text == "*" else text

    if isinstance(item, Range):
        return value(item.low), value(item.high), bool(item.include_low), bool(item.include_high)
    if isinstance(item, From):
        return value(item.a), None, bool(item.include), True
    if isinstance(item, To):
        return None, value(item.a), True, bool(item.include)
    raise QueryError(f"unsupported query element {str(item)!r}", getattr(item, "pos", None))


def _in_range(
    value: str, low: str | None, high: str | None, include_low: bool, include_high: bool
) -> bool:
    if low is not None and (value < low or (value == low and not include_low)):
        return False
    return not (high is not None and (value > high or (value == high and not include_high)))


def _as_number(text: str) -> int | float | None:
    """An integer (64-bit, as SQLite stores them) or a finite float; None for other text."""
    try:
        value = int(text)
    except ValueError:
        pass
    else:
        if INT64_MIN <= value <= INT64_MAX:
            return value
    try:
        number = float(text)
    except (ValueError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def id_set(column: str, ids: Sequence[int], expansion_limit: int) -> Clause:
    """Records whose dictionary ``column`` is one of ``ids``: meta tokens, or SQL when many."""
    if not ids:
        return FALSE
    if len(ids) <= expansion_limit:
        return Clause(fts=_meta(sorted(ids)))
    return Clause(
        sql=f"r.{column} IN (SELECT value FROM json_each(?))",  # noqa: S608 - column from TOKEN_FIELDS
        params=("[" + ",".join(map(str, ids)) + "]",),
    )


def translate(tree: Item | None, vocabulary: Vocabulary, expansion_limit: int = 1000) -> Clause:
    """The :class:`Clause` of a validated query tree (None matches everything)."""
    if tree is None:
        return TRUE
    return _Translator(vocabulary, expansion_limit).item(tree, None)


def glob_match(patterns: Sequence[str], value: str) -> bool:
    """True when ``value`` matches one of the fnmatch ``patterns`` (case-sensitive)."""
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)
