"""The audit log: who queried what, one JSON line per API request, on the ``search.audit`` logger.

Each line carries the identity's name (never its token or password), the
namespaces it may read, the endpoint, the query and filters, the time range,
how many records came back, the status, the duration and the request id.  It
is written at info level with ``component="search.audit"`` so a log pipeline
can route it apart; ``search.audit_log: false`` turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from podlog.logging import get_logger
from podlog.metrics import counter

__all__ = ["AuditLog"]

log = get_logger("search.audit")

AUDITED = counter("podlog_search_audit_records_total", "Audit log lines written, by endpoint.", ["endpoint"])

_PARAMS = ("q", "start", "end", "cursor", "field", "limit", "size", "event_id")
_MAX_VALUE = 4096


def _bounded(value: str) -> str:
    return value if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + "..."


class AuditLog:
    """Writes audit lines, or nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def request(
        self,
        *,
        endpoint: str,
        identity: str | None,
        namespaces: Sequence[str],
        params: Mapping[str, str],
        filters: Mapping[str, Sequence[str]],
        status: int,
        results: int | None,
        seconds: float,
        request_id: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        client: str | None = None,
    ) -> None:
        """One finished API request (a stream: when it ends)."""
        if not self.enabled:
            return
        AUDITED.labels(endpoint).inc()
        fields: dict[str, Any] = {
            "endpoint": endpoint,
            "identity": identity,
            "namespaces": list(namespaces),
            "status": status,
            "results": results,
            "seconds": round(seconds, 4),
            "request_id": request_id,
            "client": client,
        }
        fields.update({name: _bounded(params[name]) for name in _PARAMS if params.get(name)})
        if filters:
            fields["filters"] = {k: [_bounded(v) for v in vs] for k, vs in filters.items()}
        if start_ns is not None:
            fields["start_ns"] = start_ns
        if end_ns is not None:
            fields["end_ns"] = end_ns
        log.info("search_audited", **fields)
