"""The pod metadata cache: live pods, deleted pods in their grace period, restored pods.

One cache per agent, filled by the node-scoped watch (:mod:`collector.kube.watch`)
and read by the enricher on every batch, on the event loop, without I/O.

An entry is ``live`` while the API lists the pod; ``deleted`` after a DELETED
event or a relist without it; ``restored`` when it comes from the snapshot
of a previous run and the API has not confirmed it yet.  Deleted and restored
entries stay until ``grace_seconds`` have passed both since that change and
since the pipeline last asked for the pod, so a pod whose files are still
being read keeps its metadata however long the reading takes.  The cache never
holds more than ``max_pods`` entries: past that, the longest-unused
non-live entries go first (live pods are never evicted: a node runs a few
hundred at most).

Memory budget: :data:`BUDGET_BYTES_PER_POD` per pod with realistic labels and
annotations (8 labels, 7 annotations, 2 containers; the last-applied
configuration dropped), so the default ``max_pods`` of 10,000 stays under
30 MiB.  ``bench/kube_cache.py`` measures it (about 2.5 KiB per pod, each pod
enriched once) and
``tests/unit/kube/test_memory.py`` enforces it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from collector.enrichment import FilePolicy, PathMeta
from collector.kube.events import events
from collector.kube.metadata import NamespaceMeta, PodMeta
from podlog.record import SharedMap

__all__ = ["BUDGET_BYTES_PER_POD", "EntryState", "PodCache", "PodEntry"]

BUDGET_BYTES_PER_POD = 3072
"""The documented memory budget of one cached pod (see the module docs)."""

EntryState = Literal["live", "deleted", "restored"]


@dataclass(slots=True, eq=False)
class PodEntry:
    """A pod in the cache and what the enricher derived from it."""

    pod: PodMeta
    state: EntryState
    since: float
    """Monotonic time of the last state change."""
    last_used: float
    """Monotonic time the pipeline last asked for this pod."""
    derived_ns: NamespaceMeta | None = None
    """The namespace object ``policies`` and ``rendered`` were derived with."""
    policies: dict[str, FilePolicy] | None = None
    """Per container: the policy from the pod's podlog.io/* annotations (None: none set)."""
    rendered_for: tuple[str, str, int | None] | None = None
    """The (container, file container id, file restart) ``rendered`` was made for."""
    rendered: SharedMap | None = None
    """The record ``kubernetes`` value last made for this pod (one slot: a few
    containers alternating rebuild it per batch, which costs microseconds)."""


