"""What a container log file's path says: namespace, pod, container, ids.

Two layouts, matched on the last path components so any parent directory
works (a test's tmp dir as well as ``/var/log``):

* ``.../containers/<pod>_<namespace>_<container>-<64 hex id>.log``
* ``.../pods/<namespace>_<pod>_<uid>/<container>/<restart>.log``
  (also ``<restart>.log.<timestamp>`` rotated names)
"""

from __future__ import annotations

import re

from collector.enrichment import PathMeta
from podlog.record import SharedMap

__all__ = ["EMPTY_META", "parse_path"]

EMPTY_META = PathMeta(namespace="", pod="", container="")
"""Metadata of a file whose path names no container."""

# DNS-1123 names: pods and namespaces never contain "_", so "_" splits safely.
_CONTAINERS = re.compile(
    r"(?:^|/)(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<ns>[a-z0-9][a-z0-9-]*)_"
    r"(?P<container>[a-z0-9][a-z0-9-]*)-(?P<id>[0-9a-f]{64})\.log$"
)
_PODS = re.compile(
    r"(?:^|/)(?P<ns>[a-z0-9][a-z0-9-]*)_(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<uid>[^/_]+)/"
    r"(?P<container>[a-z0-9][a-z0-9-]*)/(?P<restart>\d+)\.log(?:\.[0-9TZ:.-]+)?$"
)


def parse_path(path: str) -> PathMeta | None:
    """The metadata in ``path``, or None when it follows neither layout."""
    match = _CONTAINERS.search(path)
    if match is not None:
        return PathMeta(
            namespace=match["ns"],
            pod=match["pod"],
            container=match["container"],
            container_id=match["id"],
        )
    match = _PODS.search(path)
    if match is not None:
        return PathMeta(
            namespace=match["ns"],
            pod=match["pod"],
            container=match["container"],
            pod_uid=match["uid"],
            restart_count=int(match["restart"]),
        )
    return None


def kubernetes_fields(meta: PathMeta, node: str) -> SharedMap:
    """The record's ``kubernetes`` map as far as the path tells it (read-only, shared)."""
    pod: dict[str, object] = {"name": meta.pod}
    if meta.pod_uid:
        pod["uid"] = meta.pod_uid
    container: dict[str, object] = {"name": meta.container}
    if meta.container_id:
        container["id"] = meta.container_id
    if meta.restart_count is not None:
        container["restart_count"] = meta.restart_count
    return SharedMap(
        namespace=meta.namespace,
        pod=SharedMap(pod),
        container=SharedMap(container),
        node=SharedMap(name=node),
    )
