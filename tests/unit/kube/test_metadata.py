"""Pod objects to cache entries: workload, filtering, controls, snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.kube.cache import PodCache
from collector.kube.config import LAST_APPLIED, KubernetesConfig
from collector.kube.metadata import (
    KeyFilter,
    namespace_from_api,
    pod_from_api,
    pod_from_snapshot,
    pod_to_snapshot,
    strip_runtime,
    workload_of,
)
from collector.kube.snapshot import read_snapshot, snapshot_bytes, write_snapshot
from podlog.errors import ConfigError
from tests.fixtures.kube_api import make_namespace, make_pod

DEFAULTS = KubernetesConfig()
ANNOTATIONS = KeyFilter(DEFAULTS.annotations_allow, DEFAULTS.annotations_deny)
LABELS = KeyFilter(["*"], [])


def _pod(obj: dict[str, object], **kwargs: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {
        "annotations": ANNOTATIONS,
        "labels": LABELS,
        "max_annotation_value_bytes": 4096,
    }
    options.update(kwargs)
    return pod_from_api(obj, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("owner", "labels", "expected"),
    [
        (("ReplicaSet", "web-5d8f7c9b6"), {"pod-template-hash": "5d8f7c9b6"}, ("Deployment", "web")),
        (("ReplicaSet", "bare-rs"), {}, ("ReplicaSet", "bare-rs")),
        (("Job", "backup-28912345"), {}, ("CronJob", "backup")),
        (("Job", "migrate-once"), {}, ("Job", "migrate-once")),
        (("StatefulSet", "db"), {}, ("StatefulSet", "db")),
        (("DaemonSet", "fluent"), {}, ("DaemonSet", "fluent")),
        (None, {}, ("Pod", "solo")),
    ],
)
def test_workload_is_derived_from_owner_references(
    owner: tuple[str, str] | None, labels: dict[str, str], expected: tuple[str, str]
) -> None:
    """Deployments from ReplicaSet names, CronJobs from Job names, others as owned."""
    refs = [{"kind": owner[0], "name": owner[1], "controller": True}] if owner else []
    assert workload_of(refs, labels, "solo") == expected


def test_pod_extract_has_containers_labels_and_filtered_annotations() -> None:
    """last-applied-configuration is dropped; images, ids and restarts come from spec/status."""
    obj = make_pod(
        "web-1",
        namespace="shop",
        uid="u-1",
        labels={"app": "web"},
        annotations={LAST_APPLIED: "{...huge...}", "team": "checkout"},
        containers=["app", "sidecar"],
        restart_count=2,
    )
    obj["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"containerID": "containerd://old"}
    }
    pod = _pod(obj)
    assert pod is not None
    assert (pod.uid, pod.namespace, pod.name, pod.node) == ("u-1", "shop", "web-1", "node-a")
    assert pod.labels == {"app": "web"}
    assert pod.annotations == {"team": "checkout"}
    app = pod.container("app")
    assert app is not None
    assert app.image == "registry.example/app:1.0"
    assert app.restart_count == 2
    assert app.last_container_id == "old"
    assert len(app.container_id) == 64
    assert pod.container("sidecar") is not None


def test_controls_are_read_before_the_deny_list() -> None:
    """A deny list hiding podlog.io/* from records does not switch the controls off."""
    obj = make_pod("p", annotations={"podlog.io/exclude": "true", "podlog.io/parser": "logfmt"})
    pod = _pod(obj, annotations=KeyFilter(["*"], ["podlog.io/*"]))
    assert pod is not None
    assert pod.annotations == {}
    assert pod.controls.exclude == "true"
    assert pod.controls.parser == "logfmt"


def test_long_annotation_values_are_cut_to_the_byte_limit() -> None:
    """Values over the limit are cut at a UTF-8 boundary."""
    pod = _pod(make_pod("p", annotations={"note": "é" * 100}), max_annotation_value_bytes=11)
    assert pod is not None
    assert pod.annotations["note"] == "é" * 5


def test_objects_without_identity_are_rejected() -> None:
    """A pod without uid, namespace or name is None, not a crash."""
    assert _pod({"metadata": {"name": "x"}}) is None
    assert _pod({"metadata": "nonsense"}) is None
    assert _pod({}) is None


def test_strip_runtime_removes_the_scheme() -> None:
    """containerd://, docker:// and cri-o:// prefixes go."""
    assert strip_runtime("containerd://abc") == "abc"
    assert strip_runtime("cri-o://def") == "def"
    assert strip_runtime("plain") == "plain"


def test_namespace_extract_keeps_labels_and_retention() -> None:
    """A namespace's podlog.io/retention annotation becomes its retention."""
    ns = namespace_from_api(
        make_namespace("shop", {"team": "a"}, {"podlog.io/retention": "long"}), LABELS
    )
    assert ns is not None
    assert ns.labels == {"team": "a"}
    assert ns.retention == "long"


def test_snapshot_round_trip(tmp_path: Path) -> None:
    """A written snapshot reads back to equal pods and namespaces."""
    pod = _pod(
        make_pod(
            "web-1",
            labels={"a": "b"},
            annotations={"podlog.io/retention": "short", "x": "y"},
            owner=("StatefulSet", "web"),
        )
    )
    assert pod is not None
    assert pod_from_snapshot(pod_to_snapshot(pod)) == pod
    cache = PodCache(grace_seconds=60, max_pods=10)
    cache.upsert(pod)
    ns = namespace_from_api(make_namespace("default", {"k": "v"}), LABELS)
    assert ns is not None
    cache.set_namespace(ns)
    write_snapshot(tmp_path, snapshot_bytes(cache, "node-a"))
    snapshot, problems = read_snapshot(tmp_path)
    assert problems == []
    assert snapshot is not None
    assert snapshot.pods == [pod]
    assert snapshot.namespaces == [ns]


def test_corrupt_snapshot_falls_back_to_the_temporary_file(tmp_path: Path) -> None:
    """A damaged main file is reported, and the fsynced temporary copy is used."""
    pod = _pod(make_pod("p"))
    assert pod is not None
    cache = PodCache(grace_seconds=60, max_pods=10)
    cache.upsert(pod)
    data = snapshot_bytes(cache, "node-a")
    (tmp_path / "pods.json").write_bytes(data[:20])
    (tmp_path / "pods.json.tmp").write_bytes(data)
    snapshot, problems = read_snapshot(tmp_path)
    assert snapshot is not None
    assert snapshot.pods == [pod]
    assert len(problems) == 1


def test_missing_snapshot_is_not_a_problem(tmp_path: Path) -> None:
    """A first start has no snapshot and nothing to report."""
    assert read_snapshot(tmp_path / "none") == (None, [])


def test_config_rejects_unknown_parser() -> None:
    """default_parser must be json, logfmt or none."""
    from podlog.config import build

    with pytest.raises(ConfigError, match="default_parser"):
        build(KubernetesConfig, {"default_parser": "xml"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
PATHS: list[tuple[str | int, ...]] = [
    ("spec",),
    ("status",),
    ("spec", "containers"),
    ("spec", "containers", 0),
    ("spec", "containers", 0, "image"),
    ("spec", "nodeName"),
    ("status", "containerStatuses"),
    ("status", "containerStatuses", 0),
    ("status", "containerStatuses", 0, "lastState"),
    ("status", "containerStatuses", 0, "restartCount"),
    ("status", "containerStatuses", 0, "containerID"),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("metadata", "ownerReferences"),
    ("metadata", "resourceVersion"),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=4))
def test_malformed_objects_never_crash_the_watch(damage: list[tuple[tuple[object, ...], object]]) -> None:
    """A valid pod with any parts replaced by arbitrary JSON gives a pod or None, no exception."""
    obj = make_pod("p", owner=("ReplicaSet", "p-1"))
    for path, value in damage:
        _replace_at(obj, path, value)
    result = _pod(obj)
    assert result is None or result.uid


def _replace_at(obj: Any, path: tuple[Any, ...], value: object) -> None:
    """Set ``obj[path]`` to ``value`` when the path still exists after earlier damage."""
    try:
        for key in path[:-1]:
            obj = obj[key]
        if isinstance(obj, dict) or (isinstance(obj, list) and path[-1] < len(obj)):
            obj[path[-1]] = value
    except (KeyError, IndexError, TypeError):
        return
