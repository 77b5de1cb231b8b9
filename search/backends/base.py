"""The one interface every search backend implements (OpenSearch, embedded).

The HTTP layer (``search/app.py``) parses and validates the user's query
string into a :class:`SearchRequest`, applies authorization by adding the
caller's allowed namespace patterns, and calls a backend.  Backends never see
raw user input outside the parsed query tree, and never build a request by
string concatenation.

Ordering everywhere is newest first by ``(timestamp_ns, log.offset,
event.id)`` descending; a cursor is that triple of the last hit.  The shared
backend test suite (``tests/integration/search/test_backend_contract.py``)
runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from podlog.record import Record

__all__ = [
    "FILTER_FIELDS",
    "ContextResult",
    "Cursor",
    "HistogramBucket",
    "SearchBackend",
    "SearchPage",
    "SearchRequest",
]

FILTER_FIELDS: Mapping[str, str] = {
    "namespace": "kubernetes.namespace",
    "pod": "kubernetes.pod.name",
    "container": "kubernetes.container.name",
    "node": "kubernetes.node.name",
    "workload": "kubernetes.workload.name",
    "level": "level",
    "stream": "stream",
}
"""Filter names the API accepts, and the record field each one matches exactly."""

Cursor = tuple[int, int, str]
"""``(timestamp_ns, log.offset, event.id)`` of the last hit of a page."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A validated search: what every backend call takes."""

    query: Any
    """A luqum tree from ``search.query.parse_query``, or None for everything."""
    start_ns: int
    """Inclusive lower bound on ``timestamp_ns``."""
    end_ns: int
    """Exclusive upper bound on ``timestamp_ns``."""
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """By :data:`FILTER_FIELDS` name: the record matches one of the values exactly."""
    allowed_namespaces: Sequence[str] | None = None
    """Authorization: fnmatch patterns the caller may see; None means all."""
    size: int = 100
    """Hits per page."""
    search_after: Cursor | None = None
    """Return hits strictly older than this cursor."""
    timeout_seconds: float = 10.0
    """Server-side time limit for the backend."""


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of hits, newest first."""

    hits: list[Record]
    total: int
    """Matching records in the whole range (may be a lower bound if ``total_exact`` is False)."""
    total_exact: bool = True
    next_cursor: Cursor | None = None
    """Cursor for the next page; None when this was the last."""


@dataclass(frozen=True, slots=True)
class HistogramBucket:
    """Count of matching records in ``[start_ns, start_ns + interval)``."""

    start_ns: int
    count: int


@dataclass(frozen=True, slots=True)
class ContextResult:
    """Lines around an anchor from the same file and stream, in file order."""

    before: list[Record]
    """Oldest first, ending just before the anchor."""
    anchor: Record
    after: list[Record]
    """Oldest first, starting just after the anchor."""


class SearchBackend(Protocol):
    """Read side of an index of podlog records."""

    name: str

    async def search(self, request: SearchRequest) -> SearchPage:
        """Matching records, newest first, one page."""

    async def histogram(self, request: SearchRequest, interval_ns: int) -> list[HistogramBucket]:
        """Counts per interval over ``[start_ns, end_ns)``; buckets with zero may be omitted."""

    async def top_values(self, request: SearchRequest, field: str, size: int) -> list[tuple[str, int]]:
        """Most frequent values of a :data:`FILTER_FIELDS` name among matches."""

    async def context(
        self,
        event_id: str,
        before: int,
        after: int,
        allowed_namespaces: Sequence[str] | None,
    ) -> ContextResult | None:
        """Lines around ``event_id`` in file order; None if absent or not allowed."""

    async def tail(self, request: SearchRequest, after: Cursor | None) -> tuple[list[Record], Cursor | None]:
        """Matches newer than ``after`` (oldest first) and the newest cursor seen.

        With ``after`` None, returns no records and the cursor of the newest
        match, so a live tail starts "from now".  The API calls this in a
        server-side loop and streams what it returns.
        """

    async def close(self) -> None:
        """Release connections."""
