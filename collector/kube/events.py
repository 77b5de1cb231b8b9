"""Pod metadata events: each method writes its log line and bumps its metric together."""

from __future__ import annotations

from podlog.logging import get_logger
from podlog.metrics import counter, gauge

__all__ = ["KubeEvents", "events"]

log = get_logger("collector.kube")

RECORDS = counter(
    "podlog_collector_kube_records_total",
    "Records enriched, by metadata source: api, cache (deleted or restored pod) or path.",
    ["metadata"],
)
PATH_ONLY = counter(
    "podlog_collector_kube_path_only_records_total",
    "Records that carried only path metadata, by reason: disabled, api_unreachable, pod_unknown, "
    "container_mismatch (only pods of that name whose container has another id are known).",
    ["reason"],
)
PODS = gauge(
    "podlog_collector_kube_pods",
    "Pods in the metadata cache, by state: live, deleted or restored.",
    ["state"],
)
START_WAITING = gauge(
    "podlog_collector_kube_start_waiting",
    "1 while reading waits at start for the first pod (and namespace) list.",
)
START_WAIT_EXPIRED = counter(
    "podlog_collector_kube_start_wait_expired_total",
    "Starts whose wait for the first list ran out: the backlog was read with path metadata.",
)
STREAMS_HELD = gauge(
    "podlog_collector_kube_streams_held",
    "Container files left unread while their pod is unknown to the cache "
    "(kubernetes.hold_unknown_seconds).",
)
HOLD_EXPIRED = counter(
    "podlog_collector_kube_hold_expired_total",
    "Held container files whose pod stayed unknown for hold_unknown_seconds: read with path "
    "metadata.",
)
API_UP = gauge(
    "podlog_collector_kube_api_up", "1 while the pod watch is connected to the API, else 0."
)
WATCH_EVENTS = counter(
    "podlog_collector_kube_watch_events_total",
    "Watch events received, by resource (pods, namespaces) and type.",
    ["resource", "type"],
)
LISTS = counter(
    "podlog_collector_kube_lists_total",
    "Full lists, by resource and reason: start, gone (410), reconnect.",
    ["resource", "reason"],
)
API_ERRORS = counter(
    "podlog_collector_kube_api_errors_total",
    "Failed list or watch requests, by resource and error_code.",
    ["resource", "error_code"],
)
EVICTED = counter(
    "podlog_collector_kube_pods_evicted_total",
    "Pod metadata dropped from the cache, by reason: expired (grace over) or capacity.",
    ["reason"],
)
BAD_OBJECTS = counter(
    "podlog_collector_kube_objects_rejected_total",
    "API objects skipped because they lack a uid, namespace or name, by resource.",
    ["resource"],
)
ANNOTATIONS_INVALID = counter(
    "podlog_collector_kube_annotations_invalid_total",
    "podlog.io/* annotations with a value podlog does not understand (ignored), by annotation.",
    ["annotation"],
)
SNAPSHOTS = counter(
    "podlog_collector_kube_snapshots_total",
    "Metadata snapshot writes and reads under <state_dir>/kube, by operation and result.",
    ["operation", "result"],
)




