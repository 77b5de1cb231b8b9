"""The OpenSearch Dashboards saved objects match podlog's indices and mappings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from indexer.config import OpenSearchConfig
from indexer.templates import (
    Capabilities,
    dlq_index,
    dlq_template_body,
    index_template_body,
    logs_pattern,
)
from tests.unit.deploy.conftest import REPO

NDJSON = REPO / "deploy" / "dashboards" / "podlog.ndjson"
KQL_FIELD = re.compile(r"([\w.@]+)\s*(?::|>=|<=|>|<)")


@pytest.fixture(scope="module")
def saved_objects() -> list[dict[str, Any]]:
    lines = [line for line in NDJSON.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def mapped_fields(mapping: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field name -> type of every field in an index mapping."""
    fields: dict[str, str] = {}
    for name, spec in mapping.get("properties", {}).items():
        key = f"{prefix}{name}"
        if "properties" in spec:
            fields.update(mapped_fields(spec, key + "."))
        else:
            fields[key] = spec.get("type", "object")
            for sub, sub_spec in spec.get("fields", {}).items():
                fields[f"{key}.{sub}"] = sub_spec["type"]
    return fields


def index_fields() -> dict[str, dict[str, str]]:
    """Fields of each index pattern title, from the indexer's templates."""
    config = OpenSearchConfig()
    capabilities = Capabilities("opensearch", (2, 18), "flat_object", ism=True)
    logs = index_template_body(config, capabilities)["template"]["mappings"]
    dlq = dlq_template_body(config)["template"]["mappings"]
    return {
        logs_pattern(config.index_prefix): mapped_fields(logs),
        dlq_index(config.index_prefix): mapped_fields(dlq),
    }


def test_every_line_is_a_saved_object_with_a_unique_id(saved_objects: list[dict[str, Any]]) -> None:
    """Each NDJSON line is an object of a known type with a unique id and a title."""
    ids = [o["id"] for o in saved_objects]
    assert len(ids) == len(set(ids))
    for obj in saved_objects:
        assert obj["type"] in {"index-pattern", "search"}
        assert obj["attributes"]["title"]
        assert obj["type"] in obj["migrationVersion"]


def test_index_patterns_match_the_indexer_index_names(saved_objects: list[dict[str, Any]]) -> None:
    """The patterns cover the log indices and the dead-letter index, by their time field."""
    fields = index_fields()
    patterns = [o for o in saved_objects if o["type"] == "index-pattern"]
    assert {p["attributes"]["title"] for p in patterns} == set(fields)
    for pattern in patterns:
        time_field = pattern["attributes"]["timeFieldName"]
        assert fields[pattern["attributes"]["title"]][time_field] in ("date", "date_nanos")


def test_saved_searches_use_mapped_fields(saved_objects: list[dict[str, Any]]) -> None:
    """Every saved search references an index pattern here, and its columns and query
    fields exist in that index's mapping."""
    patterns = {o["id"]: o for o in saved_objects if o["type"] == "index-pattern"}
    fields = index_fields()
    searches = [o for o in saved_objects if o["type"] == "search"]
    assert len(searches) >= 5
    for search in searches:
        title = search["attributes"]["title"]
        (reference,) = search["references"]
        assert reference["type"] == "index-pattern"
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["indexRefName"] == reference["name"]
        known = fields[patterns[reference["id"]]["attributes"]["title"]]
        for column in search["attributes"]["columns"]:
            assert column in known, f"{title}: column {column} is not mapped"
        for field in KQL_FIELD.findall(source["query"]["query"]):
            assert field in known, f"{title}: query field {field} is not mapped"
        for field, _direction in search["attributes"]["sort"]:
            assert field in known, f"{title}: sort field {field} is not mapped"


def test_common_views_are_covered(saved_objects: list[dict[str, Any]]) -> None:
    """All logs, errors, stderr and dead letters each have a saved search."""
    queries = {
        json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        for o in saved_objects
        if o["type"] == "search"
    }
    assert "" in queries
    assert any(q.startswith("level:") for q in queries)
    assert "stream:stderr" in queries
    dlq = [o for o in saved_objects if o["type"] == "search" and o["references"][0]["id"] == "podlog-dlq"]
    assert dlq
