"""The OpenSearch Dashboards saved objects match podlog's indices and mappings.

The file is what ``POST /api/saved_objects/_import`` takes: one saved object
per line, in the shapes OpenSearch Dashboards 2.x exports (``visState``,
``uiStateJSON``, ``panelsJSON`` and ``searchSourceJSON`` as JSON strings, the
index pattern and the panels named through ``references``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
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
METRIC_NAME = re.compile(r"\bpodlog_[a-z_]+\b")
OBJECT_TYPES = {"index-pattern", "search", "visualization", "dashboard"}
FLAT_TYPES = ("flat_object", "flattened", "object")
"""Every way the indexer maps its map-valued fields; the objects must work on each."""

NUMBERS = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
DATES = {"date", "date_nanos"}
AGGREGATION_FIELD_TYPES = {
    "terms": {"keyword", "boolean", "ip"} | NUMBERS,
    "significant_terms": {"keyword", "boolean", "ip"} | NUMBERS,
    "date_histogram": DATES,
    "date_range": DATES,
    "histogram": NUMBERS,
    "range": NUMBERS,
    "avg": NUMBERS,
    "sum": NUMBERS,
    "median": NUMBERS,
    "percentiles": NUMBERS,
    "min": NUMBERS | DATES,
    "max": NUMBERS | DATES,
    "cardinality": {"keyword", "boolean", "ip"} | NUMBERS | DATES,
}
"""Field types a Dashboards aggregation can run on: doc values, never ``text`` or a flat field."""

SCHEMAS = {
    "histogram": {"metric", "segment", "group", "split"},
    "line": {"metric", "segment", "group", "split"},
    "area": {"metric", "segment", "group", "split"},
    "pie": {"metric", "segment", "split"},
    "table": {"metric", "bucket", "split"},
    "metric": {"metric", "group"},
    "markdown": set(),
}
"""Visualisation types used here and the agg schemas their editors offer."""

GRID_COLUMNS = 48


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


def index_fields(flat_type: str = "flat_object") -> dict[str, dict[str, str]]:
    """Fields of each index pattern title, from the indexer's templates."""
    config = OpenSearchConfig()
    capabilities = Capabilities("opensearch", (2, 18), flat_type, ism=True)
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
        assert obj["type"] in OBJECT_TYPES
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


def of_type(saved_objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in saved_objects if o["type"] == kind]


def parsed(obj: dict[str, Any], attribute: str) -> Any:
    """A JSON-string attribute (``visState``, ``panelsJSON``, ...) parsed."""
    return json.loads(obj["attributes"][attribute])


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert isinstance(source, dict)
    return source


def pattern_title(obj: dict[str, Any], saved_objects: list[dict[str, Any]]) -> str | None:
    """Title of the index pattern ``obj``'s search source names, or None without one."""
    source = search_source(obj)
    if "indexRefName" not in source:
        return None
    (reference,) = [r for r in obj["references"] if r["name"] == source["indexRefName"]]
    patterns = {p["id"]: p for p in of_type(saved_objects, "index-pattern")}
    return str(patterns[reference["id"]]["attributes"]["title"])


