"""The enricher: markers, record fields, file policy from annotations, the payload parser.

The enricher parses no payload: it names the parser in ``podlog.parser``, and
whoever reads the message parses.  :func:`read_back` does what the reader
does (the records through a schema 2 message and back), so these tests check
the whole contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector.enrichment import FilePolicy, PathMeta
from collector.kube.cache import PodCache
from collector.kube.config import KubernetesConfig
from collector.kube.enrich import FORGET_HOLD_SECONDS, ApiState, KubeEnricher, build_enricher
from collector.kube.metadata import KeyFilter, NamespaceMeta, pod_from_api
from podlog.config import CommonConfig
from podlog.lifecycle import Health
from podlog.metrics import sample
from podlog.record import Record, SourcePosition, make_record
from shipper.messages import StoredMessages, build_messages
from tests.fixtures.kube_api import make_pod

CONFIG = KubernetesConfig()
FILTER = KeyFilter(CONFIG.annotations_allow, CONFIG.annotations_deny)


def records(*messages: str) -> list[Record]:
    return [
        make_record(
            position=SourcePosition("c", "node-a", "1:2:ff", 0, i * 100),
            timestamp="2026-11-27T00:00:00.000000000Z",
            timestamp_ns=0,
            message=m,
            stream="stdout",
            path="/var/log/pods/x/app/0.log",
        )
        for i, m in enumerate(messages)
    ]


def read_back(batch: list[Record]) -> list[Record]:
    """``batch`` as the reader of its schema 2 message gets it: payloads parsed."""
    return StoredMessages(build_messages(batch)).records()


def add_pod(cache: PodCache, **kwargs: Any) -> str:
    pod = pod_from_api(
        make_pod(**kwargs), annotations=FILTER, labels=KeyFilter(["*"], []),
        max_annotation_value_bytes=4096,
    )
    assert pod is not None
    cache.upsert(pod)
    return pod.uid


def enricher(config: KubernetesConfig = CONFIG) -> tuple[KubeEnricher, PodCache, ApiState]:
    cache = PodCache(grace_seconds=300, max_pods=100)
    api = ApiState()
    api.synced = api.connected = True
    return KubeEnricher(config, "node-a", cache, api), cache, api


def test_disabled_enricher_uses_the_path_and_counts_it() -> None:
    """Without the API, records get path metadata, marker 'path', counted as disabled."""
    enr, services = build_enricher(
        CommonConfig(node_name="node-a"), KubernetesConfig(enabled=False), Health()
    )
    assert services == []
    before = sample("podlog_collector_kube_path_only_records_total", {"reason": "disabled"})
    batch = records('{"level":"error","msg":"x"}', "plain")
    meta = PathMeta("shop", "web-1", "app", pod_uid="u-9", restart_count=3)
    enr.enrich(meta, batch)
    assert batch[0]["kubernetes"] == {
        "namespace": "shop",
        "pod": {"name": "web-1", "uid": "u-9"},
        "container": {"name": "app", "restart_count": 3},
        "node": {"name": "node-a"},
    }
    assert batch[0]["podlog"]["metadata"] == "path"
    assert batch[0]["level"] is None, "the agent parses no payload"
    read = read_back(batch)
    assert read[0]["level"] == "error"
    assert read[1]["json"] is None
    after = sample("podlog_collector_kube_path_only_records_total", {"reason": "disabled"})
    assert after - before == 2


def test_enabled_build_returns_the_watch_service(tmp_path: Path) -> None:
    """With the API enabled, build_enricher returns the watch and a readiness check."""
    health = Health()
    enr, services = build_enricher(
        CommonConfig(node_name="node-a", state_dir=str(tmp_path)),
        KubernetesConfig(api_server="http://127.0.0.1:1"),
        health,
    )
    assert [s.name for s in services] == ["kube-watch"]
    assert "kubernetes" in health.not_ready()  # until the snapshot is restored
    assert isinstance(enr, KubeEnricher)


def test_known_pod_fills_every_kubernetes_field() -> None:
    """A listed pod gives labels, filtered annotations, image, workload and marker 'api'."""
    enr, cache, _ = enricher()
    uid = add_pod(
        cache,
        name="web-5d8-x",
        namespace="shop",
        labels={"app": "web", "pod-template-hash": "5d8"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"},
        owner=("ReplicaSet", "web-5d8"),
    )
    batch = records("hello")
    enr.enrich(PathMeta("shop", "web-5d8-x", "app", pod_uid=uid, restart_count=0), batch)
    k8s = batch[0]["kubernetes"]
    assert k8s["labels"] == {"app": "web", "pod-template-hash": "5d8"}
    assert k8s["annotations"] == {"team": "a"}
    assert k8s["workload"] == {"kind": "Deployment", "name": "web"}
    assert k8s["container"]["image"] == "registry.example/app:1.0"
    assert len(k8s["container"]["id"]) == 64
    assert k8s["node"] == {"name": "node-a"}
    assert batch[0]["podlog"]["metadata"] == "api"


def test_unknown_pod_reason_depends_on_the_api_state() -> None:
    """Unknown pods count as api_unreachable before a list, pod_unknown after."""
    enr, _, api = enricher()
    api.synced = False
    meta = PathMeta("ns", "new", "app", pod_uid="nope")
    before = sample("podlog_collector_kube_path_only_records_total", {"reason": "api_unreachable"})
    enr.enrich(meta, records("a"))
    assert (
        sample("podlog_collector_kube_path_only_records_total", {"reason": "api_unreachable"})
        == before + 1
    )
    api.synced = True
    before = sample("podlog_collector_kube_path_only_records_total", {"reason": "pod_unknown"})
    enr.enrich(meta, records("a"))
    assert (
        sample("podlog_collector_kube_path_only_records_total", {"reason": "pod_unknown"})
        == before + 1
    )


def test_deleted_pod_is_marked_cache() -> None:
    """Records of a deleted pod in its grace period carry marker 'cache'."""
    enr, cache, _ = enricher()
    uid = add_pod(cache, name="gone")
    cache.delete(uid)
    batch = records("last words")
    enr.enrich(PathMeta("default", "gone", "app", pod_uid=uid), batch)
    assert batch[0]["podlog"]["metadata"] == "cache"
    assert batch[0]["kubernetes"]["pod"]["name"] == "gone"


def test_file_of_an_earlier_restart_gets_the_previous_container_id() -> None:
    """/var/log/pods/.../0.log of a restarted container takes lastState's container id."""
    enr, cache, _ = enricher()
    obj = make_pod("p", restart_count=1)
    obj["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"containerID": "containerd://previous"}
    }
    pod = pod_from_api(obj, annotations=FILTER, labels=FILTER, max_annotation_value_bytes=99)
    assert pod is not None
    cache.upsert(pod)
    batch = records("x")
    enr.enrich(PathMeta("default", "p", "app", pod_uid=pod.uid, restart_count=0), batch)
    assert batch[0]["kubernetes"]["container"]["id"] == "previous"
    assert batch[0]["kubernetes"]["container"]["restart_count"] == 0


