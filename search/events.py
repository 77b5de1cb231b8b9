"""Search events: each function writes one log line and moves its metric together."""

from __future__ import annotations

from podlog.logging import get_logger
from podlog.metrics import counter, gauge, histogram

__all__ = [
    "auth_failed",
    "backend_failed",
    "export_finished",
    "query_rejected",
    "rate_limited",
    "request_completed",
    "request_failed",
    "secrets_loaded",
    "secrets_reload_failed",
    "tail_closed",
    "tail_opened",
    "tail_refused",
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
TAILS_REFUSED = counter(
    "podlog_search_tail_refusals_total", "Live tails refused by a cap (global, identity).", ["cap"]
)
TAILS_ENDED = counter(
    "podlog_search_tail_ends_total",
    "Live tails ended by the server: revoked, max_duration, idle, error, client (gone), stopping.",
    ["reason"],
)
RATE_LIMITED = counter("podlog_search_rate_limited_total", "Requests refused by the per-identity rate limit.")
REQUEST_FAILURES = counter(
    "podlog_search_request_failures_total", "Requests that failed with an unexpected error (HTTP 500).", ["endpoint"]
)
SECRETS_RELOAD_ERRORS = counter(
    "podlog_search_secrets_reload_errors_total",
    "Reloads of the secrets file that failed: invalid, unreadable, missing (everything revoked).",
    ["reason"],
)
SECRETS_LOADED = gauge(
    "podlog_search_secrets_loaded_timestamp_seconds", "When the secrets file was last loaded successfully."
)
SECRETS_IDENTITIES = gauge("podlog_search_secrets_identities", "Identities the secrets file grants now.")


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
    """The backend failed to answer a request (the detail stays in this log line)."""
    BACKEND_FAILURES.labels(endpoint).inc()
    log.warning("backend_failed", endpoint=endpoint, identity=identity, error=error)


def request_failed(endpoint: str, identity: str | None, path: str = "") -> None:
    """A request failed with an unexpected error; logged with its traceback (call inside ``except``)."""
    REQUEST_FAILURES.labels(endpoint).inc()
    log.exception("request_failed", endpoint=endpoint, identity=identity, path=path[:200])


def rate_limited(endpoint: str, identity: str, retry_after: float) -> None:
    """A request was refused by the per-identity rate limit."""
    RATE_LIMITED.inc()
    log.info("rate_limited", endpoint=endpoint, identity=identity, retry_after=round(retry_after, 3))


def tail_refused(identity: str, cap: str, limit: int) -> None:
    """A live tail was refused because a cap (global or per identity) was reached."""
    TAILS_REFUSED.labels(cap).inc()
    log.info("tail_refused", identity=identity, cap=cap, limit=limit)


def secrets_loaded(path: str, identities: int) -> None:
    """The secrets file was (re)loaded."""
    SECRETS_LOADED.set_to_current_time()
    SECRETS_IDENTITIES.set(identities)
    log.info("secrets_loaded", path=path, identities=identities)


def secrets_reload_failed(path: str, reason: str, error: str) -> None:
    """A reload of the secrets file failed (reason invalid, unreadable) or found it gone (missing)."""
    SECRETS_RELOAD_ERRORS.labels(reason).inc()
    if reason == "missing":
        SECRETS_IDENTITIES.set(0)
    log.error("secrets_reload_failed", path=path, reason=reason, error=error)


def tail_opened(identity: str, query: str) -> None:
    """A live tail stream started."""
    TAIL_STREAMS.inc()
    log.info("tail_opened", identity=identity, query=query)


def tail_closed(identity: str, sent: int, reason: str) -> None:
    """A live tail stream ended: client gone, server stopping, or ended by the server (``reason``)."""
    TAIL_STREAMS.dec()
    TAILS_ENDED.labels(reason).inc()
    log.info("tail_closed", identity=identity, sent=sent, reason=reason)


def export_finished(identity: str, records: int, capped: bool) -> None:
    """An NDJSON export finished streaming."""
    EXPORTED.inc(records)
    log.info("export_finished", identity=identity, records=records, capped=capped)
