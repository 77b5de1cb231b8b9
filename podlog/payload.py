"""Application payloads: a JSON or logfmt message becomes the record's ``json`` field.

Applications that log structured lines (zap, logrus, zerolog, pino, structlog,
python-json-logger, ...) put their own fields in the message.  podlog parses
them into the record's ``json`` field and takes the level from the common
conventions (``level``, ``severity``, ``lvl``, ``levelname``, ``log.level``),
while ``message`` keeps the original line untouched.  The payload lives only
under ``json``, so it can never overwrite podlog's own fields.

Depth and field count are bounded: an object nested deeper than
``max_depth`` stays a JSON string, and fields past ``max_fields`` are left out
of ``json`` (the original line is still in ``message``).  Parsing never
raises: a message that is not a payload gives a :class:`PayloadRejected` with
a bounded ``error_code``, or None when it does not even look like one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

__all__ = [
    "PARSERS",
    "Payload",
    "PayloadLimits",
    "PayloadRejected",
    "PayloadsParsed",
    "normalize_level",
    "parse_logfmt",
    "parse_payload",
    "parse_payloads",
]

PARSERS = ("json", "logfmt", "none")
"""Values of ``podlog.io/parser`` and ``kubernetes.default_parser``."""

_LEVEL_KEYS = ("level", "severity", "lvl", "levelname", "loglevel", "Level", "Severity", "@l")

_LEVEL_WORDS = {
    "trace": "trace",
    "trc": "trace",
    "t": "trace",
    "debug": "debug",
    "dbg": "debug",
    "d": "debug",
    "info": "info",
    "inf": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "i": "info",
    "warn": "warn",
    "warning": "warn",
    "wrn": "warn",
    "w": "warn",
    "error": "error",
    "err": "error",
    "erro": "error",
    "e": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "panic": "fatal",
    "alert": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "f": "fatal",
    "c": "fatal",
}

# pino / bunyan numeric levels.
_LEVEL_NUMBERS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}

_MAX_LEVEL_CHARS = 16
_LEVEL_MEMO_SIZE = 1024
_MISSING = object()
_level_memo: dict[str, object] = {}

_LOGFMT_TOKEN = re.compile(
    r'\s*([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*)))?(?=\s|$)', re.DOTALL
)
_LOGFMT_ESCAPES = re.compile(r"\\(.)", re.DOTALL)
_ESCAPE_MAP = {"n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """How much of a payload is kept as structure."""

    max_depth: int = 5
    """Objects nested deeper than this stay JSON strings."""
    max_fields: int = 100
    """Most fields (keys at any depth) kept in ``json``."""


class Payload(NamedTuple):
    """A parsed application payload."""

    fields: dict[str, Any]
    """The bounded payload, for the record's ``json`` field."""
    level: str | None
    """Normalised level (trace, debug, info, warn, error, fatal or the app's own word)."""
    truncated: bool
    """True when depth or field limits cut something."""


class PayloadRejected(NamedTuple):
    """A message that the requested parser could not read."""

    error_code: str
    """Bounded reason: ``invalid_json``, ``not_an_object``, ``invalid_logfmt``."""


@dataclass(slots=True)
class PayloadsParsed:
    """What :func:`parse_payloads` did to a list of records, for the caller's metrics."""

    parsed: int = 0
    truncated: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """By ``error_code``."""


def parse_payloads(records: list[dict[str, Any]], parser: str, limits: PayloadLimits) -> PayloadsParsed:
    """Fill ``json`` (and ``level`` when unset) of every record whose message is a payload.

    Records that already carry ``json`` are left alone.  Under ``json`` (the
    default) only a message that starts with ``{`` (after blanks) is tried.
    """
    counts = PayloadsParsed()
    if parser == "none":
        return counts
    json_only = parser != "logfmt"
    for record in records:
        message = record.get("message")
        if type(message) is not str:
            continue
        if json_only:
            # Only an object can be a payload: skip the rest without a call (most
            # text starts with a printable ASCII character; a stack frame with a tab).
            first = message[:1]
            if first != "{" and (
                not first or " " < first < "\x80" or not first.isspace()
                or message.lstrip()[:1] != "{"
            ):
                continue
        if record.get("json") is not None:
            continue
        result = parse_payload(message, parser, limits)
        if result is None:
            continue
        if isinstance(result, PayloadRejected):
            counts.rejected[result.error_code] = counts.rejected.get(result.error_code, 0) + 1
            continue
        record["json"] = result.fields
        if result.level is not None and record.get("level") is None:
            record["level"] = result.level
        counts.parsed += 1
        counts.truncated += result.truncated
    return counts