@pytest.mark.parametrize(
    ("annotations", "container", "expected"),
    [
        ({}, "app", FilePolicy()),
        ({"podlog.io/exclude": "true"}, "app", FilePolicy(exclude=True)),
        ({"podlog.io/exclude": "false"}, "app", FilePolicy()),
        ({"podlog.io/exclude-containers": "sidecar, proxy"}, "proxy", FilePolicy(exclude=True)),
        ({"podlog.io/exclude-containers": "sidecar, proxy"}, "app", FilePolicy()),
        ({"podlog.io/parser": "LOGFMT"}, "app", FilePolicy(parser="logfmt")),
        ({"podlog.io/parser": "xml"}, "app", FilePolicy()),
        ({"podlog.io/multiline": "java"}, "app", FilePolicy(multiline="java")),
        ({"podlog.io/multiline": r"^\d{4}-"}, "app", FilePolicy(multiline=r"^\d{4}-")),
        ({"podlog.io/multiline": "(unclosed"}, "app", FilePolicy()),
        ({"podlog.io/retention": "long"}, "app", FilePolicy(retention="long")),
    ],
)
def test_policy_follows_annotations(
    annotations: dict[str, str], container: str, expected: FilePolicy
) -> None:
    """exclude, exclude-containers, parser, multiline and retention map to the policy."""
    enr, cache, _ = enricher()
    uid = add_pod(cache, name="p", annotations=annotations, containers=["app", "proxy"])
    assert enr.policy(PathMeta("default", "p", container, pod_uid=uid)) == expected


def test_invalid_annotation_is_counted_once_per_pod_version() -> None:
    """A bad podlog.io/parser value is ignored, logged and counted, not per batch."""
    enr, cache, _ = enricher()
    uid = add_pod(cache, name="p", annotations={"podlog.io/parser": "xml"})
    label = {"annotation": "podlog.io/parser"}
    before = sample("podlog_collector_kube_annotations_invalid_total", label)
    for _ in range(5):
        enr.policy(PathMeta("default", "p", "app", pod_uid=uid))
    assert sample("podlog_collector_kube_annotations_invalid_total", label) == before + 1


