"""Errors of the search side; the API turns each into an HTTP status.

What a client reads is only the public part of an error: a backend's detail
(hosts, ports, paths, the driver's message) goes to the server log under the
request id, and the client gets the id to quote.
"""

from __future__ import annotations

from podlog.errors import PodlogError

__all__ = ["BackendError", "RequestError"]


class RequestError(PodlogError):
    """A request parameter is missing, malformed or beyond a guard (HTTP 400)."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        """The query parameter at fault, when one is: the "position" of a parameter error."""


class BackendError(PodlogError):
    """The index failed to answer; ``retriable`` when it is down or timed out (HTTP 503).

    The message is for the server log and may name hosts and paths; ``public``
    is what a client may read (None: a generic sentence chosen by the API).
    """

    def __init__(self, message: str, *, retriable: bool = True, public: str | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.public = public
