"""What container log paths say, in both kubelet layouts and any parent directory."""

from __future__ import annotations

from collector.enrichment import PathMeta
from collector.paths import generation_order, parse_path

ID = "0123456789abcdef" * 4


def test_containers_symlink_name_gives_pod_namespace_container_and_id() -> None:
    """``<pod>_<ns>_<container>-<id>.log`` parses under /var/log/containers."""
    meta = parse_path(f"/var/log/containers/web-7d9f-abcde_shop_nginx-proxy-{ID}.log")
    assert meta == PathMeta(namespace="shop", pod="web-7d9f-abcde", container="nginx-proxy",
                            container_id=ID)


def test_pods_layout_gives_uid_and_restart_count() -> None:
    """``<ns>_<pod>_<uid>/<container>/<N>.log`` parses, restart count included."""
    uid = "5f0c1b1e-8a2b-4c1e-9d0f-1234567890ab"
    meta = parse_path(f"/var/log/pods/kube-system_coredns-abc.x_{uid}/coredns/3.log")
    assert meta == PathMeta(namespace="kube-system", pod="coredns-abc.x", container="coredns",
                            pod_uid=uid, restart_count=3)


def test_any_parent_directory_and_rotated_names_parse() -> None:
    """A tmp directory works, and kubelet's rotated ``0.log.<timestamp>`` keeps its meta."""
    assert parse_path(f"/tmp/x/containers/a_b_c-{ID}.log") == PathMeta(
        namespace="b", pod="a", container="c", container_id=ID)
    meta = parse_path("/tmp/p/pods/ns_pod_uid-1/app/0.log.20261127-001122")
    assert meta is not None and (meta.namespace, meta.pod, meta.container) == ("ns", "pod", "app")
    # Any rotated name beside it is the same container's: logrotate's copies, compressed or not.
    for name in ("1.log.20261127-001122.gz", "1.log.1", "1.log.20261127-000004-copy", "1.log.x"):
        meta = parse_path(f"/tmp/p/pods/ns_pod_uid-1/app/{name}")
        assert meta is not None and (meta.container, meta.pod_uid, meta.restart_count) == ("app", "uid-1", 1), name


def test_unrelated_paths_do_not_parse() -> None:
    """Files outside both layouts give None (read with empty metadata)."""
    assert parse_path("/var/log/syslog") is None
    assert parse_path(f"/var/log/containers/no-id_{ID}.log") is None
    assert parse_path("/var/lib/docker/containers/abc/abc-json.log") is None


def test_generation_order_puts_a_containers_files_oldest_first() -> None:
    """kubelet timestamps in order, logrotate's and Docker's numbers higher-is-older, a .gz where its
    plain name would be, the live file last."""
    kubelet = ["0.log", "0.log.20261204-213512.gz", "0.log.20261204-213515", "0.log.20261204-213513.gz"]
    assert sorted(kubelet, key=generation_order) == [
        "0.log.20261204-213512.gz", "0.log.20261204-213513.gz", "0.log.20261204-213515", "0.log",
    ]
    logrotate = ["0.log", "0.log.1", "0.log.3.gz", "0.log.2.gz"]
    assert sorted(logrotate, key=generation_order) == ["0.log.3.gz", "0.log.2.gz", "0.log.1", "0.log"]
    docker = ["c-json.log", "c-json.log.1", "c-json.log.3.gz", "c-json.log.2.gz"]
    assert sorted(docker, key=generation_order) == ["c-json.log.3.gz", "c-json.log.2.gz", "c-json.log.1", "c-json.log"]
    assert sorted(["1.log", "0.log.1", "0.log"], key=generation_order) == ["0.log.1", "0.log", "1.log"]