def test_namespace_retention_is_the_default_for_its_pods() -> None:
    """A namespace's podlog.io/retention applies unless the pod says otherwise."""
    enr, cache, _ = enricher()
    cache.set_namespace(NamespaceMeta("default", {"team": "x"}, "short"))
    plain = add_pod(cache, name="a")
    own = add_pod(cache, name="b", annotations={"podlog.io/retention": "long"})
    batch_a, batch_b, batch_c = records("1"), records("2"), records("3")
    enr.enrich(PathMeta("default", "a", "app", pod_uid=plain), batch_a)
    enr.enrich(PathMeta("default", "b", "app", pod_uid=own), batch_b)
    enr.enrich(PathMeta("default", "unknown", "app", pod_uid="zzz"), batch_c)
    assert batch_a[0]["podlog"]["retention"] == "short"
    assert batch_a[0]["kubernetes"]["namespace_labels"] == {"team": "x"}
    assert batch_b[0]["podlog"]["retention"] == "long"
    assert batch_c[0]["podlog"]["retention"] == "short"
    assert enr.policy(PathMeta("default", "unknown", "app", pod_uid="zzz")).retention == "short"


def test_parser_annotation_selects_the_payload_format() -> None:
    """podlog.io/parser: logfmt parses logfmt; none leaves JSON as text."""
    enr, cache, _ = enricher()
    logfmt = add_pod(cache, name="l", annotations={"podlog.io/parser": "logfmt"})
    none = add_pod(cache, name="n", annotations={"podlog.io/parser": "none"})
    batch = records("level=warn msg=hi")
    enr.enrich(PathMeta("default", "l", "app", pod_uid=logfmt), batch)
    assert batch[0]["podlog"]["parser"] == "logfmt"
    read = read_back(batch)
    assert read[0]["json"] == {"level": "warn", "msg": "hi"}
    assert read[0]["level"] == "warn"
    batch = records('{"level":"info"}')
    enr.enrich(PathMeta("default", "n", "app", pod_uid=none), batch)
    read = read_back(batch)
    assert read[0]["json"] is None and read[0]["level"] is None


def test_payload_never_overwrites_podlog_fields() -> None:
    """Payload keys named like podlog's own fields stay under json; a set level stays."""
    enr, _, _ = enricher()
    line = '{"message":"fake","kubernetes":{"namespace":"evil"},"podlog":1,"level":"debug"}'
    batch = records(line)
    enr.enrich(PathMeta("real", "p", "app"), batch)
    record = read_back(batch)[0]
    assert record["message"] == line
    assert record["kubernetes"]["namespace"] == "real"
    assert record["podlog"]["metadata"] == "path"
    assert record["level"] == "debug"
    assert record["json"]["kubernetes"] == {"namespace": "evil"}


def test_rejected_payloads_are_counted() -> None:
    """Broken JSON is counted under its error code by the reader, and left as text."""
    enr, _, _ = enricher()
    before = sample("podlog_shipper_payloads_total", {"outcome": "invalid_json"})
    batch = records("{broken", "{also broken")
    enr.enrich(PathMeta("ns", "p", "app"), batch)
    assert read_back(batch)[0]["json"] is None
    after = sample("podlog_shipper_payloads_total", {"outcome": "invalid_json"})
    assert after - before == 2


def test_records_of_a_file_share_read_only_metadata_maps() -> None:
    """One call resolves the metadata once; writing into the shared maps raises."""
    enr, cache, _ = enricher()
    uid = add_pod(cache, name="p")
    batch = records("a", "b")
    enr.enrich(PathMeta("default", "p", "app", pod_uid=uid), batch)
    assert batch[0]["kubernetes"] is batch[1]["kubernetes"]
    assert batch[0]["podlog"] is batch[1]["podlog"]
    for shared in (batch[0]["kubernetes"], batch[0]["kubernetes"]["pod"], batch[0]["podlog"]):
        with pytest.raises(TypeError, match="read-only"):
            shared["extra"] = 1
    batch[0]["kubernetes"] = {**batch[0]["kubernetes"], "extra": 1}  # what a stage does instead
    assert "extra" not in batch[1]["kubernetes"]


