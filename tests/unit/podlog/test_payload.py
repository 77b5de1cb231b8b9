"""Application payload parsing: JSON and logfmt into ``json``, bounded, never raising."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from podlog.payload import (
    Payload,
    PayloadLimits,
    PayloadRejected,
    normalize_level,
    parse_logfmt,
    parse_payload,
)

LIMITS = PayloadLimits(max_depth=3, max_fields=10)


def test_json_object_is_parsed_and_level_normalised() -> None:
    """A zap-style line gives its fields and a lowercase level."""
    result = parse_payload('{"level":"WARN","msg":"disk low","free":12}', "json", LIMITS)
    assert isinstance(result, Payload)
    assert result.fields == {"level": "WARN", "msg": "disk low", "free": 12}
    assert result.level == "warn"
    assert not result.truncated


def test_level_conventions_are_recognised() -> None:
    """severity, lvl, levelname, pino numbers and ECS log.level all give a level."""
    cases = {
        '{"severity":"ERROR"}': "error",
        '{"lvl":"dbug"}': "dbug",
        '{"levelname":"WARNING"}': "warn",
        '{"level":50}': "error",
        '{"log":{"level":"info"}}': "info",
        '{"log.level":"critical"}': "fatal",
        '{"msg":"no level here"}': None,
    }
    for line, level in cases.items():
        result = parse_payload(line, "json", LIMITS)
        assert isinstance(result, Payload), line
        assert result.level == level, line


def test_plain_text_is_not_a_payload() -> None:
    """A plain message is left alone and not counted as a failure."""
    assert parse_payload("GET /healthz 200", "json", LIMITS) is None
    assert parse_payload("", "json", LIMITS) is None


def test_broken_json_is_rejected_with_a_code() -> None:
    """A message that looks like JSON but is not gives invalid_json."""
    assert parse_payload('{"level": "info", ', "json", LIMITS) == PayloadRejected("invalid_json")


def test_parser_none_parses_nothing() -> None:
    """podlog.io/parser: none leaves even JSON messages as text."""
    assert parse_payload('{"a":1}', "none", LIMITS) is None


def test_logfmt_is_parsed_only_when_asked() -> None:
    """logfmt lines become fields under the logfmt parser, and stay text under json."""
    line = 'level=info msg="request done" status=200 cached'
    assert parse_payload(line, "json", LIMITS) is None
    result = parse_payload(line, "logfmt", LIMITS)
    assert isinstance(result, Payload)
    assert result.fields == {"level": "info", "msg": "request done", "status": "200", "cached": True}
    assert result.level == "info"


def test_logfmt_handles_escapes_and_rejects_prose() -> None:
    """Quoted values unescape; a sentence without pairs is not logfmt."""
    assert parse_logfmt(r'msg="say \"hi\"\n" x=1') == {"msg": 'say "hi"\n', "x": "1"}
    assert parse_logfmt("just some words") is None
    assert parse_payload("just some words", "logfmt", LIMITS) == PayloadRejected("invalid_logfmt")


def test_depth_beyond_the_limit_stays_a_json_string() -> None:
    """Objects nested past max_depth are kept as their JSON text."""
    line = '{"a":{"b":{"c":{"d":1}}},"list":[{"x":{"y":{"z":2}}}]}'
    result = parse_payload(line, "json", LIMITS)
    assert isinstance(result, Payload)
    assert result.fields["a"]["b"]["c"] == '{"d":1}'
    assert result.truncated


def test_field_count_is_bounded() -> None:
    """Fields past max_fields are left out of json and the payload says it was cut."""
    doc = {f"k{i}": i for i in range(50)}
    result = parse_payload(orjson.dumps(doc).decode(), "json", LIMITS)
    assert isinstance(result, Payload)
    assert len(result.fields) == LIMITS.max_fields
    assert result.truncated


def test_normalize_level_ignores_non_levels() -> None:
    """Booleans, long strings and unknown numbers are not levels."""
    assert normalize_level(True) is None
    assert normalize_level("x" * 40) is None
    assert normalize_level(7) is None
    assert normalize_level(" Info ") == "info"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["json", "logfmt", "none"]))
def test_any_text_gives_a_result_never_an_exception(text: str, parser: str) -> None:
    """Arbitrary messages parse, are rejected, or are left alone: no exception."""
    result = parse_payload(text, parser, LIMITS)
    assert result is None or isinstance(result, (Payload, PayloadRejected))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=8))
def test_bounded_payload_round_trips_within_limits(doc: dict[str, object]) -> None:
    """A JSON object within limits comes back equal; any object stays within the bounds."""
    result = parse_payload(orjson.dumps(doc).decode(), "json", PayloadLimits(3, 20))
    assert isinstance(result, Payload)
    if not result.truncated:
        assert result.fields == doc
    assert _depth(result.fields) <= 3
    assert _count(result.fields) <= 20


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_depth(v) for v in value), default=0)
    return 0


def _count(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count(v) for v in value)
    return 0
