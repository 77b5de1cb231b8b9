"""Alert rules: the YAML format, parsed and validated into frozen :class:`Rule` values.

A rules file holds ``rules:``, a list of mappings::

    rules:
      - name: api-errors
        query: 'level:error AND "connection refused"'
        namespaces: [shop]
        window: 5m
        condition: count >= 10          # or: count <= 2, or: absent
        group_by: pod                   # optional: one alert per value
        interval: 1m
        for: 2m
        keep_firing_for: 5m
        severity: warning
        labels: {team: shop}
        annotations:
          summary: "{{ count }} errors in {{ group.pod }}: {{ sample }}"

Every error names the file, the rule (by name, or by its index when it has
none), the key, and for a query the position :mod:`search.query` reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from podlog.errors import PodlogError
from search.alerts.templates import TemplateError, check_template
from search.backends.base import FILTER_FIELDS
from search.query import QueryError, QueryGuards, parse_query

__all__ = ["RULE_KEYS", "Condition", "Rule", "RuleError", "load_rules", "parse_duration", "parse_rule", "parse_rules"]

RULE_KEYS = (
    "name", "query", "namespaces", "window", "condition", "group_by", "interval", "for",
    "keep_firing_for", "severity", "labels", "annotations",
)
"""Keys a rule may have."""

SEVERITIES = ("critical", "error", "warning", "info")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CONDITION = re.compile(r"\s*count\s*(>=|<=)\s*([0-9]+)\s*")
_RESERVED_LABELS = ("alertname", "severity", "rule")


class RuleError(PodlogError):
    """A rule that does not load: the message names the source, the rule and the key."""

    def __init__(self, source: str, rule: str, key: str, reason: str, position: int | None = None) -> None:
        super().__init__(f"{source}: rule {rule}: {key}: {reason}")
        self.source = source
        self.rule = rule
        self.key = key
        self.reason = reason
        self.position = position
        """For a query, the character position of the problem, when known."""


@dataclass(frozen=True, slots=True)
class Condition:
    """When a group's count over the window makes the rule true."""

    op: Literal[">=", "<=", "absent"]
    """``>=`` or ``<=`` a threshold, or ``absent`` (no matching line at all)."""
    threshold: int = 0
    """The count compared with; 0 for ``absent``."""

    def holds(self, count: int) -> bool:
        """Whether ``count`` matching lines satisfy the condition."""
        if self.op == ">=":
            return count >= self.threshold
        if self.op == "<=":
            return count <= self.threshold
        return count == 0

    def __str__(self) -> str:
        return "absent" if self.op == "absent" else f"count {self.op} {self.threshold}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule, validated."""

    name: str
    """Unique name; the ``alertname`` label."""
    query: str
    """Query text in the search language; empty matches every line."""
    condition: Condition
    window_seconds: float
    """Length of the window the lines are counted over."""
    namespaces: tuple[str, ...] = ()
    """Namespace patterns the rule sees; empty means all."""
    group_by: str | None = None
    """A filter field name (namespace, pod, ...): one alert per value."""
    interval_seconds: float = 60.0
    """How often the rule is evaluated; windows end on multiples of it."""
    for_seconds: float = 0.0
    """How long the condition must hold (pending) before the alert fires."""
    keep_firing_for_seconds: float = 0.0
    """How long a firing alert stays firing after the condition stops holding."""
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Templates: ``{{ count }}``, ``{{ sample }}``, ``{{ group.<field> }}``, ``{{ rule }}``."""
    source: str = ""
    """The file the rule came from."""

    def parsed_query(self) -> Any:
        """The luqum tree of :attr:`query` (None matches everything)."""
        return parse_query(self.query, QueryGuards())


def parse_duration(value: Any) -> float:
    """Seconds of ``30s``, ``5m``, ``1h30m``, ``2d`` or a number of seconds; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")  # noqa: TRY004 - bad input is a ValueError to callers
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    text = value.strip()
    total, at = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != at:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        at = match.end()
    if at != len(text) or at == 0:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    return total