def test_file_outside_kubernetes_layouts_keeps_the_pipelines_fields() -> None:
    """A plain file (no pod in its path) is not looked up; payloads are still parsed (by the reader)."""
    enr, _, _ = enricher()
    batch = records('{"level":"info"}')
    batch[0]["kubernetes"] = {"node": {"name": "node-a"}}
    enr.enrich(PathMeta("", "", ""), batch)
    assert batch[0]["kubernetes"] == {"node": {"name": "node-a"}}
    assert batch[0]["podlog"]["metadata"] == "path"
    assert read_back(batch)[0]["level"] == "info"


@pytest.mark.parametrize("parser", ["json", "logfmt"])
def test_only_messages_that_can_be_payloads_are_parsed(parser: str) -> None:
    """Leading whitespace (ASCII or not) before an object still parses; text stays text."""
    enr, _, _ = enricher(KubernetesConfig(default_parser=parser))
    batch = records(
        '{"level":"warn"}', ' \t{"level":"error"}', '\u3000{"level":"debug"}',
        "plain text {not json}", "", "é {", "a=1 b=two",
    )
    enr.enrich(PathMeta("default", "p", "app"), batch)
    read = read_back(batch)
    assert [r["level"] for r in read[:3]] == ["warn", "error", "debug"]
    assert [r["json"] for r in read[3:6]] == [None, None, None]
    assert read[6]["json"] == ({"a": "1", "b": "two"} if parser == "logfmt" else None)


def test_enriched_records_reuse_the_maps_they_were_built_with() -> None:
    """Records that already carry the resolved maps keep them; others get them all."""
    enr, cache, _ = enricher()
    uid = add_pod(cache, name="p")
    meta = PathMeta("default", "p", "app", pod_uid=uid)
    first = records("a", "b")
    enr.enrich(meta, first)
    second = records("c", "d", "e")
    for record in second:
        record["kubernetes"], record["podlog"] = first[0]["kubernetes"], first[0]["podlog"]
    enr.enrich(meta, second)
    third = records("f", "g")
    enr.enrich(meta, third)
    for record in second + third:
        assert record["kubernetes"] is first[0]["kubernetes"]
        assert record["podlog"] is first[0]["podlog"]


# -- holding a file whose pod is not known yet -----------------------------------------------


def test_unknown_pod_is_held_until_the_bound_then_read_as_path_and_counted() -> None:
    """A file of a pod the cache does not know waits unread up to hold_unknown_seconds; then
    it is read (counted, once) and never held again."""
    enr, _, _ = enricher(KubernetesConfig(hold_unknown_seconds=30.0))
    meta = PathMeta("ns", "new-pod", "app", pod_uid="u-new")
    expired = sample("podlog_collector_kube_hold_expired_total")
    assert enr.held(meta, 100.0)
    assert sample("podlog_collector_kube_streams_held") == 1
    assert enr.held(meta, 129.9)
    assert not enr.held(meta, 130.0)
    assert sample("podlog_collector_kube_hold_expired_total") == expired + 1
    assert sample("podlog_collector_kube_streams_held") == 0
    for now in range(131, 2000, 5):  # asked every round, as the pipeline does
        assert not enr.held(meta, float(now))
    assert sample("podlog_collector_kube_hold_expired_total") == expired + 1


def test_hold_outlasts_the_watch_reconnect_backoff_while_the_api_is_away() -> None:
    """While the pod watch has lost the API, a held file waits one longest backoff delay more
    than the bound: the watch reconnects up to that long after the API is back, and a pod
    created during a shorter outage must not leave as path (or, excluded, leave at all)."""
    enr, cache, api = enricher(
        KubernetesConfig(hold_unknown_seconds=30.0, backoff_max_seconds=30.0)
    )
    api.connected = False
    meta = PathMeta("ns", "created-in-outage", "app", pod_uid="u-outage")
    assert enr.held(meta, 100.0)
    assert enr.held(meta, 131.0)
    assert enr.held(meta, 159.9)
    assert not enr.held(meta, 160.0)  # a longer outage: the bound and one backoff, no more
    other = PathMeta("ns", "back-in-time", "app", pod_uid="u-back")
    assert enr.held(other, 200.0)
    assert enr.held(other, 235.0)
    api.connected = True
    add_pod(cache, name="back-in-time", uid="u-back", namespace="ns")
    assert not enr.held(other, 236.0)
    batch = records("x")
    enr.enrich(other, batch)
    assert batch[0]["podlog"]["metadata"] == "api"


