"""Search events: each function writes one log line and moves its metric together."""

from __future__ import annotations

from podlog.logging import get_logger
from podlog.metrics import counter, gauge, histogram

__all__ = [
    "auth_failed",
    "backend_failed",
    "export_finished",
    "query_rejected",
    "request_completed",
    "tail_closed",
    "tail_opened",
]

log = get_logger("search.api")

REQUESTS = counter("podlog_search_requests_total", "API requests by endpoint and status.", ["endpoint", "status"])
REQUEST_SECONDS = histogram("podlog_search_request_seconds", "API request time by endpoint.", ["endpoint"])
AUTH_FAILURES = counter("podlog_search_auth_failures_total", "Requests refused by authentication.", ["reason"])
QUERIES_REJECTED = counter(
    "podlog_search_queries_rejected_total",
    "Requests refused as invalid or beyond a guard.",
    ["endpoint"],
)
BACKEND_FAILURES = counter("podlog_search_backend_failures_total", "Backend calls that failed.", ["endpoint"])
TAIL_STREAMS = gauge("podlog_search_tail_streams", "Live tails open now.")
EXPORTED = counter("podlog_search_exported_records_total", "Records streamed by exports.")


def request_completed(endpoint: str, status: int, seconds: float) -> None:
    """A request finished (access log at debug level)."""
    REQUESTS.labels(endpoint, str(status)).inc()
    REQUEST_SECONDS.labels(endpoint).observe(seconds)
    log.debug("request_completed", endpoint=endpoint, status=status, seconds=round(seconds, 4))


def auth_failed(reason: str, client: str | None, error: str) -> None:
    """A request was refused by authentication."""
    AUTH_FAILURES.labels(reason).inc()
    log.info("auth_failed", reason=reason, client=client, error=error)


def query_rejected(endpoint: str, identity: str, error: str) -> None:
    """A request was refused as invalid or beyond a guard."""
    QUERIES_REJECTED.labels(endpoint).inc()
    log.info("query_rejected", endpoint=endpoint, identity=identity, error=error)


def backend_failed(endpoint: str, identity: str, error: str) -> None:
    """The backend failed to answer a request."""
    BACKEND_FAILURES.labels(endpoint).inc()
    log.warning("backend_failed", endpoint=endpoint, identity=identity, error=error)


def tail_opened(identity: str, query: str) -> None:
    """A live tail stream started."""
    TAIL_STREAMS.inc()
    log.info("tail_opened", identity=identity, query=query)


def tail_closed(identity: str, sent: int) -> None:
    """A live tail stream ended (client gone or server stopping)."""
    TAIL_STREAMS.dec()
    log.info("tail_closed", identity=identity, sent=sent)


def export_finished(identity: str, records: int, capped: bool) -> None:
    """An NDJSON export finished streaming."""
    EXPORTED.inc(records)
    log.info("export_finished", identity=identity, records=records, capped=capped)
