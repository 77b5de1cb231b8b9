"""The enricher the pipeline calls: per file a policy, per batch the metadata.

:class:`KubeEnricher` reads the :class:`~collector.kube.cache.PodCache` only,
so a call never blocks or does I/O: a record whose pod the cache does not
know (yet) goes on with what its path says and ``podlog.metadata = "path"``,
counted by reason.  Before that, :meth:`KubeEnricher.held` lets such a
container's file wait unread for up to ``kubernetes.hold_unknown_seconds``
(an API outage, a watch event not in yet): the file on disk is the buffer,
and its lines leave with the pod's metadata once the watch brings the pod.
:func:`build_enricher` is what the CLI composes: with ``kubernetes.enabled``
off, a path-only enricher; on, the API-backed enricher plus the watch service
that fills its cache.  Application payloads are not parsed here: the parser a
file asks for (``podlog.io/parser``) travels in ``podlog.parser``, and the
reader of the message (the indexer, or ``podlog run``'s index) parses them.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.enrichment import Enricher, FilePolicy, PathMeta
from collector.kube.cache import PodCache, PodEntry
from collector.kube.config import KubernetesConfig
from collector.kube.events import events
from collector.kube.metadata import (
    ANNOTATION_MULTILINE,
    ANNOTATION_PARSER,
    NO_CONTROLS,
    NamespaceMeta,
    PodMeta,
)
from podlog.config import CommonConfig
from podlog.lifecycle import Health, Service
from podlog.payload import PARSERS, PayloadLimits
from podlog.record import Record, SharedMap, podlog_fields

__all__ = ["ApiState", "KubeEnricher", "build_enricher"]

MULTILINE_PRESETS = ("java", "python", "go", "none")
FORGET_HOLD_SECONDS = 600.0
"""A held (or expired) stream not asked about for this long is forgotten: its files closed.
Long, since reading pauses while the sink is full; an entry costs about 100 bytes."""
_SWEEP_INTERVAL_SECONDS = 10.0
_TRUE = ("true", "yes", "1", "on")
DEFAULT_POLICY = FilePolicy()


class ApiState:
    """What the enricher knows of the watch: has it ever listed, is it connected."""

    __slots__ = ("_needed", "connected", "ready", "synced")

    def __init__(self, needed: tuple[str, ...] = ("pods",)) -> None:
        self.synced = False
        """True once a full pod list has been applied to the cache."""
        self.connected = False
        """True while the last list or watch request succeeded."""
        self._needed = set(needed)
        self.ready = asyncio.Event()
        """Set once every resource the enricher needs (pods, and namespaces when watched)
        was listed: the backlog on disk can be enriched."""

    def listed(self, resource: str) -> None:
        """A full list of ``resource`` was applied to the cache."""
        if resource == "pods":
            self.synced = True
        self._needed.discard(resource)
        if not self._needed:
            self.ready.set()


@dataclass(slots=True)
class _Hold:
    """One container file's wait for its pod (see :meth:`KubeEnricher.held`)."""

    since: float
    """Monotonic time the stream was first held."""
    asked: float
    """Monotonic time the pipeline last asked."""
    expired: bool = False
    """The bound ran out: read with path metadata until the pod is known, never held again."""