def test_known_pod_is_never_held_and_a_held_one_is_released_when_listed() -> None:
    """A cached pod's file is read at once; a held one is released as soon as its pod is in the
    cache, before the bound, without counting an expiry."""
    enr, cache, _ = enricher(KubernetesConfig(hold_unknown_seconds=30.0))
    uid = add_pod(cache, name="known")
    assert not enr.held(PathMeta("default", "known", "app", pod_uid=uid), 0.0)
    expired = sample("podlog_collector_kube_hold_expired_total")
    late = PathMeta("default", "late", "app", pod_uid="u-late")
    assert enr.held(late, 10.0)
    add_pod(cache, name="late", uid="u-late")
    assert not enr.held(late, 11.0)
    assert sample("podlog_collector_kube_streams_held") == 0
    assert sample("podlog_collector_kube_hold_expired_total") == expired
    batch = records("x")
    enr.enrich(late, batch)
    assert batch[0]["podlog"]["metadata"] == "api"


def test_a_pod_recreated_under_its_name_is_held_until_its_container_is_known() -> None:
    """Only an older pod of that name with another container id is known: held (a StatefulSet
    pod recreated while the API was out of reach), released when the new pod is listed."""
    enr, cache, _ = enricher(KubernetesConfig(hold_unknown_seconds=30.0))
    add_pod(cache, name="db-0")
    meta = PathMeta("default", "db-0", "app", container_id="f" * 64)
    assert enr.held(meta, 0.0)
    obj = make_pod("db-0")
    obj["status"]["containerStatuses"][0]["containerID"] = "containerd://" + "f" * 64
    pod = pod_from_api(obj, annotations=FILTER, labels=FILTER, max_annotation_value_bytes=99)
    assert pod is not None
    cache.upsert(pod)
    assert not enr.held(meta, 1.0)


def test_a_policy_lookup_of_a_known_pod_releases_its_hold() -> None:
    """The stat pass asks for the policy first and may close the file (excluded) before the
    read loop asks again: the hold ends there too, so the gauge does not keep it."""
    enr, cache, _ = enricher(KubernetesConfig(hold_unknown_seconds=30.0))
    meta = PathMeta("default", "noisy", "app", pod_uid="u-noisy")
    assert enr.held(meta, 0.0)
    add_pod(cache, name="noisy", uid="u-noisy", annotations={"podlog.io/exclude": "true"})
    assert enr.policy(meta).exclude
    assert enr.streams_held == 0
    assert sample("podlog_collector_kube_streams_held") == 0


@pytest.mark.parametrize("case", ["disabled", "bound_zero", "never_listed", "not_kubernetes"])
def test_hold_does_not_apply(case: str, tmp_path: Path) -> None:
    """No hold: a path-only enricher, hold_unknown_seconds 0, before the first list (the start
    wait is the bound there), and a file outside the Kubernetes layouts."""
    meta = PathMeta("ns", "p", "app", pod_uid="u")
    if case == "disabled":
        enr, _ = build_enricher(
            CommonConfig(node_name="node-a"), KubernetesConfig(enabled=False), Health()
        )
    else:
        enr, _, api = enricher(
            KubernetesConfig(hold_unknown_seconds=0.0 if case == "bound_zero" else 30.0)
        )
        api.synced = case != "never_listed"
        if case == "not_kubernetes":
            meta = PathMeta("", "", "")
    assert not enr.held(meta, 0.0)
    assert not enr.held(meta, 1.0)


def test_streams_no_longer_asked_about_are_forgotten() -> None:
    """Holds are kept only for files still open: a stream not asked about for a while is
    dropped, so the table stays as small as the set of open files."""
    enr, _, _ = enricher(KubernetesConfig(hold_unknown_seconds=30.0))
    for i in range(100):
        assert enr.held(PathMeta("ns", f"gone-{i}", "app", pod_uid=f"u-{i}"), 0.0)
    kept = PathMeta("ns", "kept", "app", pod_uid="u-kept")
    assert enr.held(kept, 0.0)
    assert sample("podlog_collector_kube_streams_held") == 101
    for now in range(30, int(FORGET_HOLD_SECONDS) + 1, 10):
        assert not enr.held(kept, float(now))  # expired, still asked about
    assert enr.held(PathMeta("ns", "newer", "app", pod_uid="u-newer"), FORGET_HOLD_SECONDS + 1)
    assert len(enr._holds) == 2
    assert sample("podlog_collector_kube_streams_held") == 1
    assert not enr.held(kept, FORGET_HOLD_SECONDS + 2)  # remembered as expired: not held again


def test_invalid_hold_bound_is_rejected() -> None:
    """A negative hold_unknown_seconds is a configuration error."""
    with pytest.raises(ValueError, match="hold_unknown_seconds"):
        KubernetesConfig(hold_unknown_seconds=-1)