def aggregated_fields(state: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(agg id, agg type, field)`` of every enabled aggregation that names a field."""
    for agg in state["aggs"]:
        field = agg.get("params", {}).get("field")
        if agg.get("enabled", True) and field:
            yield agg["id"], agg["type"], field


def queries(obj: dict[str, Any]) -> Iterator[str]:
    """Every KQL text a visualisation sends: its search source's and its filters aggs'."""
    yield search_source(obj)["query"]["query"]
    for agg in parsed(obj, "visState")["aggs"]:
        if agg["type"] == "filters":
            for item in agg["params"]["filters"]:
                assert item["input"]["language"] == "kuery"
                yield item["input"]["query"]


def overview(saved_objects: list[dict[str, Any]]) -> dict[str, Any]:
    (dashboard,) = [d for d in of_type(saved_objects, "dashboard") if d["attributes"]["title"] == "podlog overview"]
    return dashboard


def test_every_reference_resolves_to_an_object_in_the_file(saved_objects: list[dict[str, Any]]) -> None:
    """Each reference names an object of its type in the file, once per name, and each
    ``indexRefName`` and ``panelRefName`` names one of the object's references."""
    present = {(o["type"], o["id"]) for o in saved_objects}
    for obj in saved_objects:
        names = [r["name"] for r in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']}: duplicate reference names"
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in present, f"{obj['id']}: {reference} is not in the file"
        if "kibanaSavedObjectMeta" in obj["attributes"]:
            ref_name = search_source(obj).get("indexRefName")
            assert ref_name is None or ref_name in names, f"{obj['id']}: {ref_name} is no reference"
        if obj["type"] == "dashboard":
            used = {panel["panelRefName"] for panel in parsed(obj, "panelsJSON")}
            assert used == set(names), f"{obj['id']}: panels and references differ"


def test_visualisations_parse_as_dashboards_saves_them(saved_objects: list[dict[str, Any]]) -> None:
    """visState, uiStateJSON and searchSourceJSON are JSON; the state repeats the title, each
    agg has a unique id and a schema its visualisation type offers, and every agg a chart
    or a terms order points at exists."""
    visualisations = of_type(saved_objects, "visualization")
    assert len(visualisations) >= 4
    for vis in visualisations:
        title = vis["attributes"]["title"]
        assert vis["migrationVersion"] == {"visualization": "7.10.0"}, title
        state = parsed(vis, "visState")
        assert isinstance(parsed(vis, "uiStateJSON"), dict), title
        source = search_source(vis)
        assert source["query"]["language"] == "kuery" and source["filter"] == [], title
        assert state["title"] == title
        assert state["type"] in SCHEMAS, f"{title}: unknown type {state['type']}"
        ids = [agg["id"] for agg in state["aggs"]]
        assert len(ids) == len(set(ids)), f"{title}: duplicate agg ids"
        metrics = {agg["id"] for agg in state["aggs"] if agg["schema"] == "metric"}
        for agg in state["aggs"]:
            assert agg["schema"] in SCHEMAS[state["type"]], f"{title}: schema {agg['schema']}"
            assert isinstance(agg["enabled"], bool) and isinstance(agg["params"], dict), title
            if agg["type"] == "terms":
                assert agg["params"]["orderBy"] in metrics | {"_key"}, f"{title}: terms ordered by nothing"
                assert agg["params"]["size"] >= 1, title
        for series in state["params"].get("seriesParams", []):
            assert series["data"]["id"] in metrics, f"{title}: series of a missing metric"
        if state["type"] == "markdown":
            assert state["params"]["markdown"].strip() and not vis["references"], title
        else:
            assert metrics and pattern_title(vis, saved_objects), f"{title}: no metric or index pattern"


@pytest.mark.parametrize("flat_type", FLAT_TYPES)
def test_aggregated_fields_exist_with_an_aggregatable_type(saved_objects: list[dict[str, Any]], flat_type: str) -> None:
    """Every field a visualisation aggregates on is in its index's template with a type
    the aggregation can use (``keyword``, never ``text`` or a flat field), whichever
    flat type the cluster got."""
    fields = index_fields(flat_type)
    checked = 0
    for vis in of_type(saved_objects, "visualization"):
        title = vis["attributes"]["title"]
        pattern = pattern_title(vis, saved_objects)
        for agg_id, agg_type, field in aggregated_fields(parsed(vis, "visState")):
            assert pattern is not None, title
            assert field in fields[pattern], f"{title}: agg {agg_id} field {field} is not mapped in {pattern}"
            allowed = AGGREGATION_FIELD_TYPES.get(agg_type)
            assert allowed is not None, f"{title}: no rule for {agg_type} aggregations here"
            assert fields[pattern][field] in allowed, (
                f"{title}: {agg_type} on {field}, mapped as {fields[pattern][field]}"
            )
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("flat_type", FLAT_TYPES)
def test_visualisation_queries_use_mapped_fields(saved_objects: list[dict[str, Any]], flat_type: str) -> None:
    """The fields named in each visualisation's query and filters buckets are mapped."""
    fields = index_fields(flat_type)
    for vis in of_type(saved_objects, "visualization"):
        pattern = pattern_title(vis, saved_objects)
        for query in queries(vis):
            for field in KQL_FIELD.findall(query):
                assert pattern is not None and field in fields[pattern], (
                    f"{vis['attributes']['title']}: query field {field} is not mapped"
                )


def test_time_buckets_use_the_index_pattern_time_field(saved_objects: list[dict[str, Any]]) -> None:
    """A date histogram buckets on the time field the time picker filters on."""
    patterns = {p["attributes"]["title"]: p for p in of_type(saved_objects, "index-pattern")}
    for vis in of_type(saved_objects, "visualization"):
        pattern = pattern_title(vis, saved_objects)
        for _, agg_type, field in aggregated_fields(parsed(vis, "visState")):
            if agg_type == "date_histogram":
                assert pattern is not None
                assert field == patterns[pattern]["attributes"]["timeFieldName"], vis["attributes"]["title"]


def test_dashboard_panels_reference_visualisations_and_searches(saved_objects: list[dict[str, Any]]) -> None:
    """Each panel names, through its reference, a visualisation or saved search in the file."""
    present = {(o["type"], o["id"]) for o in saved_objects}
    dashboards = of_type(saved_objects, "dashboard")
    assert dashboards
    for dashboard in dashboards:
        assert dashboard["migrationVersion"] == {"dashboard": "7.9.3"}
        assert isinstance(parsed(dashboard, "optionsJSON"), dict)
        assert "indexRefName" not in search_source(dashboard)
        references = {r["name"]: r for r in dashboard["references"]}
        panels = parsed(dashboard, "panelsJSON")
        assert panels
        for panel in panels:
            reference = references[panel["panelRefName"]]
            assert reference["type"] in ("visualization", "search")
            assert (reference["type"], reference["id"]) in present
            assert "id" not in panel and "type" not in panel, "panels name their object by reference only"
            assert isinstance(panel["embeddableConfig"], dict)


def test_dashboard_panels_fit_the_grid_without_overlapping(saved_objects: list[dict[str, Any]]) -> None:
    """Panels sit inside the 48-column grid, each with its own index, and none overlap."""
    for dashboard in of_type(saved_objects, "dashboard"):
        cells: dict[tuple[int, int], str] = {}
        indexes = set()
        for panel in parsed(dashboard, "panelsJSON"):
            grid = panel["gridData"]
            assert grid["i"] == panel["panelIndex"] and panel["panelIndex"] not in indexes
            indexes.add(panel["panelIndex"])
            assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "xywh")
            assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['panelIndex']} overlap"
                    cells[(x, y)] = panel["panelIndex"]