class KubeEnricher:
    """Pod metadata from the cache (or from the path alone), and the payload parser to use."""

    def __init__(
        self,
        config: KubernetesConfig,
        node_name: str,
        cache: PodCache | None = None,
        api: ApiState | None = None,
    ) -> None:
        self._config = config
        self._node = node_name
        self._cache = cache
        self._api = api or ApiState()
        limits = (config.payload_max_depth, config.payload_max_fields)
        default = PayloadLimits()
        self._limits = None if limits == (default.max_depth, default.max_fields) else list(limits)
        """Payload limits for the reader of the messages, when not its defaults."""
        self._shared = SharedValues()
        self._retention_policies: dict[str, FilePolicy] = {}
        self._podlog_maps: dict[tuple[str, str | None, str], SharedMap] = {}
        self._path_maps: dict[PathMeta, tuple[NamespaceMeta | None, SharedMap]] = {}
        self._holds: dict[PathMeta, _Hold] = {}
        """Streams whose pod was unknown when asked: held, or expired and read as path."""
        self._holding = 0
        """How many of ``_holds`` are still held (not expired)."""
        self._swept_at = 0.0

    @property
    def cache(self) -> PodCache | None:
        """The pod cache, or None for a path-only enricher."""
        return self._cache

    # -- the Enricher protocol ----------------------------------------------------------

    async def wait_ready(self) -> None:
        """Until the first lists are in the cache, up to ``start_wait_seconds``: the lines
        already on disk then leave with their pod's metadata and policy (exclusion, retention),
        not with the path alone.  Past the bound, reading starts anyway (counted per record as
        ``api_unreachable``), with what a snapshot restored."""
        if self._cache is None or self._api.ready.is_set() or self._config.start_wait_seconds <= 0:
            return
        events.start_waiting(True, self._config.start_wait_seconds)
        try:
            await asyncio.wait_for(self._api.ready.wait(), self._config.start_wait_seconds)
        except TimeoutError:
            events.start_wait_expired(self._config.start_wait_seconds, len(self._cache))
        finally:
            events.start_waiting(False, self._config.start_wait_seconds)

    def held(self, meta: PathMeta, now: float) -> bool:
        """True while a container's file should stay unread: its pod is unknown to the cache
        (not listed or watched yet, or only a pod of that name with another container id), the
        pods were listed at least once, and the stream has waited less than
        ``hold_unknown_seconds``.

        While the pod watch has lost the API, the bound is extended by ``backoff_max_seconds``:
        the watch reconnects up to one longest backoff delay after the API is back, and an
        outage shorter than the bound should not let the held lines go without their pod (nor
        an excluded pod's lines go at all).
        Before the first list, the start wait (``start_wait_seconds``) is the bound instead.
        A stream is held once: past the bound it is read with path metadata (counted) until
        its pod is known.  ``now`` is monotonic.
        """
        cache = self._cache
        if cache is None or not meta.pod:
            return False
        if self._holds and now - self._swept_at >= _SWEEP_INTERVAL_SECONDS:
            self._sweep(now)
        hold = self._holds.get(meta)
        bound = self._config.hold_unknown_seconds
        if hold is None and (bound <= 0 or not self._api.synced):
            return False
        if cache.lookup(meta) is not None:
            if hold is not None:
                self._release(meta, now)
            return False
        if hold is None:
            self._holds[meta] = _Hold(since=now, asked=now)
            self._holding += 1
            events.stream_held(
                meta.namespace, meta.pod, meta.container, self._path_reason(meta), bound,
                self._holding,
            )
            return True
        hold.asked = now
        if hold.expired:
            return False
        waited = now - hold.since
        if waited < bound:
            return True
        if not self._api.connected and waited < bound + self._config.backoff_max_seconds:
            # The API is out of reach: the pod can come only with the watch's reconnect, which
            # may be one longest backoff delay after the API is back.  Wait for that too.
            return True
        hold.expired = True
        self._holding -= 1
        events.stream_hold_expired(
            meta.namespace, meta.pod, meta.container, self._path_reason(meta), now - hold.since,
            self._holding,
        )
        return False

    @property
    def streams_held(self) -> int:
        """How many container files are held now (the ``streams_held`` gauge)."""
        return self._holding

    def _release(self, meta: PathMeta, now: float) -> None:
        """The held stream's pod is known now: forget the hold."""
        hold = self._holds.pop(meta)
        if not hold.expired:
            self._holding -= 1
        events.stream_released(
            meta.namespace, meta.pod, meta.container, now - hold.since, self._holding
        )

    def _sweep(self, now: float) -> None:
        """Forget streams not asked about for a while (the tracker closed their files)."""
        self._swept_at = now
        stale = [m for m, h in self._holds.items() if now - h.asked >= FORGET_HOLD_SECONDS]
        if not stale:
            return
        for meta in stale:
            if not self._holds.pop(meta).expired:
                self._holding -= 1
        events.streams_forgotten(self._holding)

    def policy(self, meta: PathMeta) -> FilePolicy:
        """The pod's annotations as a file policy; for an unknown pod, its namespace's."""
        entry = self._cache.lookup(meta) if self._cache is not None else None
        if entry is None:
            return self._namespace_policy(self._namespace(meta.namespace))
        if self._holds and meta in self._holds:
            # Known now: the stat pass asks first, and may close the file (excluded) before
            # the read loop would ask again.
            self._release(meta, time.monotonic())
        return self._policy(entry, meta.container)

    def enrich(self, meta: PathMeta, records: list[Record]) -> None:
        """Set ``kubernetes`` and ``podlog`` (metadata source, retention, payload parser).

        The metadata is resolved once per call: every record gets the same
        read-only ``kubernetes`` and ``podlog`` maps (see ``podlog.record.SharedMap``).
        """
        if not records:
            return
        if not meta.pod:
            # A file outside the Kubernetes layouts (podlog run on plain files):
            # nothing to look up; keep what the pipeline put there.
            events.records_enriched("path", len(records))
            path_podlog = self._podlog("path", None, self._config.default_parser)
            for record in records:
                podlog = record.get("podlog")
                if podlog is path_podlog:
                    continue
                if isinstance(podlog, dict) and podlog.keys() - path_podlog.keys():
                    record["podlog"] = SharedMap({**podlog, **path_podlog})  # keeps what the pipeline set
                else:
                    record["podlog"] = path_podlog
            return
        entry = self._cache.lookup(meta) if self._cache is not None else None
        if entry is None:
            kubernetes = self._from_path(meta)
            marker = "path"
            policy = DEFAULT_POLICY
            events.records_path_only(self._path_reason(meta), len(records))
            retention = self._namespace_retention(meta.namespace)
        else:
            kubernetes = self._rendered(entry, meta)
            marker = "api" if entry.state == "live" else "cache"
            policy = self._policy(entry, meta.container)
            retention = policy.retention
        events.records_enriched(marker, len(records))
        podlog = self._podlog(marker, retention, policy.parser or self._config.default_parser)
        first, last = records[0], records[-1]
        if (
            first.get("kubernetes") is not kubernetes or first.get("podlog") is not podlog
            or last.get("kubernetes") is not kubernetes or last.get("podlog") is not podlog
        ):
            # Records of one file share both maps, so they were all built with
            # these already (the common case) or are all set here.
            for record in records:
                record["kubernetes"] = kubernetes
                record["podlog"] = podlog

    def _podlog(self, marker: str, retention: str | None, parser: str) -> SharedMap:
        """The shared ``podlog`` map for a metadata marker, retention class and payload parser.

        The parser (and the payload limits, when not the defaults) travel with the
        records: the reader of their message parses the payloads, not the agent.
        """
        key = (marker, retention, parser)
        podlog = self._podlog_maps.get(key)
        if podlog is None:
            if len(self._podlog_maps) > 1024:
                self._podlog_maps.clear()
            fields = podlog_fields(marker, retention)
            extra: dict[str, Any] = {"parser": parser}
            if self._limits is not None:
                extra["payload_limits"] = self._limits
            podlog = self._podlog_maps[key] = SharedMap({**fields, **extra})
        return podlog

    # -- metadata ------------------------------------------------------------------------

    def _path_reason(self, meta: PathMeta) -> str:
        if self._cache is None:
            return "disabled"
        if meta.container_id and not meta.pod_uid and self._cache.has_name(meta.namespace, meta.pod):
            return "container_mismatch"  # only pods of that name whose container is another
        if not self._api.synced or not self._api.connected:
            return "api_unreachable"
        return "pod_unknown"

    def _namespace(self, name: str) -> NamespaceMeta | None:
        return self._cache.namespaces.get(name) if self._cache is not None else None

    def _namespace_retention(self, namespace: str) -> str | None:
        ns = self._namespace(namespace)
        return ns.retention if ns is not None else None

    def _from_path(self, meta: PathMeta) -> SharedMap:
        """The ``kubernetes`` map a file's path gives (shared until its namespace changes)."""
        ns = self._namespace(meta.namespace)
        known = self._path_maps.get(meta)
        if known is not None and known[0] is ns:
            return known[1]
        kubernetes: dict[str, Any] = {
            "namespace": meta.namespace,
            "pod": SharedMap(_known(name=meta.pod, uid=meta.pod_uid or None)),
            "container": SharedMap(_known(
                name=meta.container,
                id=meta.container_id or None,
                restart_count=meta.restart_count,
            )),
            "node": SharedMap(name=self._node),
        }
        if ns is not None and ns.labels:
            kubernetes["namespace_labels"] = ns.labels
        if len(self._path_maps) >= 4096:
            self._path_maps.clear()
        shared = SharedMap(kubernetes)
        self._path_maps[meta] = (ns, shared)
        return shared

    def _derived(self, entry: PodEntry) -> NamespaceMeta | None:
        """The pod's namespace; what was derived with an older one is dropped."""
        ns = self._namespace(entry.pod.namespace)
        if entry.derived_ns is not ns:
            entry.derived_ns = ns
            entry.rendered = None
            entry.policies = None
        return ns

    def _rendered(self, entry: PodEntry, meta: PathMeta) -> SharedMap:
        key = (meta.container, meta.container_id, meta.restart_count)
        ns = self._derived(entry)
        kubernetes = entry.rendered
        if kubernetes is None or entry.rendered_for != key:
            kubernetes = render_kubernetes(entry.pod, meta, self._node, ns, self._shared)
            entry.rendered = kubernetes
            entry.rendered_for = key
        return kubernetes

    # -- policy ----------------------------------------------------------------------------

    def _policy(self, entry: PodEntry, container: str) -> FilePolicy:
        ns = self._derived(entry)
        if entry.pod.controls is NO_CONTROLS:
            # Most pods: nothing to validate, nothing to keep per pod.
            return self._namespace_policy(ns)
        if entry.policies is None:
            entry.policies = {}
        policy = entry.policies.get(container)
        if policy is None:
            policy = self._derive_policy(entry.pod, container, ns)
            entry.policies[container] = policy
        return policy

    def _namespace_policy(self, ns: NamespaceMeta | None) -> FilePolicy:
        if ns is None or ns.retention is None:
            return DEFAULT_POLICY
        policy = self._retention_policies.get(ns.retention)
        if policy is None:
            if len(self._retention_policies) > 1024:
                self._retention_policies.clear()
            policy = self._retention_policies[ns.retention] = FilePolicy(retention=ns.retention)
        return policy

    def _derive_policy(self, pod: PodMeta, container: str, ns: NamespaceMeta | None) -> FilePolicy:
        controls = pod.controls
        exclude = (controls.exclude or "").strip().lower() in _TRUE
        if not exclude and controls.exclude_containers:
            names = {n.strip() for n in controls.exclude_containers.split(",")}
            exclude = container in names
        parser = None
        if controls.parser is not None:
            value = controls.parser.strip().lower()
            if value in PARSERS:
                parser = value
            else:
                events.annotation_invalid(ANNOTATION_PARSER, controls.parser, pod.namespace, pod.name)
        multiline = None
        if controls.multiline is not None:
            multiline = _multiline(controls.multiline)
            if multiline is None:
                events.annotation_invalid(
                    ANNOTATION_MULTILINE, controls.multiline, pod.namespace, pod.name
                )
        retention = controls.retention.strip() if controls.retention else None
        if not retention and ns is not None:
            retention = ns.retention
        return FilePolicy(
            exclude=exclude, parser=parser, multiline=multiline, retention=retention or None
        )


