"""Retention plans: when each daily index of each class expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from indexer.retention import BACKSTOP_DAYS, ism_policy_body, plan_retention, policy_is_current
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


def test_unknown_classes_expire_with_the_default_class_and_foreign_names_are_skipped() -> None:
    """An index of a class no longer configured keeps what the default class keeps, as in
    the embedded index; names that are not podlog daily indices are skipped."""
    config = RetentionConfig(classes={"short": 3.0, "standard": 14.0}, default_class="standard")
    plan = plan_retention(
        [("p-logs-gone-2026.11.12", 0, 0), ("p-logs-gone-2026.11.13", 0, 0), ("p-dlq", 0, 0),
         ("p-logs-short-x", 0, 0)],
        "p", config, NOW,
    )  # fmt: skip
    assert [(e.index, e.expired) for e in plan] == [
        ("p-logs-gone-2026.11.12", True), ("p-logs-gone-2026.11.13", False),
    ]  # fmt: skip
    assert plan[1].expires_at == datetime(2026, 11, 28, tzinfo=UTC)


def test_the_index_a_cutoff_falls_in_is_trimmed_to_the_cutoff() -> None:
    """At 12:00 on the 27th a 3-day class keeps records from 12:00 on the 24th: the 24th's
    index is trimmed to that instant (when it has documents), the 23rd's deleted, the 25th's kept."""
    plan = plan_retention(
        [("p-logs-short-2026.11.23", 5, 1), ("p-logs-short-2026.11.24", 7, 1),
         ("p-logs-short-2026.11.25", 9, 1), ("p-logs-standard-2026.11.13", 0, 0)],
        "p", CONFIG, NOW,
    )  # fmt: skip
    assert [(e.index, e.action) for e in plan] == [
        ("p-logs-short-2026.11.23", "DELETE"), ("p-logs-short-2026.11.24", "TRIM"),
        ("p-logs-short-2026.11.25", "keep"), ("p-logs-standard-2026.11.13", "keep"),
    ]  # fmt: skip
    cutoff = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert plan[1].trim_before_ns == int(cutoff.timestamp()) * 1_000_000_000
    assert plan[3].trim_before_ns is not None  # empty: nothing to trim, so "keep"


def test_the_ism_backstop_never_deletes_before_the_pass() -> None:
    """ISM ages an index from its creation: the backstop age is the class's days plus the
    day the index holds plus BACKSTOP_DAYS, so even an index created at the very start of
    its day goes after the pass deletes it; a late index (old data) goes by the pass first."""
    on_time = datetime(2026, 11, 20, tzinfo=UTC)
    late = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)  # 2026.11.20 data arriving a week late
    for created in (on_time, late):
        plan = plan_retention(
            [("p-logs-short-2026.11.20", 1, 1)], "p", CONFIG, NOW, created={"p-logs-short-2026.11.20": created}
        )
        entry = plan[0]
        assert entry.expires_at is not None and entry.ism_deletes_at is not None
        assert entry.ism_deletes_at - entry.expires_at >= timedelta(days=BACKSTOP_DAYS)
        assert entry.ism_deletes_at > entry.expires_at
    assert plan[0].action == "DELETE"  # the late index: the pass deletes it now, by its day


def test_ism_policy_deletes_after_the_class_retention() -> None:
    """The ISM policy attaches to its class's family and deletes after the pass would."""
    body = ism_policy_body("p", "standard", 14.0)["policy"]
    assert body["ism_template"] == [{"index_patterns": ["p-logs-standard-*"], "priority": 100}]
    hot, delete = body["states"]
    # 14 days + the day the index holds + the backstop's 2 days, from creation.
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "408h"}}]
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
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": "144h"}}],
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
