"""Errors that carry policy: callers branch on ``error.retriable``."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "PodlogError",
    "SchemaError",
    "SpoolFullError",
    "TransportError",
]


class PodlogError(Exception):
    """Base of podlog's own errors."""

    retriable: bool = False
    """True when the same operation may succeed if tried again later."""


class ConfigError(PodlogError):
    """A setting is missing, unknown or of the wrong type; the message names it."""


class SchemaError(PodlogError):
    """Bytes that do not decode as a record batch of a known schema version."""


class SpoolFullError(PodlogError):
    """The spool reached its size cap; the collector pauses until it drains."""

    retriable = True


class TransportError(PodlogError):
    """Delivery downstream failed; ``retriable`` says whether to try again."""

    def __init__(self, message: str, *, retriable: bool = True, setting: str | None = None):
        super().__init__(message)
        self.retriable = retriable
        self.setting = setting
