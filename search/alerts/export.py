"""Rules as OpenSearch Alerting-plugin monitors, for teams that live in OpenSearch Dashboards.

``podlog alerts export --format opensearch-monitors`` writes one monitor per
rule, the body of ``POST _plugins/_alerting/monitors``: a query-level monitor
for an ungrouped rule (its trigger compares the hit count), a bucket-level
monitor for a grouped one (a composite aggregation on the group field, its
trigger compares each bucket's ``_count``).  The query is the same DSL the
search backend sends; the window is a range on ``@timestamp`` ending at the
monitor's ``period_end``.  Actions are left empty: destinations are the
cluster's own.  ``for`` and ``keep_firing_for`` have no monitor equivalent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from search.alerts.rules import Rule
from search.backends.base import FILTER_FIELDS
from search.backends.opensearch_dsl import namespace_clause, query_from_tree

__all__ = ["SEVERITY_LEVELS", "monitor_of", "monitors_of"]

SEVERITY_LEVELS = {"critical": "1", "error": "2", "warning": "3", "info": "4"}
"""The plugin's trigger severities, 1 (highest) to 5."""


def _script(rule: Rule, value: str) -> str:
    if rule.condition.op == "absent":
        return f"{value} == 0"
    return f"{value} {rule.condition.op} {rule.condition.threshold}"


def _schedule(rule: Rule) -> dict[str, Any]:
    seconds = rule.interval_seconds
    if seconds % 60 == 0:
        return {"period": {"interval": int(seconds // 60), "unit": "MINUTES"}}
    return {"period": {"interval": max(1, math.ceil(seconds / 60)), "unit": "MINUTES"}}


def monitor_of(rule: Rule, indices: Sequence[str]) -> dict[str, Any]:
    """The create-monitor body of ``rule`` searching ``indices``."""
    window_ms = int(rule.window_seconds * 1000)
    filters: list[dict[str, Any]] = [
        {"range": {"@timestamp": {
            "gte": f"{{{{period_end}}}}||-{window_ms}ms", "lte": "{{period_end}}", "format": "epoch_millis",
        }}},
        query_from_tree(rule.parsed_query()),
    ]
    scope = namespace_clause(list(rule.namespaces) or None)
    if scope is not None:
        filters.append(scope)
    search: dict[str, Any] = {"size": 0, "query": {"bool": {"filter": filters}}}
    severity = SEVERITY_LEVELS[rule.severity]
    common: dict[str, Any] = {
        "type": "monitor",
        "name": rule.name,
        "enabled": True,
        "schedule": _schedule(rule),
    }
    if rule.group_by is None:
        search["aggregations"] = {}
        return {
            **common,
            "monitor_type": "query_level_monitor",
            "inputs": [{"search": {"indices": list(indices), "query": search}}],
            "triggers": [{
                "name": f"{rule.name} {rule.condition}",
                "severity": severity,
                "condition": {"script": {"source": _script(rule, "ctx.results[0].hits.total.value"),
                                         "lang": "painless"}},
                "actions": [],
            }],
        }
    field = FILTER_FIELDS[rule.group_by]
    search["aggregations"] = {
        "composite_agg": {"composite": {"sources": [{rule.group_by: {"terms": {"field": field}}}]}}
    }
    return {
        **common,
        "monitor_type": "bucket_level_monitor",
        "inputs": [{"search": {"indices": list(indices), "query": search}}],
        "triggers": [{
            "bucket_level_trigger": {
                "name": f"{rule.name} {rule.condition}",
                "severity": severity,
                "condition": {
                    "buckets_path": {"_count": "_count"},
                    "parent_bucket_path": "composite_agg",
                    "script": {"source": _script(rule, "params._count"), "lang": "painless"},
                },
                "actions": [],
            }
        }],
    }


def monitors_of(rules: Sequence[Rule], index_prefix: str) -> list[dict[str, Any]]:
    """Monitors of ``rules`` over podlog's log indices ``<prefix>-logs-*``."""
    return [monitor_of(rule, [f"{index_prefix}-logs-*"]) for rule in rules]