def parse_payload(
    message: str, parser: str, limits: PayloadLimits
) -> Payload | PayloadRejected | None:
    """Parse ``message`` with ``parser`` (``json``, ``logfmt`` or ``none``).

    JSON is tried for any message that looks like an object, also under
    ``logfmt``.  None means the message is plain text (nothing to count).
    """
    if parser == "none" or not message:
        return None
    # orjson skips surrounding whitespace and stripping removes no ':', '{' or '[',
    # so a message that starts with '{' is parsed and counted as it is, uncopied.
    text = message if message[0] == "{" else message.strip()
    if text.startswith("{"):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return PayloadRejected("invalid_json")
        if not isinstance(doc, dict):
            return PayloadRejected("not_an_object")
        # Cheap bounds first: no bracket past the first means a flat object (its
        # fields are len(doc)); else nesting <= brackets and fields <= colons.
        if text.find("{", 1) < 0 and "[" not in text:
            if len(doc) <= limits.max_fields:
                return Payload(doc, _find_level(doc), False)
        elif (
            text.count(":") <= limits.max_fields
            and text.count("{") + text.count("[") <= limits.max_depth
        ):
            return Payload(doc, _find_level(doc), False)
        return _bounded_payload(doc, limits)
    if parser == "logfmt":
        pairs = parse_logfmt(text)
        if pairs is None:
            return PayloadRejected("invalid_logfmt")
        return _bounded_payload(pairs, limits)
    return None


def parse_logfmt(text: str) -> dict[str, Any] | None:
    """``key=value key2="quoted value" flag`` to a dict; None unless the whole line
    is logfmt with at least one ``key=value`` pair.  Bare keys become ``True``."""
    result: dict[str, Any] = {}
    position = 0
    has_pair = False
    length = len(text)
    while position < length:
        match = _LOGFMT_TOKEN.match(text, position)
        if match is None or match.end() == position:
            return None
        key, quoted, plain = match.group(1), match.group(2), match.group(3)
        if quoted is not None:
            result[key] = _LOGFMT_ESCAPES.sub(_unescape, quoted)
            has_pair = True
        elif plain is not None:
            result[key] = plain
            has_pair = True
        else:
            result[key] = True
        position = match.end()
        while position < length and text[position].isspace():
            position += 1
    return result if has_pair else None


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _ESCAPE_MAP.get(char, char)


def normalize_level(value: Any) -> str | None:
    """A payload's level value as a short lowercase word, or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _LEVEL_NUMBERS.get(value)
    if not isinstance(value, str):
        return None
    known = _level_memo.get(value, _MISSING)
    if known is not _MISSING:
        return known  # type: ignore[return-value]
    word = value.strip().lower()
    level = None if not word or len(word) > _MAX_LEVEL_CHARS else _LEVEL_WORDS.get(word, word)
    if len(_level_memo) < _LEVEL_MEMO_SIZE:
        _level_memo[value] = level
    return level


def _find_level(doc: dict[str, Any]) -> str | None:
    for key in _LEVEL_KEYS:
        if key in doc:
            level = normalize_level(doc[key])
            if level is not None:
                return level
    log = doc.get("log")
    if isinstance(log, dict) and "level" in log:
        return normalize_level(log["level"])
    if "log.level" in doc:
        return normalize_level(doc["log.level"])
    return None


def _bounded_payload(doc: dict[str, Any], limits: PayloadLimits) -> Payload:
    if _fits(doc, 1, limits.max_depth, limits.max_fields) >= 0:
        return Payload(doc, _find_level(doc), False)  # the common case: no copy
    budget = [limits.max_fields]
    truncated = [False]
    fields = _bound(doc, 1, limits.max_depth, budget, truncated)
    return Payload(fields, _find_level(doc), truncated[0])


def _fits(obj: dict[str, Any], depth: int, max_depth: int, budget: int) -> int:
    """The field budget left after ``obj``, or -1 when it breaks a limit."""
    budget -= len(obj)
    if budget < 0:
        return -1
    for value in obj.values():
        kind = type(value)
        if kind is dict:
            if depth >= max_depth:
                return -1
            budget = _fits(value, depth + 1, max_depth, budget)
        elif kind is list:
            budget = _fits_list(value, depth, max_depth, budget)
        if budget < 0:
            return -1
    return budget


def _fits_list(items: list[Any], depth: int, max_depth: int, budget: int) -> int:
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            if depth >= max_depth:
                return -1
            if kind is dict:
                budget = _fits(item, depth + 1, max_depth, budget)
            else:
                budget = _fits_list(item, depth + 1, max_depth, budget)
            if budget < 0:
                return -1
    return budget


def _bound(
    obj: dict[str, Any], depth: int, max_depth: int, budget: list[int], truncated: list[bool]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if budget[0] <= 0:
            truncated[0] = True
            break
        budget[0] -= 1
        if isinstance(value, dict):
            if depth >= max_depth:
                out[key] = orjson.dumps(value).decode()
                truncated[0] = True
            else:
                out[key] = _bound(value, depth + 1, max_depth, budget, truncated)
        elif isinstance(value, list):
            out[key] = _bound_list(value, depth, max_depth, budget, truncated)
        else:
            out[key] = value
    return out


def _bound_list(
    items: list[Any], depth: int, max_depth: int, budget: list[int], truncated: list[bool]
) -> Any:
    if depth >= max_depth and any(isinstance(item, (dict, list)) for item in items):
        truncated[0] = True
        return orjson.dumps(items).decode()
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            out.append(_bound(item, depth + 1, max_depth, budget, truncated))
        elif isinstance(item, list):
            out.append(_bound_list(item, depth + 1, max_depth, budget, truncated))
        else:
            out.append(item)
    return out