def test_every_visualisation_is_on_the_overview_dashboard(saved_objects: list[dict[str, Any]]) -> None:
    """No visualisation is left off the podlog overview, and it holds the errors and
    dead-letter saved searches."""
    dashboard = overview(saved_objects)
    on_it = {(r["type"], r["id"]) for r in dashboard["references"]}
    for vis in of_type(saved_objects, "visualization"):
        assert ("visualization", vis["id"]) in on_it, vis["attributes"]["title"]
    assert {("search", "podlog-errors"), ("search", "podlog-dead-letters")} <= on_it
    assert dashboard["attributes"]["timeRestore"] is True


def test_overview_shows_volume_errors_noisy_pods_and_loss(saved_objects: list[dict[str, Any]]) -> None:
    """The overview has log volume by namespace over time, errors by level, the noisiest
    pods and containers, and what the index holds about loss (dead letters, cut lines)."""
    by_id = {o["id"]: o for o in saved_objects}
    shown = [by_id[r["id"]] for r in overview(saved_objects)["references"] if r["type"] == "visualization"]

    def aggregates(vis: dict[str, Any]) -> set[tuple[str, str]]:
        return {(agg_type, field) for _, agg_type, field in aggregated_fields(parsed(vis, "visState"))}

    def has(*wanted: tuple[str, str], pattern: str = "podlog-logs-*", query: str | None = None) -> bool:
        return any(
            set(wanted) <= aggregates(vis)
            and pattern_title(vis, saved_objects) == pattern
            and (query is None or query in " ".join(queries(vis)))
            for vis in shown
        )

    assert has(("date_histogram", "@timestamp"), ("terms", "kubernetes.namespace"))
    assert has(("terms", "level"), query="level:")
    assert has(("terms", "kubernetes.pod.name"), ("terms", "kubernetes.container.name"))
    assert has(("date_histogram", "@timestamp"), pattern="podlog-dlq")
    assert has(("date_histogram", "@timestamp"), query="log.truncated:true")


def test_metrics_named_in_the_dashboards_exist(saved_objects: list[dict[str, Any]]) -> None:
    """A metric a panel tells the reader to look at is one the agent really exports."""
    import collector.events  # noqa: F401  (registers the collector's metrics)
    import shipper.events  # noqa: F401  (registers the shipper's metrics)
    from podlog.metrics import render

    exported = render().decode()
    named = set()
    for vis in of_type(saved_objects, "visualization"):
        named |= set(METRIC_NAME.findall(parsed(vis, "visState")["params"].get("markdown", "")))
    assert "podlog_collector_lost_bytes_total" in named
    for name in named:
        assert f"# TYPE {name} " in exported, f"{name} is not a podlog metric"
