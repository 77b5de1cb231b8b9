"""Search settings (the HTTP API and page) and the embedded index's settings."""

from __future__ import annotations

import dataclasses
from typing import Literal

from podlog.config import setting

__all__ = ["AlertsConfig", "AuthConfig", "EmbeddedConfig", "GuardConfig", "RateLimitConfig", "SearchConfig"]

AUTH_MODES = ("token", "basic", "header", "none")
"""Values of ``search.auth.mode``."""


@dataclasses.dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may use the search API, and which namespaces each identity sees."""

    mode: str = setting(
        "token",
        "token (bearer tokens), basic (user and password), header (trusted auth proxy) or "
        "none (no authentication: only when explicitly set).",
    )
    secrets_file: str = setting(
        "",
        "YAML file listing identities: name, token (or token_sha256) or password_hash (argon2id), namespaces.",
    )
    trusted_header: str = setting(
        "X-Forwarded-User", "In header mode: the request header naming the authenticated user."
    )
    trusted_proxies: list[str] = setting(
        ["127.0.0.1/32", "::1/128"],
        "In header mode: client networks (CIDR) whose identity header is believed.",
    )
    anonymous_namespaces: list[str] = setting(["*"], "In none mode: namespace patterns every caller may see.")
    reload_seconds: float = setting(
        2.0,
        "How often the secrets file is checked for changes; open live tails re-check their "
        "credential at each reload and close when it was revoked.",
    )

    def __post_init__(self) -> None:
        if self.mode not in AUTH_MODES:
            raise ValueError(f"auth.mode {self.mode!r} is not one of {', '.join(AUTH_MODES)}")
        if not self.reload_seconds > 0:
            raise ValueError(f"auth.reload_seconds must be positive, not {self.reload_seconds}")


@dataclasses.dataclass(frozen=True, slots=True)
class GuardConfig:
    """Limits that keep one query from hurting the index or the API."""

    max_range_hours: float = setting(24.0 * 31, "Longest time range a query may cover, in hours.")
    timeout_seconds: float = setting(10.0, "Server-side time limit of one backend call.")
    max_page_size: int = setting(5000, "Most hits one search page may return.")
    max_export_records: int = setting(100_000, "Most records one NDJSON export streams.")
    max_query_length: int = setting(4096, "Longest query string accepted, in characters.")
    max_tail_streams: int = setting(200, "Most live tails served at once; more are refused with 429.")
    max_tail_streams_per_identity: int = setting(
        10, "Most live tails one identity (token, user) may have open at once; more are refused with 429."
    )
    max_tail_seconds: float = setting(
        3600.0, "Longest a live tail stays open; then it ends with an error event saying so (the page reopens it)."
    )
    tail_idle_seconds: float = setting(
        900.0, "A live tail that has sent no line for this long ends, so a forgotten tab holds no stream."
    )
    allow_leading_wildcards: bool = setting(False, "Accept terms that start with * or ? (expensive on large indices).")
    allow_regex: bool = setting(False, "Accept /regular expression/ terms.")


RATE_LIMIT_MODES = ("auto", "enabled", "disabled")
"""Values of ``search.rate_limit.mode``."""


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Requests per identity: a token bucket each, refused with 429 and Retry-After when empty."""

    mode: str = setting(
        "auto",
        "enabled, disabled, or auto: enabled over OpenSearch (podlog search), disabled on the embedded "
        "index (podlog run).",
    )
    requests_per_second: float = setting(20.0, "Requests an identity may make per second, sustained.")
    burst: int = setting(100, "Requests an identity may make at once before the sustained rate applies.")

    def __post_init__(self) -> None:
        if self.mode not in RATE_LIMIT_MODES:
            raise ValueError(f"rate_limit.mode {self.mode!r} is not one of {', '.join(RATE_LIMIT_MODES)}")
        if not self.requests_per_second > 0 or self.burst < 1:
            raise ValueError("rate_limit.requests_per_second must be positive and rate_limit.burst at least 1")

    def enabled(self, backend: str) -> bool:
        """Whether requests are limited with this backend."""
        return self.mode == "enabled" or (self.mode == "auto" and backend != "embedded")