class PodCache:
    """Pods by uid and by namespace/name, plus namespaces by name."""

    def __init__(
        self,
        *,
        grace_seconds: float,
        max_pods: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace_seconds = grace_seconds
        self.max_pods = max_pods
        self._clock = clock
        self._by_uid: dict[str, PodEntry] = {}
        self._by_name: dict[tuple[str, str], list[str]] = {}
        self.namespaces: dict[str, NamespaceMeta] = {}
        self.changes = 0
        """Bumped on every change; the snapshot writer compares it."""

    def __len__(self) -> int:
        return len(self._by_uid)

    def entries(self) -> Iterable[PodEntry]:
        """Every entry (a view; do not change the cache while iterating)."""
        return self._by_uid.values()

    def get(self, uid: str) -> PodEntry | None:
        """The entry of pod ``uid``, without touching its last use."""
        return self._by_uid.get(uid)

    def counts(self) -> dict[str, int]:
        """Number of entries per state."""
        counts = {"live": 0, "deleted": 0, "restored": 0}
        for entry in self._by_uid.values():
            counts[entry.state] += 1
        return counts

    # -- reads (the enricher, per batch) --------------------------------------------

    def lookup(self, meta: PathMeta) -> PodEntry | None:
        """The entry for a file's pod, marking it used; None when unknown."""
        entry: PodEntry | None = None
        if meta.pod_uid:
            entry = self._by_uid.get(meta.pod_uid)
        else:
            uids = self._by_name.get((meta.namespace, meta.pod))
            if uids:
                entry = self._pick(uids, meta)
        if entry is not None:
            entry.last_used = self._clock()
        return entry

    def _pick(self, uids: list[str], meta: PathMeta) -> PodEntry | None:
        """The pod of that name the file belongs to.  With the container id its name carries,
        a pod whose container has another id is never taken: a StatefulSet pod recreated under
        the same name while the API was out of reach is not the old pod.  A pod whose container
        has no id yet (not started when last seen) may still be it."""
        candidates = [self._by_uid[uid] for uid in uids if uid in self._by_uid]
        if meta.container_id:
            unknown = []
            for entry in candidates:
                container = entry.pod.container(meta.container)
                if container is None or not (container.container_id or container.last_container_id):
                    unknown.append(entry)
                elif meta.container_id in (container.container_id, container.last_container_id):
                    return entry
            candidates = unknown
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        # A recreated pod of the same name (a StatefulSet): the live one, else the newest.
        return max(candidates, key=lambda e: (e.state == "live", e.since))

    def has_name(self, namespace: str, pod: str) -> bool:
        """True when some pod of that name is held (whichever uid)."""
        return bool(self._by_name.get((namespace, pod)))

    # -- writes (the watch) -----------------------------------------------------------

    def upsert(self, pod: PodMeta) -> None:
        """Add or replace a live pod (ADDED or MODIFIED)."""
        now = self._clock()
        old = self._by_uid.get(pod.uid)
        if old is not None and old.state == "live" and old.pod == pod:
            return
        last_used = old.last_used if old is not None else now
        since = old.since if old is not None and old.state == "live" else now
        self._by_uid[pod.uid] = PodEntry(pod, "live", since, last_used)
        if old is None:
            self._by_name.setdefault((pod.namespace, pod.name), []).append(pod.uid)
        self.changes += 1
        if old is None and len(self._by_uid) > self.max_pods:
            self._evict_for_capacity()

    def delete(self, uid: str) -> None:
        """Mark a pod deleted (its grace period starts now)."""
        entry = self._by_uid.get(uid)
        if entry is None or entry.state == "deleted":
            return
        entry.state = "deleted"
        entry.since = self._clock()
        self.changes += 1

    def replace(self, pods: Iterable[PodMeta]) -> None:
        """A full list: upsert every pod; the others are deleted now."""
        seen: set[str] = set()
        for pod in pods:
            seen.add(pod.uid)
            self.upsert(pod)
        for uid, entry in list(self._by_uid.items()):
            if uid not in seen and entry.state != "deleted":
                self.delete(uid)

    def restore(self, pods: Iterable[PodMeta], namespaces: Iterable[NamespaceMeta]) -> None:
        """Load a previous run's snapshot; entries already known are kept as they are."""
        now = self._clock()
        for pod in pods:
            if pod.uid in self._by_uid:
                continue
            self._by_uid[pod.uid] = PodEntry(pod, "restored", now, now)
            self._by_name.setdefault((pod.namespace, pod.name), []).append(pod.uid)
        for ns in namespaces:
            self.namespaces.setdefault(ns.name, ns)
        if len(self._by_uid) > self.max_pods:
            self._evict_for_capacity()

    def set_namespace(self, namespace: NamespaceMeta) -> None:
        """Add or replace a namespace."""
        if self.namespaces.get(namespace.name) != namespace:
            self.namespaces[namespace.name] = namespace
            self.changes += 1

    def delete_namespace(self, name: str) -> None:
        """Forget a namespace."""
        if self.namespaces.pop(name, None) is not None:
            self.changes += 1

    def replace_namespaces(self, namespaces: Iterable[NamespaceMeta]) -> None:
        """A full list of namespaces."""
        fresh = {ns.name: ns for ns in namespaces}
        if fresh != self.namespaces:
            self.namespaces = fresh
            self.changes += 1

    def expire(self) -> int:
        """Drop deleted and restored entries whose grace is over; return how many."""
        now = self._clock()
        expired = [
            uid
            for uid, entry in self._by_uid.items()
            if entry.state != "live"
            and now - max(entry.since, entry.last_used) >= self.grace_seconds
        ]
        for uid in expired:
            self._remove(uid)
        if expired:
            self.changes += 1
            events.pods_evicted("expired", len(expired))
        return len(expired)

    def _evict_for_capacity(self) -> None:
        excess = len(self._by_uid) - self.max_pods
        victims = sorted(
            (e for e in self._by_uid.values() if e.state != "live"),
            key=lambda e: max(e.since, e.last_used),
        )[:excess]
        for entry in victims:
            self._remove(entry.pod.uid)
        events.pods_evicted("capacity", len(victims))

    def _remove(self, uid: str) -> None:
        entry = self._by_uid.pop(uid)
        key = (entry.pod.namespace, entry.pod.name)
        uids = self._by_name.get(key)
        if uids is not None:
            if uid in uids:
                uids.remove(uid)
            if not uids:
                del self._by_name[key]