def _multiline(value: str) -> str | None:
    """A valid ``podlog.io/multiline`` value (a preset or a compiling regex), else None."""
    stripped = value.strip()
    if stripped.lower() in MULTILINE_PRESETS:
        return stripped.lower()
    if not stripped:
        return None
    try:
        re.compile(stripped)
    except re.error:
        return None
    return stripped


class SharedValues:
    """Small read-only sub-maps (node, workload) shared by every pod that has them."""

    __slots__ = ("_values",)

    _LIMIT = 65536

    def __init__(self) -> None:
        self._values: dict[tuple[str, ...], SharedMap] = {}

    def get(self, key: tuple[str, ...], build: SharedMap) -> SharedMap:
        """The shared map for ``key``; ``build`` becomes it the first time."""
        known = self._values.get(key)
        if known is not None:
            return known
        if len(self._values) >= self._LIMIT:
            self._values.clear()
        self._values[key] = build
        return build


def render_kubernetes(
    pod: PodMeta,
    meta: PathMeta,
    node_name: str,
    ns: NamespaceMeta | None,
    shared: SharedValues | None = None,
) -> SharedMap:
    """The record's ``kubernetes`` value for one file of ``pod`` (read-only, shared).

    The file's own container id and restart count (from its path) win over
    the pod status, which may already describe a newer container.
    """
    container = pod.container(meta.container)
    image: str | None = None
    container_id = meta.container_id or None
    restart_count = meta.restart_count
    if container is not None:
        image = container.image or None
        if container_id is None:
            if restart_count is None or restart_count == container.restart_count:
                container_id = container.container_id or None
            elif container.restart_count is not None and restart_count == (
                container.restart_count - 1
            ):
                container_id = container.last_container_id or None
        if restart_count is None:
            restart_count = container.restart_count
    kubernetes: dict[str, Any] = {
        "namespace": pod.namespace,
        "pod": SharedMap(name=pod.name, uid=pod.uid),
        "container": SharedMap(_known(
            name=meta.container, id=container_id, image=image, restart_count=restart_count
        )),
        "node": SharedMap(name=pod.node or node_name),
        "labels": pod.labels,
        "annotations": pod.annotations,
        "workload": SharedMap(kind=pod.workload_kind, name=pod.workload_name),
    }
    if shared is not None:
        node = kubernetes["node"]["name"]
        kubernetes["node"] = shared.get(("node", node), kubernetes["node"])
        kind, name = pod.workload_kind, pod.workload_name
        kubernetes["workload"] = shared.get(("workload", kind, name), kubernetes["workload"])
    if ns is not None and ns.labels:
        kubernetes["namespace_labels"] = ns.labels
    return SharedMap(kubernetes)


