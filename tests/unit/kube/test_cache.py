"""The pod cache: lookups, deletion grace, last use, relists, restore, capacity."""

from __future__ import annotations

from collector.enrichment import PathMeta
from collector.kube.cache import PodCache
from collector.kube.metadata import ContainerMeta, PodMeta


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(uid: str, name: str = "p", namespace: str = "ns", cid: str = "") -> PodMeta:
    return PodMeta(
        uid=uid,
        namespace=namespace,
        name=name,
        containers=(ContainerMeta("app", container_id=cid, restart_count=0),),
    )


def test_lookup_by_uid_and_by_name() -> None:
    """/var/log/pods paths find pods by uid, /var/log/containers paths by name."""
    cache = PodCache(grace_seconds=10, max_pods=10)
    cache.upsert(pod("u1", "web"))
    assert cache.lookup(PathMeta("ns", "web", "app", pod_uid="u1")) is not None
    assert cache.lookup(PathMeta("ns", "web", "app")) is not None
    assert cache.lookup(PathMeta("ns", "web", "app", pod_uid="other")) is None
    assert cache.lookup(PathMeta("ns", "db", "app")) is None


def test_recreated_pod_of_same_name_is_told_apart_by_container_id() -> None:
    """Two pods named alike (a StatefulSet restart): the file's container id picks one."""
    cache = PodCache(grace_seconds=10, max_pods=10)
    cache.upsert(pod("old", "db-0", cid="c-old"))
    cache.delete("old")
    cache.upsert(pod("new", "db-0", cid="c-new"))
    found = cache.lookup(PathMeta("ns", "db-0", "app", container_id="c-old"))
    assert found is not None and found.pod.uid == "old"
    found = cache.lookup(PathMeta("ns", "db-0", "app"))
    assert found is not None and found.pod.uid == "new"


def test_a_pod_of_the_same_name_with_another_container_id_is_never_borrowed() -> None:
    """Only the old pod is known (the new one was created while the API was out of reach): a file
    of the new container is no file of it.  A pod whose container has no id yet may still be it."""
    cache = PodCache(grace_seconds=10, max_pods=10)
    cache.upsert(pod("old", "db-0", cid="c-old"))
    assert cache.lookup(PathMeta("ns", "db-0", "app", container_id="c-new")) is None
    assert cache.has_name("ns", "db-0")
    cache.upsert(pod("pending", "web-0"))
    found = cache.lookup(PathMeta("ns", "web-0", "app", container_id="c-new"))
    assert found is not None and found.pod.uid == "pending"


def test_deleted_pod_is_kept_for_the_grace_period() -> None:
    """A deleted pod stays (state deleted) until grace passes, then expires."""
    clock = Clock()
    cache = PodCache(grace_seconds=300, max_pods=10, clock=clock)
    cache.upsert(pod("u1"))
    cache.delete("u1")
    entry = cache.get("u1")
    assert entry is not None and entry.state == "deleted"
    clock.now += 299
    assert cache.expire() == 0
    clock.now += 2
    assert cache.expire() == 1
    assert cache.get("u1") is None
    assert cache.lookup(PathMeta("ns", "p", "app")) is None


def test_reading_a_deleted_pods_files_extends_its_grace() -> None:
    """While its files are still read, a deleted pod's metadata does not expire."""
    clock = Clock()
    cache = PodCache(grace_seconds=300, max_pods=10, clock=clock)
    cache.upsert(pod("u1"))
    cache.delete("u1")
    for _ in range(5):
        clock.now += 200
        assert cache.lookup(PathMeta("ns", "p", "app", pod_uid="u1")) is not None
        assert cache.expire() == 0
    clock.now += 301
    assert cache.expire() == 1


def test_relist_deletes_pods_missing_from_the_list() -> None:
    """A full list after a 410 marks pods that vanished meanwhile as deleted."""
    cache = PodCache(grace_seconds=10, max_pods=10)
    cache.upsert(pod("u1", "a"))
    cache.upsert(pod("u2", "b"))
    cache.replace([pod("u2", "b"), pod("u3", "c")])
    states = {e.pod.uid: e.state for e in cache.entries()}
    assert states == {"u1": "deleted", "u2": "live", "u3": "live"}


def test_restored_pods_become_live_or_deleted_at_the_first_list() -> None:
    """Snapshot entries are 'restored' until the API confirms or drops them."""
    cache = PodCache(grace_seconds=10, max_pods=10)
    cache.restore([pod("u1", "a"), pod("u2", "b")], [])
    assert {e.state for e in cache.entries()} == {"restored"}
    cache.replace([pod("u1", "a")])
    states = {e.pod.uid: e.state for e in cache.entries()}
    assert states == {"u1": "live", "u2": "deleted"}


def test_capacity_evicts_longest_unused_deleted_pods_never_live_ones() -> None:
    """Past max_pods the oldest non-live entries go; live pods stay."""
    clock = Clock()
    cache = PodCache(grace_seconds=1e9, max_pods=3, clock=clock)
    for i in range(3):
        cache.upsert(pod(f"d{i}", f"d{i}"))
        cache.delete(f"d{i}")
        clock.now += 1
    cache.lookup(PathMeta("ns", "d0", "app", pod_uid="d0"))  # d0 used recently
    cache.upsert(pod("live", "live"))
    assert cache.get("d1") is None
    assert cache.get("d0") is not None
    assert cache.get("live") is not None
    assert len(cache) == 3


def test_unchanged_upsert_is_not_a_change() -> None:
    """A MODIFIED event with equal metadata does not dirty the snapshot."""
    cache = PodCache(grace_seconds=10, max_pods=10)
    cache.upsert(pod("u1"))
    before = cache.changes
    cache.upsert(pod("u1"))
    assert cache.changes == before
