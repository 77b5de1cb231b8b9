"""Kubernetes metadata settings: the node-scoped pod watch and its cache."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from podlog.config import setting

__all__ = ["LAST_APPLIED", "KubernetesConfig"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
"""The annotation ``kubectl apply`` writes: a whole manifest, useless in every log record."""


@dataclasses.dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """How the agent learns pod metadata."""

    enabled: bool = setting(True, "Watch the API for pod metadata; off means path metadata only.")
    kubeconfig: str = setting(
        "",
        "Kubeconfig file to use; empty means in-cluster service account, then $KUBECONFIG, "
        "then ~/.kube/config.",
    )
    api_server: str = setting(
        "",
        "API server URL (http://host:port or https://...); overrides kubeconfig. Without "
        "api_token_file it is used without credentials.",
    )
    api_token_file: str = setting(
        "",
        "With api_server: a file holding the bearer token, read again as it rotates "
        "(e.g. a projected service account token).",
    )
    api_ca_file: str = setting(
        "", "With an https api_server: the CA bundle that signed its certificate."
    )
    start_wait_seconds: float = setting(
        30.0,
        "At start, how long reading waits for the first pod and namespace lists, so that the "
        "lines already on disk get their pod's metadata, exclusion and retention; then it "
        "reads with path metadata (counted). 0 reads at once.",
    )
    hold_unknown_seconds: float = setting(
        30.0,
        "Once the pods were listed, how long a container's file whose pod the cache does not "
        "know (an API outage, a watch event not in yet, a pod recreated under the same name) "
        "is left unread, so that its lines leave with the pod's metadata: the file is the "
        "buffer. Then it is read with path metadata (counted). 0 never holds.",
    )
    context: str = setting("", "Kubeconfig context to use; empty means its current context.")
    service_account_dir: str = setting(
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "In-cluster credentials (token, ca.crt, namespace), used when no kubeconfig is set.",
    )
    watch_namespaces: bool = setting(
        True, "Also watch Namespace objects, for namespace labels and the retention annotation."
    )
    request_timeout_seconds: float = setting(
        10.0, "Connect and read timeout of list requests (watches have no read timeout)."
    )
    watch_timeout_seconds: int = setting(
        300, "Server-side timeout of one watch request; the watch then resumes from its version."
    )
    list_page_size: int = setting(500, "Pods per page when listing (the list `limit`).")
    backoff_initial_seconds: float = setting(
        0.5, "First reconnect delay after an API error; doubles per failure, with jitter."
    )
    backoff_max_seconds: float = setting(30.0, "Longest reconnect delay after repeated failures.")
    deleted_grace_seconds: float = setting(
        300.0,
        "How long a deleted pod's metadata is kept after its deletion and after its files "
        "were last read.",
    )
    max_pods: int = setting(
        10000, "Most pods held in the cache; the longest-unused deleted pods are evicted first."
    )
    snapshot_interval_seconds: float = setting(
        10.0, "How often changed pod metadata is written to <state_dir>/kube for restarts."
    )
    annotations_allow: list[str] = setting(
        ["*"], "Glob patterns of annotation keys copied into records."
    )
    annotations_deny: list[str] = setting(
        [LAST_APPLIED], "Glob patterns of annotation keys never copied (applied after allow)."
    )
    labels_deny: list[str] = setting(
        [], "Glob patterns of label keys never copied into records."
    )
    max_annotation_value_bytes: int = setting(
        4096, "Annotation values longer than this are cut to this many bytes in records."
    )
    default_parser: str = setting(
        "json",
        "Application payload parsing when no podlog.io/parser annotation says: json, "
        "logfmt or none.",
    )
    payload_max_depth: int = setting(
        5, "Nesting depth of a parsed payload kept as objects; deeper values stay JSON strings."
    )
    payload_max_fields: int = setting(
        100, "Most fields of a parsed payload kept; the message keeps the full original line."
    )

    def __post_init__(self) -> None:
        if (self.api_token_file or self.api_ca_file) and not self.api_server:
            raise ValueError("api_token_file and api_ca_file need api_server")
        if self.api_server:
            url = urlsplit(self.api_server)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(
                    f"api_server {self.api_server!r} is not an http:// or https:// URL with a host"
                )
        if self.default_parser not in ("json", "logfmt", "none"):
            raise ValueError(
                f"default_parser {self.default_parser!r} is not one of json, logfmt, none"
            )
        for name in (
            "max_pods",
            "list_page_size",
            "payload_max_depth",
            "payload_max_fields",
            "watch_timeout_seconds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.hold_unknown_seconds < 0:
            raise ValueError("hold_unknown_seconds must be 0 (never hold) or more")
        if self.backoff_initial_seconds <= 0 or self.backoff_max_seconds < (
            self.backoff_initial_seconds
        ):
            raise ValueError("backoff_initial_seconds must be > 0 and <= backoff_max_seconds")