def load_rules(path: str | Path) -> list[Rule]:
    """Rules of one YAML file, or of every ``*.yaml``/``*.yml`` file in a directory (sorted).

    Raises :class:`RuleError` at the first problem; names must be unique across files.
    """
    root = Path(path)
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml")) if root.is_dir() else [root]
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file in files:
        if file.name.startswith(".."):  # a ConfigMap mount's ..data / ..<timestamp> entries
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(file), "-", "file", f"cannot be read: {exc}") from exc
        for rule in parse_rules(text, str(file)):
            if rule.name in seen:
                raise RuleError(str(file), rule.name, "name", f"also defined in {seen[rule.name]}")
            seen[rule.name] = str(file)
            rules.append(rule)
    return rules


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Rules of one YAML document; :class:`RuleError` names the first problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(source, "-", "yaml", str(exc).replace("\n", " ")) from exc
    if data is None:
        return []
    if not isinstance(data, Mapping) or set(data) - {"rules"}:
        raise RuleError(source, "-", "rules", "the file must be a mapping with one key, rules")
    items = data.get("rules") or []
    if not isinstance(items, list):
        raise RuleError(source, "-", "rules", "must be a list of rules")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        rule = parse_rule(item, source, index)
        if rule.name in names:
            raise RuleError(source, rule.name, "name", "defined twice in this file")
        names.add(rule.name)
        rules.append(rule)
    return rules


def parse_rule(item: Any, source: str, index: int) -> Rule:
    """One rule mapping; ``index`` names it in errors until its name is known."""
    label = f"#{index + 1}"
    if not isinstance(item, Mapping):
        raise RuleError(source, label, "-", "a rule must be a mapping")
    name = item.get("name")
    if isinstance(name, str) and _NAME.fullmatch(name):
        label = name

    def fail(key: str, reason: str, position: int | None = None) -> RuleError:
        return RuleError(source, label, key, reason, position)

    unknown = sorted(str(k) for k in item if k not in RULE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; valid keys are {', '.join(RULE_KEYS)}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail("name", "required: letters, digits, '_', '.', ':' or '-', at most 128")
    query = item.get("query", "")
    if not isinstance(query, str):
        raise fail("query", "must be a string in the search language")
    try:
        parse_query(query, QueryGuards())
    except QueryError as exc:
        where = f" at position {exc.position}" if exc.position is not None else ""
        raise fail("query", f"{exc.reason}{where}", exc.position) from exc
    namespaces = item.get("namespaces", [])
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    if not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces):
        raise fail("namespaces", "must be a list of namespace names or patterns")
    durations: dict[str, float] = {}
    for key, default in (("window", None), ("interval", 60.0), ("for", 0.0), ("keep_firing_for", 0.0)):
        raw = item.get(key, default)
        if raw is None:
            raise fail(key, "required: a duration such as 5m")
        try:
            durations[key] = parse_duration(raw)
        except ValueError as exc:
            raise fail(key, str(exc)) from exc
    if durations["window"] <= 0:
        raise fail("window", "must be longer than zero")
    if durations["interval"] < 1:
        raise fail("interval", "must be at least 1s")
    condition = _parse_condition(item.get("condition"), fail)
    group_by = item.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or group_by not in FILTER_FIELDS):
        raise fail("group_by", f"unknown field {group_by!r}; use one of {', '.join(FILTER_FIELDS)}")
    severity = item.get("severity", "warning")
    if severity not in SEVERITIES:
        raise fail("severity", f"must be one of {', '.join(SEVERITIES)}")
    labels = _string_map(item.get("labels", {}), "labels", fail)
    for key in labels:
        if not _LABEL.fullmatch(key) or key in _RESERVED_LABELS or key == group_by:
            raise fail(f"labels.{key}", "not a label name (letters, digits, _) or reserved")
    annotations = _string_map(item.get("annotations", {}), "annotations", fail)
    for key, template in annotations.items():
        try:
            check_template(template, group_by)
        except TemplateError as exc:
            raise fail(f"annotations.{key}", str(exc)) from exc
    return Rule(
        name=name,
        query=query,
        condition=condition,
        window_seconds=durations["window"],
        namespaces=tuple(namespaces),
        group_by=group_by,
        interval_seconds=durations["interval"],
        for_seconds=durations["for"],
        keep_firing_for_seconds=durations["keep_firing_for"],
        severity=severity,
        labels=labels,
        annotations=annotations,
        source=source,
    )


def _parse_condition(raw: Any, fail: Any) -> Condition:
    if raw == "absent":
        return Condition("absent")
    match = _CONDITION.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise fail("condition", "required: 'count >= N', 'count <= N' or 'absent'")
    if match.group(1) == ">=":
        return Condition(">=", int(match.group(2)))
    return Condition("<=", int(match.group(2)))


def _string_map(raw: Any, key: str, fail: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise fail(key, "must be a mapping of names to strings")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, str | int | float) or isinstance(value, bool):
            raise fail(f"{key}.{name}", "must be a string")
        out[name] = str(value)
    return out

