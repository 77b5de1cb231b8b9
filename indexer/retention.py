"""Retention by class: whole daily indices expire, never documents one by one.

Each retention class is one index family, ``{prefix}-logs-{class}-{day}``, so
the shard count grows with classes and days, not with namespaces.  An index
for day D of a class kept N days expires at the end of D plus N days (UTC).

Where the cluster has Index State Management, podlog keeps one ISM policy per
class, ``{prefix}-retention-{class}``, whose ``ism_template`` attaches it to
new indices of the family and deletes them N days after creation.  Elsewhere
``podlog retention apply`` (a CronJob) deletes expired indices by exact name.
``podlog retention plan`` shows what would go, and when.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from indexer.config import OpenSearchConfig
from indexer.events import events
from indexer.templates import logs_pattern, parse_index_name
from podlog.retention import RetentionConfig

__all__ = [
    "IndexExpiry",
    "apply_retention",
    "ensure_ism_policies",
    "ism_policy_body",
    "list_log_indices",
    "plan_retention",
    "policy_id",
    "policy_is_current",
]


@dataclasses.dataclass(frozen=True, slots=True)
class IndexExpiry:
    """One log index and when its retention class lets it go."""

    index: str
    retention_class: str
    day: datetime
    """The UTC day the index holds."""
    expires_at: datetime | None
    """End of the day plus the class's retention; None for an unknown class (kept)."""
    expired: bool
    docs: int = 0
    size_bytes: int = 0


def policy_id(prefix: str, retention_class: str) -> str:
    """The ISM policy of one retention class."""
    return f"{prefix}-retention-{retention_class}"


def ism_policy_body(prefix: str, retention_class: str, days: float) -> dict[str, Any]:
    """An ISM policy deleting ``{prefix}-logs-{class}-*`` indices ``days`` after creation."""
    hours = max(1, round(days * 24))
    return {
        "policy": {
            "description": f"podlog: keep {retention_class} logs {days:g} days",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{hours}h"}}],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": [f"{prefix}-logs-{retention_class}-*"], "priority": 100}],
        }
    }


def policy_is_current(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the policy ISM returned does what ``wanted`` does (ignoring fields ISM adds)."""
    have = current.get("policy") or {}
    want = wanted["policy"]
    if have.get("description") != want["description"]:
        return False
    states = [(s.get("name"), [t.get("conditions") for t in s.get("transitions", [])]) for s in have.get("states", [])]
    wanted_states = [(s["name"], [t["conditions"] for t in s["transitions"]]) for s in want["states"]]
    patterns = [t.get("index_patterns") for t in have.get("ism_template") or []]
    return states == wanted_states and patterns == [t["index_patterns"] for t in want["ism_template"]]


def ensure_ism_policies(client: OpenSearch, config: OpenSearchConfig, retention: RetentionConfig) -> list[str]:
    """Create or update one ISM policy per class; returns the policies written."""
    written: list[str] = []
    for klass, days in sorted(retention.classes.items()):
        name = policy_id(config.index_prefix, klass)
        wanted = ism_policy_body(config.index_prefix, klass, days)
        path = f"/_plugins/_ism/policies/{name}"
        try:
            current = client.transport.perform_request("GET", path)
        except NotFoundError:
            current = None
        if current is None:
            client.transport.perform_request("PUT", path, body=wanted)
        elif not policy_is_current(current, wanted):
            params = {
                "if_seq_no": current.get("_seq_no"),
                "if_primary_term": current.get("_primary_term"),
            }
            client.transport.perform_request("PUT", path, params=params, body=wanted)
        else:
            events.ism_policy_ensured(name, changed=False)
            continue
        events.ism_policy_ensured(name, changed=True)
        written.append(name)
    return written


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def list_log_indices(client: OpenSearch, prefix: str) -> list[tuple[str, int, int]]:
    """``(name, docs, bytes)`` of every index matching ``{prefix}-logs-*``."""
    try:
        rows = client.transport.perform_request(
            "GET",
            f"/_cat/indices/{logs_pattern(prefix)}",
            params={"format": "json", "h": "index,docs.count,store.size", "bytes": "b"},
        )
    except NotFoundError:
        return []
    out = []
    for row in rows or []:
        if isinstance(row, dict) and row.get("index"):
            out.append((str(row["index"]), _int(row.get("docs.count")), _int(row.get("store.size"))))
    return sorted(out)


def plan_retention(
    indices: Sequence[tuple[str, int, int]],
    prefix: str,
    retention: RetentionConfig,
    now: datetime,
) -> list[IndexExpiry]:
    """When each log index expires; names that are not podlog daily indices are skipped."""
    plan: list[IndexExpiry] = []
    for name, docs, size in indices:
        parsed = parse_index_name(prefix, name)
        if parsed is None:
            continue
        klass, day = parsed
        days = retention.classes.get(klass)
        expires_at = None if days is None else day + timedelta(days=1) + timedelta(days=days)
        plan.append(
            IndexExpiry(
                index=name,
                retention_class=klass,
                day=day,
                expires_at=expires_at,
                expired=expires_at is not None and expires_at <= now,
                docs=docs,
                size_bytes=size,
            )
        )
    return sorted(plan, key=lambda e: (e.retention_class, e.day))


def apply_retention(
    client: OpenSearch,
    prefix: str,
    retention: RetentionConfig,
    now: datetime | None = None,
) -> list[IndexExpiry]:
    """Delete every expired log index, one exact name per request; returns them."""
    moment = now or datetime.now(tz=UTC)
    plan = plan_retention(list_log_indices(client, prefix), prefix, retention, moment)
    deleted: list[IndexExpiry] = []
    for entry in plan:
        if not entry.expired:
            continue
        try:
            client.indices.delete(index=entry.index)
        except NotFoundError:
            continue
        assert entry.expires_at is not None
        events.retention_index_deleted(entry.index, entry.retention_class, entry.expires_at.isoformat())
        deleted.append(entry)
    return deleted