def _known(**fields: Any) -> dict[str, Any]:
    """``fields`` without the unknown (None) ones, like the path-only records."""
    return {key: value for key, value in fields.items() if value is not None}


def build_enricher(
    common: CommonConfig, config: KubernetesConfig, health: Health
) -> tuple[Enricher, list[Service]]:
    """The enricher for the agent and the services that keep it current.

    Disabled: a path-only enricher and no services.  Enabled: the API-backed
    enricher and the node-scoped watch, which never blocks the agent's start.

    Raises :class:`podlog.errors.ConfigError` when the API configuration cannot be used
    (no kubeconfig or service account, a missing token or CA file, a kubeconfig lightkube
    refuses): the process ends at start with that message, not with a watch that retries a
    configuration that cannot change.  An API server that does not answer is no such error.
    """
    node = common.resolved_node_name()
    if not config.enabled:
        return KubeEnricher(config, node), []
    from collector.kube.client import KubeClient, load_api_config
    from collector.kube.watch import PodWatcher

    client = KubeClient(config, load_api_config(config))

    cache = PodCache(grace_seconds=config.deleted_grace_seconds, max_pods=config.max_pods)
    api = ApiState(("pods", "namespaces") if config.watch_namespaces else ("pods",))
    enricher = KubeEnricher(config, node, cache, api)
    watcher = PodWatcher(
        config, cache, api, node_name=node, state_dir=Path(common.state_dir) / "kube", client=client
    )
    health.add("kubernetes", watcher.not_ready)
    return enricher, [watcher]