class KubeEvents:
    """The events of ``collector/kube`` and of application payload parsing."""

    def __init__(self) -> None:
        self._path_reason: str | None = None

    def records_enriched(self, metadata: str, count: int) -> None:
        """``count`` records left with metadata source ``metadata`` (no log: hot path)."""
        RECORDS.labels(metadata).inc(count)

    def records_path_only(self, reason: str, count: int) -> None:
        """``count`` records carried path metadata only: counted always, logged when the
        reason differs from the previous batch's (not per batch)."""
        PATH_ONLY.labels(reason).inc(count)
        if reason != self._path_reason:
            self._path_reason = reason
            log.info("kube_metadata_path_only", reason=reason)

    def start_waiting(self, waiting: bool, bound: float) -> None:
        START_WAITING.set(1 if waiting else 0)
        if waiting:
            log.info("kube_start_waiting_for_list", up_to_seconds=bound)

    def start_wait_expired(self, bound: float, pods_known: int) -> None:
        START_WAIT_EXPIRED.inc()
        log.warning("kube_start_wait_expired", waited_seconds=bound, pods_known=pods_known,
                    hint="reading with path metadata (and a restored snapshot) until the API answers")

    def stream_held(
        self, namespace: str, pod: str, container: str, reason: str, bound: float, held: int
    ) -> None:
        """A container's file is left unread until its pod is known, up to ``bound`` seconds."""
        STREAMS_HELD.set(held)
        log.info("kube_stream_held", namespace=namespace, pod=pod, container=container,
                 reason=reason, up_to_seconds=bound)

    def stream_released(
        self, namespace: str, pod: str, container: str, waited: float, held: int
    ) -> None:
        """A held file's pod is known now: it is read with the pod's metadata."""
        STREAMS_HELD.set(held)
        log.info("kube_stream_released", namespace=namespace, pod=pod, container=container,
                 waited_seconds=round(waited, 3))

    def stream_hold_expired(
        self, namespace: str, pod: str, container: str, reason: str, waited: float, held: int
    ) -> None:
        """A held file's pod stayed unknown for the whole bound: it is read with path metadata."""
        STREAMS_HELD.set(held)
        HOLD_EXPIRED.inc()
        log.warning("kube_stream_hold_expired", namespace=namespace, pod=pod, container=container,
                    reason=reason, waited_seconds=round(waited, 3),
                    hint="reading with path metadata until the pod is known")

    def streams_forgotten(self, held: int) -> None:
        """Held files no longer asked about (closed) were dropped from the holds."""
        STREAMS_HELD.set(held)

    def pods_counted(self, counts: dict[str, int]) -> None:
        for state in ("live", "deleted", "restored"):
            PODS.labels(state).set(counts.get(state, 0))

    def api_connection_changed(self, connected: bool) -> None:
        """The pod watch connected or lost its connection (the API_UP gauge)."""
        API_UP.set(1 if connected else 0)
        log.info("kube_api_connected" if connected else "kube_api_disconnected")

    def api_listed(self, resource: str, resource_version: str, items: int) -> None:
        log.info("kube_api_listed", resource=resource, resource_version=resource_version, items=items)

    def api_failed(self, resource: str, error_code: str, error: str, retry_in: float) -> None:
        API_ERRORS.labels(resource, error_code).inc()
        log.warning(
            "kube_api_failed",
            resource=resource,
            error_code=error_code,
            error=error,
            retry_in=round(retry_in, 3),
        )

    def api_unconfigured(self, error: str, retry_in: float) -> None:
        API_ERRORS.labels("config", "no_config").inc()
        log.error("kube_config_failed", error=error, retry_in=round(retry_in, 3))

    def node_has_no_pods(self, node: str) -> None:
        log.warning(
            "kube_node_has_no_pods",
            node=node,
            hint="set NODE_NAME from spec.nodeName (downward API) or podlog.node_name",
        )

    def list_started(self, resource: str, reason: str) -> None:
        LISTS.labels(resource, reason).inc()
        log.info("kube_list_started", resource=resource, reason=reason)

    def watch_event_received(self, resource: str, event_type: str) -> None:
        WATCH_EVENTS.labels(resource, event_type).inc()

    def watch_expired(self, resource: str, resource_version: str | None) -> None:
        log.info("kube_watch_expired", resource=resource, resource_version=resource_version)

    def object_rejected(self, resource: str) -> None:
        BAD_OBJECTS.labels(resource).inc()
        log.warning("kube_object_rejected", resource=resource, error_code="missing_identity")

    def pods_evicted(self, reason: str, count: int) -> None:
        if count:
            EVICTED.labels(reason).inc(count)
            log.info("kube_pods_evicted", reason=reason, count=count)

    def annotation_invalid(self, annotation: str, value: str, namespace: str, pod: str) -> None:
        ANNOTATIONS_INVALID.labels(annotation).inc()
        log.warning(
            "kube_annotation_invalid",
            annotation=annotation,
            value=value[:200],
            namespace=namespace,
            pod=pod,
        )

    def snapshot_written(self, path: str, pods: int) -> None:
        SNAPSHOTS.labels("write", "ok").inc()
        log.debug("kube_snapshot_written", path=path, pods=pods)

    def snapshot_write_failed(self, path: str, error: str) -> None:
        SNAPSHOTS.labels("write", "error").inc()
        log.error("kube_snapshot_write_failed", path=path, error=error)

    def snapshot_restored(self, path: str, pods: int, namespaces: int) -> None:
        SNAPSHOTS.labels("read", "ok").inc()
        log.info("kube_snapshot_restored", path=path, pods=pods, namespaces=namespaces)

    def snapshot_rejected(self, path: str, error: str) -> None:
        SNAPSHOTS.labels("read", "error").inc()
        log.warning("kube_snapshot_rejected", path=path, error=error)


events = KubeEvents()
"""The process-wide instance."""
