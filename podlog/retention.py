"""Retention classes: namespaces map to a few classes, each one index family.

Shared by the indexer (OpenSearch index families and ISM policies) and the
embedded index (rows deleted per class), so both read the same settings.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from typing import Any

from podlog.config import setting

__all__ = ["RetentionConfig", "class_for", "retention_class"]


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
    first namespace pattern that matches, else the default."""
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