@dataclasses.dataclass(frozen=True, slots=True)
class AlertsConfig:
    """Alert rules on log queries, evaluated by the search process (see docs/alerts.md)."""

    rules_path: str = setting(
        "", "A rules YAML file, or a directory (a mounted ConfigMap) of them; empty disables alerting."
    )
    api_rules: bool = setting(
        False,
        "Accept rules through /api/alerts/rules, kept in the index store (an OpenSearch index, or a "
        "SQLite file beside the embedded index); they run beside the rules files.",
    )
    reload_seconds: float = setting(
        30.0, "How often the rules files and stored rules are re-read; a bad change keeps the old rules."
    )
    state_file: str = setting(
        "",
        "JSON file keeping active alerts and sent notifications across restarts; empty keeps "
        "them in memory only (a restart re-sends what is firing).",
    )
    evaluation_delay_seconds: float = setting(
        30.0, "A window is evaluated only this long after it ends, so late-indexed lines are counted."
    )
    max_groups: int = setting(100, "Most groups (alerts) one grouped rule tracks per evaluation.")
    external_url: str = setting(
        "http://localhost:8080", "Base URL of the search page, for the links in notifications."
    )
    alertmanager_urls: list[str] = setting([], "Alertmanager base URLs; alerts are POSTed to /api/v2/alerts.")
    webhook_urls: list[str] = setting([], "URLs that receive signed JSON on firing and resolved.")
    webhook_secret: str = setting("", "HMAC-SHA256 key of the webhook signature header.", secret=True)
    slack_urls: list[str] = setting([], "Slack-compatible incoming webhook URLs.", secret=True)
    notify_timeout_seconds: float = setting(5.0, "Time limit of one delivery attempt.")
    notify_attempts: int = setting(4, "Attempts per delivery before it is counted as failed.")
    notify_backoff_seconds: float = setting(1.0, "Wait before the second attempt; doubled before each next one.")

    def __post_init__(self) -> None:
        if not self.reload_seconds > 0 or not self.notify_timeout_seconds > 0:
            raise ValueError("alerts.reload_seconds and alerts.notify_timeout_seconds must be positive")
        if self.notify_attempts < 1 or self.max_groups < 1 or self.evaluation_delay_seconds < 0:
            raise ValueError(
                "alerts.notify_attempts and alerts.max_groups must be at least 1, "
                "alerts.evaluation_delay_seconds not negative"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class SearchConfig:
    """The search API and web page."""

    listen: str = setting(
        "0.0.0.0:8080", "Address the search API and page listen on (the port an Ingress may route to)."
    )
    ops_listen: str = setting(
        "0.0.0.0:9090",
        "Address of the search process's /metrics, /healthz and /readyz, apart from the API so "
        "that no public route reaches them; empty disables.",
    )
    openapi: Literal["authenticated", "off"] = setting(
        "authenticated",
        "/openapi.json: authenticated (asks for the same credentials as /api) or off (not served).",
    )
    backend: str = setting("opensearch", "opensearch, or embedded (single-node mode).")
    opensearch_hosts: list[str] = setting(["http://localhost:9200"], "OpenSearch URLs to search.")
    index_prefix: str = setting("podlog", "Prefix of podlog's indices, as the indexer writes them.")
    opensearch_username: str = setting("", "OpenSearch basic auth user; empty means none.")
    opensearch_password: str = setting("", "OpenSearch basic auth password.", secret=True)
    opensearch_verify_certs: bool = setting(True, "Verify OpenSearch's TLS certificate.")
    opensearch_ca_certs: str = setting("", "CA bundle for OpenSearch's certificate; empty: system CAs.")
    auth: AuthConfig = setting(AuthConfig, "Authentication and per-identity namespace access.")
    guards: GuardConfig = setting(GuardConfig, "Query guards: range, timeout, result caps.")
    rate_limit: RateLimitConfig = setting(RateLimitConfig, "Per-identity request rate limit.")
    alerts: AlertsConfig = setting(AlertsConfig, "Alert rules on log queries and where notifications go.")
    audit_log: bool = setting(
        True,
        "Write one JSON line per API request to the search.audit logger: who, which namespaces, "
        "the query, time range, result count and duration (never the credential).",
    )
    tail_poll_seconds: float = setting(1.0, "How often a live tail asks the index for new lines.")
    tail_lookback_seconds: float = setting(
        10.0, "A live tail also picks up lines indexed this late after their timestamp."
    )
    default_range_minutes: float = setting(15.0, "Time range of a search that gives no start, in minutes before now.")


@dataclasses.dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    """The embedded index of single-node mode (`podlog run`)."""

    path: str = setting("", "Index file; empty means <state_dir>/index/podlog.db.")
    synchronous: str = setting(
        "full", "SQLite synchronous mode: full (survives power loss) or normal (survives kill -9)."
    )
    cache_mb: int = setting(64, "SQLite page cache per connection, in MiB.")
    readers: int = setting(2, "Threads (each with its own connection) that answer searches.")
    track_total_hits: int = setting(10000, "Count matches exactly up to this many; above, a lower bound.")
    retention_interval_seconds: float = setting(300.0, "How often expired records are deleted, per retention class.")
    retention_batch: int = setting(5000, "Records deleted per transaction when applying retention.")
    wildcard_expansion_limit: int = setting(
        1000, "Most distinct filter values a field:pattern query expands to before it scans."
    )
    switch_interval_ms: float = setting(
        0.5,
        "Python's thread switch interval while the index runs, in ms (0: the interpreter's 5 ms); "
        "a commit waits up to this long per SQLite statement while another thread runs Python.",
    )
    demo_logs: str = setting(
        "", "Directory the built-in demo generator writes to; empty disables it (`podlog run --demo`)."
    )
