"""Namespace patterns: what an identity may read, as fnmatch patterns (``*``, ``?``)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from podlog.errors import ConfigError

__all__ = ["namespace_allowed", "validate_pattern"]

_PATTERN = re.compile(r"^[a-z0-9*?.-]+$")


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a namespace pattern (DNS label chars, ``*``, ``?``)."""
    if not _PATTERN.match(pattern):
        raise ConfigError(f"namespace pattern {pattern!r} may contain only a-z, 0-9, '-', '.', '*' and '?'")
    return pattern


def namespace_allowed(namespace: str, patterns: Sequence[str]) -> bool:
    """True when ``namespace`` matches one of ``patterns``."""
    return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns)
