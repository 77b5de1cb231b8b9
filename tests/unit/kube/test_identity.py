"""A file's pod identity from its names on disk, and the cache lookup it leads to.

kubelet links ``/var/log/containers/<pod>_<ns>_<container>-<id>.log`` to
``/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log``: the uid comes
from the target, the container id from the link's name, and a file never
borrows the metadata of another pod, least of all one recreated under its name.
"""

from __future__ import annotations

from pathlib import Path

from collector.kube.cache import PodCache
from collector.kube.metadata import ContainerMeta, PodMeta
from collector.paths import parse_path, resolve_meta

OLD_UID = "11111111-1111-4111-8111-111111111111"
NEW_UID = "22222222-2222-4222-8222-222222222222"
OLD_ID = "a" * 64
NEW_ID = "b" * 64


def kubelet_file(root: Path, pod: str, uid: str, container_id: str, namespace: str = "data") -> Path:
    """``0.log`` under var/log/pods and kubelet's link to it; returns the link."""
    target = root / "pods" / f"{namespace}_{pod}_{uid}" / "app" / "0.log"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"")
    link = root / "containers" / f"{pod}_{namespace}_app-{container_id}.log"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def db0(uid: str, container_id: str) -> PodMeta:
    return PodMeta(
        uid=uid, namespace="data", name="db-0",
        containers=(ContainerMeta("app", image="db:1", container_id=container_id),),
    )


def test_uid_comes_from_the_pods_target_and_the_id_from_the_link_name(tmp_path: Path) -> None:
    """Found by its /var/log/containers link, a file carries both: the pod's uid and restart
    count from the target, the container id from the name."""
    link = kubelet_file(tmp_path, "db-0", NEW_UID, NEW_ID)
    meta = resolve_meta(str(link))
    assert meta is not None
    assert (meta.namespace, meta.pod, meta.container) == ("data", "db-0", "app")
    assert (meta.pod_uid, meta.container_id, meta.restart_count) == (NEW_UID, NEW_ID, 0)


def test_recreated_pod_never_resolves_to_the_old_pod_of_its_name(tmp_path: Path) -> None:
    """db-0 deleted and recreated (new uid, new container id) while the cache still holds
    only the old one: the new file finds no pod, through its link or with the link broken."""
    cache = PodCache(grace_seconds=300, max_pods=10)
    cache.restore([db0(OLD_UID, OLD_ID)], [])
    link = kubelet_file(tmp_path, "db-0", NEW_UID, NEW_ID)
    meta = resolve_meta(str(link))
    assert meta is not None
    assert cache.lookup(meta) is None
    (tmp_path / "pods" / f"data_db-0_{NEW_UID}" / "app" / "0.log").unlink()
    broken = resolve_meta(str(link))  # the target is gone: its name still says the uid
    assert broken == meta
    named = parse_path(str(link))  # the link's name alone: checked by its container id
    assert named is not None and named.pod_uid == ""
    assert cache.lookup(named) is None
    cache.upsert(db0(NEW_UID, NEW_ID))
    found = cache.lookup(named)
    assert found is not None and found.pod.uid == NEW_UID


def test_old_pods_file_keeps_the_old_pod_when_the_new_one_is_listed(tmp_path: Path) -> None:
    """The old db-0's file, its directory already gone, still matches the old pod by its
    container id while the new db-0 is live."""
    cache = PodCache(grace_seconds=300, max_pods=10)
    cache.upsert(db0(OLD_UID, OLD_ID))
    cache.delete(OLD_UID)
    cache.upsert(db0(NEW_UID, NEW_ID))
    link = kubelet_file(tmp_path, "db-0", OLD_UID, OLD_ID)
    (tmp_path / "pods" / f"data_db-0_{OLD_UID}" / "app" / "0.log").unlink()
    meta = resolve_meta(str(link))
    assert meta is not None
    found = cache.lookup(meta)
    assert found is not None and found.pod.uid == OLD_UID


def test_a_link_naming_another_pod_lends_no_container_id(tmp_path: Path) -> None:
    """A link whose name is of another pod than its /var/log/pods target: the target's uid
    stands, and the other pod's container id is not taken."""
    target = tmp_path / "pods" / f"data_db-1_{NEW_UID}" / "app" / "0.log"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    link = tmp_path / "containers" / f"db-0_data_app-{OLD_ID}.log"
    link.parent.mkdir()
    link.symlink_to(target)
    meta = resolve_meta(str(link))
    assert meta is not None
    assert (meta.pod, meta.pod_uid, meta.container_id) == ("db-1", NEW_UID, "")
