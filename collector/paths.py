"""What a container log file's path says: namespace, pod, container, ids.

Two layouts, matched on the last path components so any parent directory
works (a test's tmp dir as well as ``/var/log``):

* ``.../containers/<pod>_<namespace>_<container>-<64 hex id>.log``
* ``.../pods/<namespace>_<pod>_<uid>/<container>/<restart>.log``
  (also ``<restart>.log.<timestamp>`` rotated names)

A discovered path is usually a chain of symlinks: kubelet links
``/var/log/containers/x.log`` to ``/var/log/pods/.../0.log``, which with
Docker links on to ``/var/lib/docker/containers/<id>/<id>-json.log``.
:func:`resolve_meta` parses every hop and merges what they say, so a file
gets the same metadata, and the same :func:`stream_key`, whichever of its
names discovery found it by.  ``/var/log/pods`` is the ground truth.
"""

from __future__ import annotations

import os
import re

from collector.enrichment import PathMeta
from podlog.record import SharedMap

__all__ = [
    "EMPTY_META",
    "MAX_SYMLINK_HOPS",
    "generation_order",
    "kubernetes_fields",
    "parse_path",
    "pods_root",
    "resolve_meta",
    "stream_key",
]

EMPTY_META = PathMeta(namespace="", pod="", container="")
"""Metadata of a file whose path names no container."""

MAX_SYMLINK_HOPS = 40
"""Symlinks followed before a chain is taken for a loop (the kernel's own limit)."""

# DNS-1123 names: pods and namespaces never contain "_", so "_" splits safely.
_CONTAINERS = re.compile(
    r"(?:^|/)(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<ns>[a-z0-9][a-z0-9-]*)_"
    r"(?P<container>[a-z0-9][a-z0-9-]*)-(?P<id>[0-9a-f]{64})\.log$"
)
_PODS = re.compile(
    r"(?:^|/)(?P<ns>[a-z0-9][a-z0-9-]*)_(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<uid>[^/_]+)/"
    r"(?P<container>[a-z0-9][a-z0-9-]*)/(?P<restart>\d+)\.log(?:\.[^/]*)?$"
)


def parse_path(path: str) -> PathMeta | None:
    """The metadata in ``path`` alone, or None when it follows neither layout."""
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


def merge_meta(metas: list[PathMeta]) -> PathMeta | None:
    """One :class:`PathMeta` from the metadata of several names of one file.

    A ``/var/log/pods`` name is the ground truth for namespace, pod, uid,
    container and restart count; a ``/var/log/containers`` name adds the
    container id, but only when it names the same namespace, pod and container:
    a link that names another pod lends nothing (its id would be another
    container's, and with it another pod's metadata).
    """
    if not metas:
        return None
    pods = next((m for m in metas if m.pod_uid), None)
    base = pods or metas[0]
    named = next(
        (
            m for m in metas
            if m.container_id and (m.namespace, m.pod, m.container)
            == (base.namespace, base.pod, base.container)
        ),
        None,
    )
    if named is None or named is base:
        return base
    return PathMeta(
        namespace=base.namespace, pod=base.pod, container=base.container, pod_uid=base.pod_uid,
        container_id=named.container_id, restart_count=base.restart_count,
    )


def resolve_meta(path: str) -> PathMeta | None:
    """The metadata of every name along ``path``'s symlink chain, merged.

    Raises ``OSError`` (``ELOOP``) for a chain longer than
    :data:`MAX_SYMLINK_HOPS`; a broken link just ends the chain.
    """
    metas: list[PathMeta] = []
    current = path
    for _ in range(MAX_SYMLINK_HOPS):
        meta = parse_path(current)
        if meta is not None:
            metas.append(meta)
        try:
            target = os.readlink(current)  # noqa: PTH115 - str paths throughout
        except OSError:
            return merge_meta(metas)  # not a link (or gone): the chain ends here
        current = os.path.join(os.path.dirname(current), target)  # noqa: PTH118, PTH120
    raise OSError(40, "Too many levels of symbolic links", path)


def pods_root(path: str) -> str | None:
    """The ``/var/log/pods`` directory along ``path``'s symlink chain, or None."""
    current = path
    for _ in range(MAX_SYMLINK_HOPS):
        match = _PODS.search(current)
        if match is not None:
            pod_dir = current[: match.start("container") - 1]
            return os.path.dirname(pod_dir)  # noqa: PTH120 - str paths throughout
        try:
            target = os.readlink(current)  # noqa: PTH115 - str paths throughout
        except OSError:
            return None
        current = os.path.join(os.path.dirname(current), target)  # noqa: PTH118, PTH120
    return None


def generation_order(name: str) -> tuple[int, int, str]:
    """Sort key of a container's log files, oldest first.

    ``<restart>.log.<timestamp>`` (kubelet's rotations) before ``<restart>.log``,
    restarts in order; Docker's ``-json.log.<n>`` and logrotate's ``<restart>.log.<n>``:
    higher ``n`` is older.  A ``.gz`` sorts where its plain name would.
    """
    name = name.removesuffix(".gz")  # a compressed generation sorts where it was plain
    match = re.match(r"(\d+)\.log(?:\.(.+))?$", name)
    restart = int(match.group(1)) if match else 0
    suffix = match.group(2) if match else None
    if suffix is not None and suffix.isdigit() and len(suffix) <= 4:
        return restart, 0, f"{9999 - int(suffix):04d}"  # logrotate's .1, .2: higher is older
    if suffix is None:
        docker = re.search(r"\.log\.(\d{1,4})$", name)
        if docker is None:
            return restart, 1, name
        return restart, 0, f"{9999 - int(docker.group(1)):04d}"
    return restart, 0, suffix


def stream_key(meta: PathMeta) -> str:
    """The key of a container's stream: ``<pod uid>/<container>``, else ``<ns>/<pod>/<container>``.

    The same for every file of a container (rotations, restarts) and for
    every name it was found by; :func:`podlog.record.stream_key` derives the
    Kafka key the same way from the record.
    """
    if meta.pod_uid:
        return f"{meta.pod_uid}/{meta.container}"
    return f"{meta.namespace}/{meta.pod}/{meta.container}"


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
