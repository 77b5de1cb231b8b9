"""Retention plans: when each daily index of each class expires."""

from __future__ import annotations

from datetime import UTC, datetime

from indexer.retention import ism_policy_body, plan_retention, policy_is_current
from podlog.retention import RetentionConfig

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CONFIG = RetentionConfig(classes={"short": 3.0, "standard": 14.0})


def test_index_expires_at_end_of_its_day_plus_retention() -> None:
    """A 3-day index of the 23rd expires at the start of the 27th; the 24th's does not yet."""
    plan = plan_retention(
        [("p-logs-short-2026.11.23", 5, 100), ("p-logs-short-2026.11.24", 1, 10)],
        "p", CONFIG, NOW,
    )  # fmt: skip
    assert [(e.index, e.expired) for e in plan] == [
        ("p-logs-short-2026.11.23", True), ("p-logs-short-2026.11.24", False),
    ]  # fmt: skip
    assert plan[0].expires_at == datetime(2026, 11, 27, tzinfo=UTC)
    assert (plan[0].docs, plan[0].size_bytes) == (5, 100)


def test_unknown_classes_and_foreign_names_are_kept() -> None:
    """An index of a class no longer configured never expires; foreign names are skipped."""
    plan = plan_retention(
        [("p-logs-gone-2000.01.01", 0, 0), ("p-dlq", 0, 0), ("p-logs-short-x", 0, 0)],
        "p", CONFIG, NOW,
    )  # fmt: skip
    assert [(e.index, e.expires_at, e.expired) for e in plan] == [("p-logs-gone-2000.01.01", None, False)]


def test_ism_policy_deletes_after_the_class_retention() -> None:
    """The ISM policy attaches to its class's family and deletes after N days."""
    body = ism_policy_body("p", "standard", 14.0)["policy"]
    assert body["ism_template"] == [{"index_patterns": ["p-logs-standard-*"], "priority": 100}]
    hot, delete = body["states"]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "336h"}}]
    assert delete["actions"] == [{"delete": {}}]


def test_policy_as_ism_returns_it_counts_as_current() -> None:
    """Fields ISM adds (ids, times, retry settings) do not make a current policy look stale."""
    wanted = ism_policy_body("p", "short", 3.0)
    returned = {
        "_id": "p-retention-short",
        "_seq_no": 4,
        "_primary_term": 1,
        "policy": {
            "policy_id": "p-retention-short",
            "description": wanted["policy"]["description"],
            "last_updated_time": 1795737600000,
            "schema_version": 21,
            "error_notification": None,
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": "72h"}}],
                },
                {
                    "name": "delete",
                    "actions": [{"retry": {"count": 3, "backoff": "exponential", "delay": "1m"}, "delete": {}}],
                    "transitions": [],
                },
            ],
            "ism_template": [
                {"index_patterns": ["p-logs-short-*"], "priority": 100, "last_updated_time": 1795737600000}
            ],
        },
    }
    assert policy_is_current(returned, wanted)
    assert not policy_is_current(returned, ism_policy_body("p", "short", 5.0))
