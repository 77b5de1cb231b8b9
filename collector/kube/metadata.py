"""Pod metadata as the cache holds it: compact, filtered, immutable values.

:func:`pod_from_api` turns a Pod object from the API (a decoded JSON dict) into
a :class:`PodMeta`: labels, annotations after the allow/deny filter, node,
containers with image, id and restart count, the owning workload, and the
``podlog.io/*`` controls read *before* filtering (so a deny list can hide them
from records without switching them off).  Strings are interned: label keys
and values repeat across pods, so 10,000 pods share most of them.

The owning workload comes from the pod's own ``ownerReferences``, without
watching ReplicaSets or Jobs: a ReplicaSet named ``<name>-<pod-template-hash>``
belongs to Deployment ``<name>``, and a Job named ``<name>-<scheduled minute>``
(8 or more digits) to CronJob ``<name>``.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podlog.record import SharedMap

__all__ = [
    "ANNOTATION_EXCLUDE",
    "ANNOTATION_EXCLUDE_CONTAINERS",
    "ANNOTATION_MULTILINE",
    "ANNOTATION_PARSER",
    "ANNOTATION_RETENTION",
    "NO_CONTROLS",
    "ContainerMeta",
    "KeyFilter",
    "NamespaceMeta",
    "PodControls",
    "PodMeta",
    "namespace_from_api",
    "pod_from_api",
    "pod_from_snapshot",
    "pod_to_snapshot",
    "strip_runtime",
    "workload_of",
]

ANNOTATION_EXCLUDE = "podlog.io/exclude"
ANNOTATION_EXCLUDE_CONTAINERS = "podlog.io/exclude-containers"
ANNOTATION_PARSER = "podlog.io/parser"
ANNOTATION_MULTILINE = "podlog.io/multiline"
ANNOTATION_RETENTION = "podlog.io/retention"

_CRONJOB_JOB = re.compile(r"^(?P<name>.+)-\d{8,}$")
_intern = sys.intern


class KeyFilter:
    """Allow/deny glob patterns over label or annotation keys, with a memo per key."""

    __slots__ = ("_allow", "_deny", "_memo")

    def __init__(self, allow: Iterable[str], deny: Iterable[str]) -> None:
        self._allow = tuple(allow)
        self._deny = tuple(deny)
        self._memo: dict[str, bool] = {}

    def allows(self, key: str) -> bool:
        """True when ``key`` matches an allow pattern and no deny pattern."""
        known = self._memo.get(key)
        if known is not None:
            return known
        allowed = any(fnmatch.fnmatchcase(key, p) for p in self._allow) and not any(
            fnmatch.fnmatchcase(key, p) for p in self._deny
        )
        if len(self._memo) < 65536:  # keys are few in practice; bound the memo anyway
            self._memo[key] = allowed
        return allowed


@dataclass(frozen=True, slots=True)
class PodControls:
    """The ``podlog.io/*`` annotations of a pod, raw (validated where used)."""

    exclude: str | None = None
    exclude_containers: str | None = None
    parser: str | None = None
    multiline: str | None = None
    retention: str | None = None


NO_CONTROLS = PodControls()


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    """One container of a pod, from its spec and status."""

    name: str
    image: str = ""
    container_id: str = ""
    """The current container's id, without the ``containerd://`` scheme."""
    restart_count: int | None = None
    last_container_id: str = ""
    """The previous container's id (``lastState.terminated``), for its file's last lines."""


@dataclass(frozen=True, slots=True)
class PodMeta:
    """Everything podlog keeps about one pod."""

    uid: str
    namespace: str
    name: str
    node: str = ""
    labels: Mapping[str, str] = field(default_factory=SharedMap)
    annotations: Mapping[str, str] = field(default_factory=SharedMap)
    """Already filtered by the allow/deny lists and cut to the value size limit."""
    workload_kind: str = ""
    workload_name: str = ""
    containers: tuple[ContainerMeta, ...] = ()
    controls: PodControls = NO_CONTROLS
    resource_version: str = ""

    def container(self, name: str) -> ContainerMeta | None:
        """The container called ``name``, or None."""
        for container in self.containers:
            if container.name == name:
                return container
        return None


@dataclass(frozen=True, slots=True)
class NamespaceMeta:
    """What podlog keeps about a namespace (from the optional namespace watch)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=SharedMap)
    retention: str | None = None


def strip_runtime(container_id: str) -> str:
    """``containerd://abc`` to ``abc``; ids without a scheme stay as they are."""
    _, sep, rest = container_id.partition("://")
    return rest if sep else container_id


def workload_of(
    owners: Iterable[Mapping[str, Any]], labels: Mapping[str, str], pod_name: str
) -> tuple[str, str]:
    """``(kind, name)`` of the workload that owns a pod (the pod itself when none)."""
    owner: Mapping[str, Any] | None = None
    for ref in owners:
        if not isinstance(ref, Mapping):
            continue
        if ref.get("controller") or owner is None:
            owner = ref
            if ref.get("controller"):
                break
    if owner is None:
        return "Pod", pod_name
    kind = str(owner.get("kind") or "")
    name = str(owner.get("name") or "")
    if kind == "ReplicaSet":
        template_hash = labels.get("pod-template-hash", "")
        if template_hash and name.endswith("-" + template_hash):
            return "Deployment", name[: -len(template_hash) - 1]
        return kind, name
    if kind == "Job":
        match = _CRONJOB_JOB.match(name)
        if match is not None:
            return "CronJob", match.group("name")
        return kind, name
    return kind, name


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _filtered(
    items: Mapping[str, str], keys: KeyFilter, max_value_bytes: int | None
) -> SharedMap:
    """The allowed keys; read-only, since every record of the pod shares the map."""
    out: dict[str, str] = {}
    for key, value in items.items():
        if not keys.allows(key):
            continue
        if max_value_bytes is not None and len(value) > max_value_bytes // 4:
            encoded = value.encode()
            if len(encoded) > max_value_bytes:
                value = encoded[:max_value_bytes].decode(errors="ignore")
        out[_intern(key)] = _intern(value) if len(value) <= 64 else value
    return SharedMap(out)


def _containers(spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[ContainerMeta, ...]:
    images: dict[str, str] = {}
    for section in ("initContainers", "containers", "ephemeralContainers"):
        for item in _list(spec.get(section)):
            if isinstance(item, Mapping) and item.get("name"):
                images[str(item["name"])] = str(item.get("image") or "")
    statuses: dict[str, Mapping[str, Any]] = {}
    for section in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for item in _list(status.get(section)):
            if isinstance(item, Mapping) and item.get("name"):
                statuses[str(item["name"])] = item
    out: list[ContainerMeta] = []
    for name in {**images, **statuses}:
        st = statuses.get(name) or {}
        terminated = _mapping(_mapping(st.get("lastState")).get("terminated"))
        last = terminated.get("containerID") or ""
        restarts = st.get("restartCount")
        out.append(
            ContainerMeta(
                name=_intern(name),
                image=_intern(images.get(name) or str(st.get("image") or "")),
                container_id=strip_runtime(str(st.get("containerID") or "")),
                restart_count=(
                    restarts if isinstance(restarts, int) and not isinstance(restarts, bool) else None
                ),
                last_container_id=strip_runtime(str(last)),
            )
        )
    return tuple(out)


def pod_from_api(
    obj: Mapping[str, Any],
    *,
    annotations: KeyFilter,
    labels: KeyFilter,
    max_annotation_value_bytes: int,
) -> PodMeta | None:
    """The cache's view of a Pod object; None when it lacks a uid, namespace or name."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    uid, namespace, name = meta.get("uid"), meta.get("namespace"), meta.get("name")
    if not (isinstance(uid, str) and isinstance(namespace, str) and isinstance(name, str)):
        return None
    if not (uid and namespace and name):
        return None
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping) and isinstance(status, Mapping)
    raw_labels = _strings(meta.get("labels"))
    raw_annotations = _strings(meta.get("annotations"))
    kind, workload = workload_of(_list(meta.get("ownerReferences")), raw_labels, name)
    controls = PodControls(
        exclude=raw_annotations.get(ANNOTATION_EXCLUDE),
        exclude_containers=raw_annotations.get(ANNOTATION_EXCLUDE_CONTAINERS),
        parser=raw_annotations.get(ANNOTATION_PARSER),
        multiline=raw_annotations.get(ANNOTATION_MULTILINE),
        retention=raw_annotations.get(ANNOTATION_RETENTION),
    )
    return PodMeta(
        uid=uid,
        namespace=_intern(namespace),
        name=name,
        node=_intern(str(spec.get("nodeName") or "")),
        labels=_filtered(raw_labels, labels, None),
        annotations=_filtered(raw_annotations, annotations, max_annotation_value_bytes),
        workload_kind=_intern(kind),
        workload_name=_intern(workload),
        containers=_containers(spec, status),
        controls=NO_CONTROLS if controls == NO_CONTROLS else controls,
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def namespace_from_api(obj: Mapping[str, Any], labels: KeyFilter) -> NamespaceMeta | None:
    """The cache's view of a Namespace object; None without a name."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        return None
    annotations = _strings(meta.get("annotations"))
    return NamespaceMeta(
        name=_intern(meta["name"]),
        labels=_filtered(_strings(meta.get("labels")), labels, None),
        retention=annotations.get(ANNOTATION_RETENTION),
    )


def pod_to_snapshot(pod: PodMeta) -> dict[str, Any]:
    """A JSON-ready dict of ``pod`` for the on-disk snapshot."""
    controls = {k: v for k, v in _controls_items(pod.controls) if v is not None}
    return {
        "uid": pod.uid,
        "namespace": pod.namespace,
        "name": pod.name,
        "node": pod.node,
        "labels": dict(pod.labels),
        "annotations": dict(pod.annotations),
        "workload": [pod.workload_kind, pod.workload_name],
        "containers": [
            [c.name, c.image, c.container_id, c.restart_count, c.last_container_id]
            for c in pod.containers
        ],
        "controls": controls,
        "resource_version": pod.resource_version,
    }


def _controls_items(controls: PodControls) -> list[tuple[str, str | None]]:
    return [
        ("exclude", controls.exclude),
        ("exclude_containers", controls.exclude_containers),
        ("parser", controls.parser),
        ("multiline", controls.multiline),
        ("retention", controls.retention),
    ]


def pod_from_snapshot(doc: Mapping[str, Any]) -> PodMeta:
    """The inverse of :func:`pod_to_snapshot`; raises KeyError/TypeError/ValueError on bad data."""
    kind, workload = doc["workload"]
    controls = PodControls(**{str(k): str(v) for k, v in dict(doc.get("controls") or {}).items()})
    return PodMeta(
        uid=str(doc["uid"]),
        namespace=_intern(str(doc["namespace"])),
        name=str(doc["name"]),
        node=_intern(str(doc.get("node") or "")),
        labels=SharedMap({_intern(str(k)): _intern(str(v)) for k, v in dict(doc["labels"]).items()}),
        annotations=SharedMap({str(k): str(v) for k, v in dict(doc["annotations"]).items()}),
        workload_kind=_intern(str(kind)),
        workload_name=_intern(str(workload)),
        containers=tuple(
            ContainerMeta(
                name=_intern(str(name)),
                image=_intern(str(image)),
                container_id=str(cid),
                restart_count=restarts if isinstance(restarts, int) else None,
                last_container_id=str(last),
            )
            for name, image, cid, restarts, last in doc["containers"]
        ),
        controls=NO_CONTROLS if controls == NO_CONTROLS else controls,
        resource_version=str(doc.get("resource_version") or ""),
    )
