"""Errors of the search side; the API turns each into an HTTP status."""

from __future__ import annotations

from podlog.errors import PodlogError

__all__ = ["BackendError", "RequestError"]


class RequestError(PodlogError):
    """A request parameter is missing, malformed or beyond a guard (HTTP 400)."""


class BackendError(PodlogError):
    """The index failed to answer; ``retriable`` when it is down or timed out (HTTP 503)."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable
