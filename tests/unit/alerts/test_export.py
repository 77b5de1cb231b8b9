"""`podlog alerts export --format opensearch-monitors`: monitors that follow the plugin's documented shape.

The schema below is written from the Alerting API's "Create a query-level
monitor" and "Create a bucket-level monitor" request bodies
(docs.opensearch.org, observing-your-data/alerting/api).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the test extra
import pytest

from podlog.cli import main
from search.alerts.export import monitors_of
from search.alerts.rules import parse_rules

_SCRIPT = {
    "type": "object", "required": ["source", "lang"],
    "properties": {"source": {"type": "string"}, "lang": {"const": "painless"}},
}
_TRIGGER_BODY = {
    "type": "object", "required": ["name", "severity", "condition", "actions"],
    "properties": {
        "name": {"type": "string"}, "severity": {"enum": ["1", "2", "3", "4", "5"]},
        "actions": {"type": "array"},
    },
}
MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "name", "monitor_type", "enabled", "schedule", "inputs", "triggers"],
    "properties": {
        "type": {"const": "monitor"},
        "name": {"type": "string"},
        "monitor_type": {"enum": ["query_level_monitor", "bucket_level_monitor"]},
        "enabled": {"type": "boolean"},
        "schedule": {
            "type": "object", "required": ["period"],
            "properties": {"period": {
                "type": "object", "required": ["interval", "unit"],
                "properties": {"interval": {"type": "integer", "minimum": 1},
                               "unit": {"enum": ["MINUTES", "HOURS", "DAYS"]}},
            }},
        },
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["search"],
            "properties": {"search": {
                "type": "object", "required": ["indices", "query"],
                "properties": {"indices": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                               "query": {"type": "object", "required": ["query"]}},
            }},
        }},
        "triggers": {"type": "array", "minItems": 1},
    },
    "allOf": [
        {
            "if": {"properties": {"monitor_type": {"const": "query_level_monitor"}}},
            "then": {"properties": {"triggers": {"items": {
                "allOf": [_TRIGGER_BODY, {"properties": {"condition": {
                    "type": "object", "required": ["script"], "properties": {"script": _SCRIPT}}}}],
            }}}},
        },
        {
            "if": {"properties": {"monitor_type": {"const": "bucket_level_monitor"}}},
            "then": {"properties": {"triggers": {"items": {
                "type": "object", "required": ["bucket_level_trigger"],
                "properties": {"bucket_level_trigger": {"allOf": [_TRIGGER_BODY, {"properties": {"condition": {
                    "type": "object", "required": ["buckets_path", "parent_bucket_path", "script"],
                    "properties": {"script": _SCRIPT}}}}]}},
            }}}},
        },
    ],
}

RULES = """
rules:
  - name: errors
    query: 'level:error AND "payment failed"'
    namespaces: [shop, 'team-*']
    window: 5m
    interval: 2m
    condition: count >= 10
    severity: critical
  - name: per-pod
    query: 'level:error'
    window: 10m
    condition: count <= 3
    group_by: pod
  - name: silent
    query: 'pod:nightly-*'
    window: 1h
    interval: 30s
    condition: absent
    severity: info
"""


def test_every_monitor_follows_the_documented_create_monitor_body() -> None:
    """Ungrouped rules become query-level monitors, grouped ones bucket-level monitors, all valid."""
    monitors = monitors_of(parse_rules(RULES), "podlog")
    for monitor in monitors:
        jsonschema.validate(monitor, MONITOR_SCHEMA)
    errors, per_pod, silent = monitors
    assert errors["monitor_type"] == "query_level_monitor"
    assert errors["schedule"] == {"period": {"interval": 2, "unit": "MINUTES"}}
    assert errors["inputs"][0]["search"]["indices"] == ["podlog-logs-*"]
    (trigger,) = errors["triggers"]
    assert trigger["severity"] == "1"
    assert trigger["condition"]["script"]["source"] == "ctx.results[0].hits.total.value >= 10"
    window, _query, scope = errors["inputs"][0]["search"]["query"]["query"]["bool"]["filter"]
    assert window["range"]["@timestamp"]["gte"] == "{{period_end}}||-300000ms"
    assert {"term": {"kubernetes.namespace": "shop"}} in scope["bool"]["should"]
    assert per_pod["monitor_type"] == "bucket_level_monitor"
    sources = per_pod["inputs"][0]["search"]["query"]["aggregations"]["composite_agg"]["composite"]["sources"]
    assert sources == [{"pod": {"terms": {"field": "kubernetes.pod.name"}}}]
    bucket = per_pod["triggers"][0]["bucket_level_trigger"]["condition"]
    assert bucket["script"]["source"] == "params._count <= 3"
    assert silent["triggers"][0]["condition"]["script"]["source"] == "ctx.results[0].hits.total.value == 0"
    assert silent["schedule"]["period"] == {"interval": 1, "unit": "MINUTES"}


def test_the_export_command_prints_the_monitors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command writes a JSON list, one monitor per rule, with the given index prefix."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert main(["alerts", "export", "--format", "opensearch-monitors", "--index-prefix", "logs", str(rules)]) == 0
    monitors = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in monitors] == ["errors", "per-pod", "silent"]
    assert monitors[0]["inputs"][0]["search"]["indices"] == ["logs-logs-*"]
