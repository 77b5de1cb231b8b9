"""Index names and template bodies: the contract search relies on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.config import OpenSearchConfig
from indexer.templates import (
    Capabilities,
    dlq_template_body,
    index_name,
    index_template_body,
    parse_index_name,
)

CAPS = Capabilities("opensearch", (3, 8), "flat_object", ism=False)


def test_index_name_uses_the_utc_day() -> None:
    """2026-11-26T23:59:59.999999999Z is still the 26th; midnight is the 27th."""
    midnight = 1_795_737_600 * 10**9
    assert index_name("podlog", "short", midnight - 1) == "podlog-logs-short-2026.11.26"
    assert index_name("podlog", "short", midnight) == "podlog-logs-short-2026.11.27"


@settings(max_examples=50)
@given(
    klass=st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
    ts=st.integers(min_value=0, max_value=4_000_000_000 * 10**9),
)
def test_index_names_parse_back(klass: str, ts: int) -> None:
    """parse_index_name inverts index_name, giving the class and the UTC day."""
    name = index_name("p", klass, ts)
    parsed = parse_index_name("p", name)
    assert parsed is not None
    day = datetime.fromtimestamp(ts // 10**9, tz=UTC).replace(hour=0, minute=0, second=0)
    assert parsed == (klass, day)


def test_parse_rejects_foreign_names() -> None:
    """Names outside the family or without a day are not log indices."""
    assert parse_index_name("p", "p-dlq") is None
    assert parse_index_name("p", "p-logs-short-latest") is None
    assert parse_index_name("p", "q-logs-short-2026.01.01") is None


def _props(body: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = body["template"]["mappings"]["properties"]
    return props


def test_template_maps_every_contract_field() -> None:
    """Every contract field has an explicit type; nothing is mapped dynamically."""
    config = OpenSearchConfig(index_prefix="pl", message_ignore_above=999)
    body = index_template_body(config, CAPS)
    assert body["index_patterns"] == ["pl-logs-*"]
    assert body["template"]["mappings"]["dynamic"] is False
    props = _props(body)
    assert props["@timestamp"] == {
        "type": "date_nanos", "format": "strict_date_optional_time_nanos",
    }  # fmt: skip
    assert props["timestamp_ns"] == {"type": "long"}
    assert props["message"]["type"] == "text"
    assert props["message"]["fields"]["keyword"]["ignore_above"] == 999
    for name in ("level", "stream"):
        assert props[name]["type"] == "keyword"
    assert props["event"]["properties"]["id"]["type"] == "keyword"
    log = props["log"]["properties"]
    assert log["file"]["properties"]["identity"]["type"] == "keyword"
    assert log["file"]["properties"]["path"]["type"] == "keyword"
    assert (log["offset"]["type"], log["generation"]["type"], log["truncated"]["type"]) == (
        "long", "long", "boolean",
    )  # fmt: skip
    k8s = props["kubernetes"]["properties"]
    assert k8s["namespace"]["type"] == "keyword"
    assert k8s["pod"]["properties"]["name"]["type"] == "keyword"
    assert k8s["container"]["properties"]["restart_count"]["type"] == "integer"
    assert k8s["labels"] == k8s["annotations"] == props["json"] == {"type": "flat_object"}
    assert all(v["type"] == "keyword" for v in props["podlog"]["properties"].values())
    settings_ = body["template"]["settings"]
    assert settings_["codec"] == "best_compression"


def test_object_fallback_stores_maps_unindexed_with_keyword_lists() -> None:
    """Without a flat type, maps are unindexed objects plus keyword key=value lists."""
    caps = Capabilities("opensearch", (2, 3), "object", ism=False)
    props = _props(index_template_body(OpenSearchConfig(), caps))
    assert props["json"] == {"type": "object", "enabled": False}
    assert props["json_kv"]["type"] == "keyword"
    assert props["kubernetes"]["properties"]["labels_kv"]["type"] == "keyword"


def test_dlq_template_stores_the_record_without_indexing_it() -> None:
    """The DLQ keeps the original record verbatim and indexes reason and position."""
    body = dlq_template_body(OpenSearchConfig(index_prefix="pl"))
    assert body["index_patterns"] == ["pl-dlq"]
    props = _props(body)
    assert props["record"] == {"type": "object", "enabled": False}
    assert props["kafka"]["properties"]["offset"]["type"] == "long"
