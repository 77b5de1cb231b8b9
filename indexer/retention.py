"""Retention by class: expired daily indices go whole, the day a class ends in is trimmed.

Each retention class is one index family, ``{prefix}-logs-{class}-{day}``, so
the shard count grows with classes and days, not with namespaces.  A record
is kept while its timestamp is within its class's N days
(:func:`podlog.retention.cutoff_ns`), the same rule as the embedded index:

* records already past it are never indexed (``indexer.documents``);
* the retention pass (the indexer every ``retention_interval_seconds``, and
  ``podlog retention apply``) deletes every index whose whole day is past it,
  and deletes by query the expired documents of the one index per class whose
  day the cutoff falls in.  So nothing stays searchable longer than one pass
  interval (1 hour by default) past its retention, whatever the class.

The pass is the single authority, with or without Index State Management: it
ages an index by the day in its name, where ISM can only age it by its
creation (an index created late for old data would live N more days).  Where
the cluster has ISM, podlog also keeps one policy per class,
``{prefix}-retention-{class}``, that deletes an index :data:`BACKSTOP_DAYS`
after the pass would have: a backstop while no indexer runs, never earlier
than the pass.  ``podlog retention apply`` brings every managed index onto the
current version of its class's policy (change-policy), and
``podlog retention plan`` lists exactly what apply and ISM will do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from indexer.config import OpenSearchConfig
from indexer.events import events
from indexer.templates import logs_pattern, parse_index_name
from podlog.retention import RetentionConfig, class_days, cutoff_ns

__all__ = [
    "BACKSTOP_DAYS",
    "IndexExpiry",
    "IsmAction",
    "RetentionApplied",
    "apply_ism",
    "apply_retention",
    "ensure_ism_policies",
    "index_creation_dates",
    "ism_policy_body",
    "list_log_indices",
    "plan_ism",
    "plan_retention",
    "policy_id",
    "policy_is_current",
]

BACKSTOP_DAYS = 2.0
"""ISM deletes an index this many days after the pass would have (counted from its creation,
which is never before the day it holds for records that are not stamped in the future)."""

_NS_PER_S = 1_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class IndexExpiry:
    """One log index and what retention does to it."""

    index: str
    retention_class: str
    day: datetime
    """The UTC day the index holds."""
    expires_at: datetime | None
    """When its newest possible record expires (end of the day plus the class's days); the
    pass deletes it then.  A class no longer configured keeps what the default class keeps."""
    expired: bool
    """The whole index is past retention: the pass deletes it."""
    docs: int = 0
    size_bytes: int = 0
    trim_before_ns: int | None = None
    """The class's cutoff falls in this index's day: the pass deletes its documents older than it."""
    ism_deletes_at: datetime | None = None
    """When the ISM backstop would delete it (creation plus the policy's age), if ISM manages it."""

    @property
    def action(self) -> str:
        """``DELETE``, ``TRIM`` or ``keep``: what the pass does to it now."""
        if self.expired:
            return "DELETE"
        if self.trim_before_ns is not None and self.docs:
            return "TRIM"
        return "keep"


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionApplied:
    """What one pass deleted."""

    deleted: list[IndexExpiry]
    """Whole indices deleted."""
    trimmed: list[tuple[IndexExpiry, int]]
    """Indices trimmed, with the documents deleted from each."""


IsmKind = Literal["create_policy", "update_policy", "add_policy", "change_policy"]


@dataclasses.dataclass(frozen=True, slots=True)
class IsmAction:
    """One ISM request ``retention apply`` makes."""

    kind: IsmKind
    target: str
    """The policy (create, update) or the index (add, change)."""
    policy: str
    detail: str
    """Why, for ``retention plan``."""
    body: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)


def policy_id(prefix: str, retention_class: str) -> str:
    """The ISM policy of one retention class."""
    return f"{prefix}-retention-{retention_class}"


def backstop_hours(days: float) -> int:
    """The ISM ``min_index_age`` (hours) of a class kept ``days``: the pass's age plus the backstop."""
    return max(1, math.ceil((days + 1 + BACKSTOP_DAYS) * 24))


def ism_policy_body(prefix: str, retention_class: str, days: float) -> dict[str, Any]:
    """An ISM policy deleting ``{prefix}-logs-{class}-*`` indices as a backstop to the pass."""
    hours = backstop_hours(days)
    return {
        "policy": {
            "description": (
                f"podlog: keep {retention_class} logs {days:g} days (the retention pass deletes by "
                f"the day an index holds; this is its backstop, {BACKSTOP_DAYS:g} days later)"
            ),
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


def policy_is_current(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the policy ISM returned does what ``wanted`` does (ignoring fields ISM adds)."""
    have = current.get("policy") or {}
    want = wanted["policy"]
    if have.get("description") != want["description"]:
        return False
    states = [(s.get("name"), [t.get("conditions") for t in s.get("transitions", [])]) for s in have.get("states", [])]
    wanted_states = [(s["name"], [t["conditions"] for t in s["transitions"]]) for s in want["states"]]
    patterns = [t.get("index_patterns") for t in have.get("ism_template") or []]
    return states == wanted_states and patterns == [t["index_patterns"] for t in want["ism_template"]]


def _get(client: OpenSearch, path: str, params: Mapping[str, Any] | None = None) -> Any:
    try:
        return client.transport.perform_request("GET", path, params=dict(params or {}))
    except NotFoundError:
        return None


def _explain(client: OpenSearch, prefix: str) -> dict[str, Mapping[str, Any]]:
    """ISM's view of every log index: index -> its explain entry."""
    found = _get(client, f"/_plugins/_ism/explain/{logs_pattern(prefix)}")
    if not isinstance(found, dict):
        return {}
    return {name: entry for name, entry in found.items() if isinstance(entry, dict)}


def _managed_by(entry: Mapping[str, Any]) -> str | None:
    for key in ("index.plugins.index_state_management.policy_id", "policy_id",
                "index.opendistro.index_state_management.policy_id"):  # fmt: skip
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def plan_ism(client: OpenSearch, config: OpenSearchConfig, retention: RetentionConfig) -> list[IsmAction]:
    """The ISM requests that bring policies and managed indices to the configured classes.

    * a class without a policy gets one (create); a policy that differs from the
      class's days is updated, guarded by its sequence number;
    * an index of a class that no policy manages (created before the policy) is added;
    * an index managed by an older version of its class's policy (ISM keeps an index
      on the version it started with) is moved to the current one (change-policy).
    """
    prefix = config.index_prefix
    actions: list[IsmAction] = []
    versions: dict[str, tuple[Any, bool]] = {}
    for klass, days in sorted(retention.classes.items()):
        name = policy_id(prefix, klass)
        wanted = ism_policy_body(prefix, klass, days)
        current = _get(client, f"/_plugins/_ism/policies/{name}")
        if current is None:
            actions.append(IsmAction("create_policy", name, name, f"min_index_age {backstop_hours(days)}h", wanted))
            versions[klass] = (None, True)
        elif not policy_is_current(current, wanted):
            params = {"if_seq_no": current.get("_seq_no"), "if_primary_term": current.get("_primary_term")}
            actions.append(
                IsmAction("update_policy", name, name, f"min_index_age {backstop_hours(days)}h", wanted, params)
            )
            versions[klass] = (current.get("_seq_no"), True)
        else:
            versions[klass] = (current.get("_seq_no"), False)
    for index, entry in sorted(_explain(client, prefix).items()):
        parsed = parse_index_name(prefix, index)
        if parsed is None or parsed[0] not in versions:
            continue
        klass = parsed[0]
        name = policy_id(prefix, klass)
        seq_no, changing = versions[klass]
        managed = _managed_by(entry)
        if managed is None:
            actions.append(IsmAction("add_policy", index, name, "not managed", {"policy_id": name}))
        elif managed != name or changing or (seq_no is not None and entry.get("policy_seq_no") not in (None, seq_no)):
            was = f"{managed} version {entry.get('policy_seq_no', '?')}"
            actions.append(IsmAction("change_policy", index, name, f"on {was}", {"policy_id": name}))
    return actions


def apply_ism(client: OpenSearch, config: OpenSearchConfig, retention: RetentionConfig) -> list[IsmAction]:
    """Make the requests :func:`plan_ism` lists, in its order; returns them."""
    actions = plan_ism(client, config, retention)
    for action in actions:
        if action.kind in ("create_policy", "update_policy"):
            client.transport.perform_request(
                "PUT", f"/_plugins/_ism/policies/{action.target}", params=dict(action.params), body=dict(action.body)
            )
            events.ism_policy_ensured(action.target, changed=True)
        elif action.kind == "add_policy":
            client.transport.perform_request("POST", f"/_plugins/_ism/add/{action.target}", body=dict(action.body))
            events.ism_policy_changed(action.target, action.policy)
        else:
            client.transport.perform_request(
                "POST", f"/_plugins/_ism/change_policy/{action.target}", body=dict(action.body)
            )
            events.ism_policy_changed(action.target, action.policy)
    return actions


def ensure_ism_policies(client: OpenSearch, config: OpenSearchConfig, retention: RetentionConfig) -> list[str]:
    """Create or update one ISM policy per class (and move managed indices to it); the policies written."""
    done = apply_ism(client, config, retention)
    return [a.target for a in done if a.kind in ("create_policy", "update_policy")]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def list_log_indices(client: OpenSearch, prefix: str) -> list[tuple[str, int, int]]:
    """``(name, docs, bytes)`` of every index matching ``{prefix}-logs-*``."""
    rows = _get(
        client,
        f"/_cat/indices/{logs_pattern(prefix)}",
        {"format": "json", "h": "index,docs.count,store.size", "bytes": "b"},
    )
    out = []
    for row in rows or []:
        if isinstance(row, dict) and row.get("index"):
            out.append((str(row["index"]), _int(row.get("docs.count")), _int(row.get("store.size"))))
    return sorted(out)


def index_creation_dates(client: OpenSearch, prefix: str) -> dict[str, datetime]:
    """When each log index was created, where the cluster says."""
    rows = _get(client, f"/_cat/indices/{logs_pattern(prefix)}", {"format": "json", "h": "index,creation.date"})
    out: dict[str, datetime] = {}
    for row in rows or []:
        if isinstance(row, dict) and row.get("index") and _int(row.get("creation.date")):
            out[str(row["index"])] = datetime.fromtimestamp(_int(row["creation.date"]) / 1000, tz=UTC)
    return out


def plan_retention(
    indices: Sequence[tuple[str, int, int]],
    prefix: str,
    retention: RetentionConfig,
    now: datetime,
    *,
    created: Mapping[str, datetime] | None = None,
) -> list[IndexExpiry]:
    """What the pass does to each log index at ``now``; names that are not podlog daily indices
    are skipped.  Given ``created`` (ISM manages the indices), when the backstop would delete each."""
    now_ns = int(now.timestamp()) * _NS_PER_S + now.microsecond * 1000
    plan: list[IndexExpiry] = []
    for name, docs, size in indices:
        parsed = parse_index_name(prefix, name)
        if parsed is None:
            continue
        klass, day = parsed
        days = class_days(retention, klass)
        expires_at = day + timedelta(days=1) + timedelta(days=days)
        cutoff = cutoff_ns(retention, klass, now_ns)
        day_ns = int(day.timestamp()) * _NS_PER_S
        trim = cutoff if day_ns < cutoff < day_ns + 86_400 * _NS_PER_S else None
        born = (created or {}).get(name)
        plan.append(
            IndexExpiry(
                index=name,
                retention_class=klass,
                day=day,
                expires_at=expires_at,
                expired=expires_at <= now,
                docs=docs,
                size_bytes=size,
                trim_before_ns=trim,
                ism_deletes_at=None if born is None else born + timedelta(hours=backstop_hours(days)),
            )
        )
    return sorted(plan, key=lambda e: (e.retention_class, e.day))


def _iso_ns(value: int) -> str:
    return datetime.fromtimestamp(value / _NS_PER_S, tz=UTC).isoformat()


def apply_retention(
    client: OpenSearch,
    prefix: str,
    retention: RetentionConfig,
    now: datetime | None = None,
) -> RetentionApplied:
    """One pass: delete every expired log index (one exact name per request), and the expired
    documents of each index the cutoff of its class falls in."""
    moment = now or datetime.now(tz=UTC)
    plan = plan_retention(list_log_indices(client, prefix), prefix, retention, moment)
    deleted: list[IndexExpiry] = []
    trimmed: list[tuple[IndexExpiry, int]] = []
    for entry in plan:
        if entry.action == "DELETE":
            try:
                client.indices.delete(index=entry.index)
            except NotFoundError:
                continue
            assert entry.expires_at is not None
            events.retention_index_deleted(entry.index, entry.retention_class, entry.expires_at.isoformat())
            deleted.append(entry)
        elif entry.action == "TRIM":
            assert entry.trim_before_ns is not None
            count = trim_index(client, entry.index, entry.trim_before_ns)
            if count:
                events.retention_documents_deleted(
                    entry.index, entry.retention_class, count, _iso_ns(entry.trim_before_ns)
                )
            trimmed.append((entry, count))
    return RetentionApplied(deleted, trimmed)


def trim_index(client: OpenSearch, index: str, before_ns: int) -> int:
    """Delete the documents of ``index`` stamped before ``before_ns``; how many went."""
    try:
        reply = client.delete_by_query(
            index=index,
            body={"query": {"range": {"timestamp_ns": {"lt": before_ns}}}},
            params={"conflicts": "proceed", "refresh": "true"},
        )
    except NotFoundError:
        return 0
    return _int(reply.get("deleted"))
