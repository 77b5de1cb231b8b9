"""Rules files: what loads, and errors that name the rule, the key and the position."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.alerts.rules import Condition, RuleError, load_rules, parse_duration, parse_rules

GOOD = """
rules:
  - name: api-errors
    query: 'level:error AND "connection refused"'
    namespaces: [shop]
    window: 5m
    condition: count >= 10
    group_by: pod
    interval: 30s
    for: 1m
    keep_firing_for: 2m
    severity: critical
    labels: {team: shop}
    annotations:
      summary: "{{ count }} errors in {{ group.pod }}: {{ sample }}"
  - name: job-silent
    query: 'pod:nightly-*'
    window: 1h
    condition: absent
"""


def test_a_valid_file_loads_every_field() -> None:
    """Durations, the condition, scope, labels and annotations come through as given."""
    first, second = parse_rules(GOOD, "good.yaml")
    assert first.name == "api-errors"
    assert first.condition == Condition(">=", 10)
    assert (first.window_seconds, first.interval_seconds, first.for_seconds, first.keep_firing_for_seconds) == (
        300.0, 30.0, 60.0, 120.0,
    )
    assert first.namespaces == ("shop",) and first.group_by == "pod" and first.severity == "critical"
    assert first.labels == {"team": "shop"} and "group.pod" in first.annotations["summary"]
    assert first.parsed_query() is not None
    assert second.condition == Condition("absent") and second.interval_seconds == 60.0


def _error(text: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rules(text, "r.yaml")
    return info.value


def test_an_invalid_query_names_the_rule_key_and_position() -> None:
    """A query that does not parse: the message says rule, key and where in the query."""
    error = _error("rules:\n  - name: broken\n    query: 'level:error AND foo:bar'\n    window: 5m\n"
                   "    condition: count >= 1\n")
    assert (error.rule, error.key) == ("broken", "query")
    assert "unknown field 'foo'" in str(error) and "at position 16" in str(error)
    assert str(error).startswith("r.yaml: rule broken: query:")


def test_an_unknown_group_by_field_is_refused_with_the_valid_ones() -> None:
    """group_by accepts the filter fields only."""
    error = _error("rules:\n  - name: g\n    window: 5m\n    condition: count >= 1\n    group_by: colour\n")
    assert error.key == "group_by" and "namespace, pod" in error.reason


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("    window: 5m\n    condition: count > 1\n", "condition"),
        ("    window: five\n    condition: absent\n", "window"),
        ("    condition: absent\n", "window"),
        ("    window: 5m\n    condition: absent\n    severity: loud\n", "severity"),
        ("    window: 5m\n    condition: absent\n    colour: red\n", "colour"),
        ("    window: 5m\n    condition: absent\n    labels: {alertname: x}\n", "labels.alertname"),
        ("    window: 5m\n    condition: absent\n    annotations: {s: '{{ group.pod }}'}\n", "annotations.s"),
        ("    window: 5m\n    condition: absent\n    annotations: {s: '{{ nope }}'}\n", "annotations.s"),
        ("    window: 5m\n    condition: absent\n    interval: 0s\n", "interval"),
    ],
)
def test_each_bad_key_is_named(body: str, key: str) -> None:
    """Every validation error names the offending key."""
    error = _error("rules:\n  - name: r1\n" + body)
    assert (error.rule, error.key) == ("r1", key)


def test_a_rule_without_a_name_is_named_by_its_index() -> None:
    """Until a rule has a valid name, errors call it by its place in the file."""
    error = _error("rules:\n  - name: ok\n    window: 1m\n    condition: absent\n  - window: 1m\n")
    assert error.rule == "#2" and error.key == "name"


def test_names_are_unique_across_a_directory(tmp_path: Path) -> None:
    """Two files of one directory may not define the same rule; ConfigMap dot-entries are skipped."""
    rule = "rules:\n  - name: same\n    window: 1m\n    condition: absent\n"
    (tmp_path / "a.yaml").write_text(rule)
    assert [r.name for r in load_rules(tmp_path)] == ["same"]
    (tmp_path / "b.yml").write_text(rule)
    with pytest.raises(RuleError, match="also defined in"):
        load_rules(tmp_path)


def test_durations() -> None:
    """Go-style durations and plain seconds."""
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration(45) == 45.0
    assert parse_duration("250ms") == 0.25
    for bad in ("5 m", "m", "", "-1s", True, -3):
        with pytest.raises(ValueError, match=r"duration|negative"):
            parse_duration(bad)
