"""Retention classes: namespaces map to a few classes, each one index family.

Shared by the indexer (OpenSearch index families and ISM policies) and the
embedded index (rows deleted per class), so both read the same settings.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from podlog import metrics
from podlog.config import setting

__all__ = [
    "DAY_NS",
    "RetentionConfig",
    "class_days",
    "class_for",
    "cutoff_ns",
    "expired_counter",
    "is_expired",
    "retention_class",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionConfig:
    """Retention by namespace, through a small number of classes."""

    classes: dict[str, float] = setting(
        {"short": 3.0, "standard": 14.0, "long": 90.0},
        "Retention classes: name to days of data kept.",
    )
    default_class: str = setting("standard", "Class of namespaces that no rule matches.")
    namespaces: dict[str, str] = setting(
        {}, "Namespace glob pattern to class; the first matching pattern wins, in file order."
    )

    def __post_init__(self) -> None:
        if self.default_class not in self.classes:
            raise ValueError(
                f"default_class {self.default_class!r} is not one of the classes "
                f"{', '.join(sorted(self.classes))}"
            )
        for pattern, name in self.namespaces.items():
            if name not in self.classes:
                raise ValueError(
                    f"namespaces.{pattern}: class {name!r} is not one of "
                    f"{', '.join(sorted(self.classes))}"
                )


def retention_class(config: RetentionConfig, record: Mapping[str, Any]) -> str:
    """The class of a record: its ``podlog.retention`` (from the pod or namespace
    annotation ``podlog.io/retention``) if it names a known class, else the
    first namespace pattern that matches, else the default.

    So the precedence is pod annotation > namespace annotation (the collector
    picks between those two) > ``retention.namespaces`` glob > ``default_class``;
    an annotation naming an unknown class counts as absent.
    """
    podlog = record.get("podlog")
    kubernetes = record.get("kubernetes")
    return class_for(
        config,
        kubernetes.get("namespace") if isinstance(kubernetes, Mapping) else None,
        podlog.get("retention") if isinstance(podlog, Mapping) else None,
    )


def class_for(config: RetentionConfig, namespace: Any, chosen: Any) -> str:
    """:func:`retention_class` from a record's namespace and ``podlog.retention``."""
    if isinstance(chosen, str) and chosen in config.classes:
        return chosen
    namespace = namespace if isinstance(namespace, str) else ""
    for pattern, name in config.namespaces.items():
        if fnmatch.fnmatchcase(namespace, pattern):
            return name
    return config.default_class


DAY_NS = 86_400 * 1_000_000_000
"""Nanoseconds in a retention day."""


def class_days(config: RetentionConfig, retention_class: str) -> float:
    """Days a class keeps; a class no longer configured keeps what the default class keeps."""
    days = config.classes.get(retention_class)
    return config.classes[config.default_class] if days is None else days


def cutoff_ns(config: RetentionConfig, retention_class: str, now_ns: int) -> int:
    """The oldest timestamp a class still keeps at ``now_ns``: anything before it has expired.

    A record is within retention while ``timestamp_ns >= now - days``; the same
    test decides what is indexed on arrival, what a retention pass deletes and
    what a search returns, in both modes.
    """
    return now_ns - int(class_days(config, retention_class) * DAY_NS)


def is_expired(config: RetentionConfig, retention_class: str, timestamp_ns: int, now_ns: int) -> bool:
    """Whether a record of ``retention_class`` stamped ``timestamp_ns`` is past its retention."""
    return timestamp_ns < cutoff_ns(config, retention_class, now_ns)


_EXPIRED: list[Counter] = []


def expired_counter() -> Counter:
    """``podlog_indexer_records_expired_total{class}``: records not indexed because they arrived
    already past their class's retention.

    Registered on first use, so only a process that indexes (the indexer, or the
    embedded index of ``podlog run``) serves it; both modes count under one name.
    """
    if not _EXPIRED:
        _EXPIRED.append(
            metrics.counter(
                "podlog_indexer_records_expired_total",
                "Records not indexed because they arrived already older than their retention "
                "class keeps (both modes: the indexer and the embedded index), by class.",
                ["class"],
            )
        )
    return _EXPIRED[0]
