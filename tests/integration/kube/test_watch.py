"""The node-scoped watch against a Kubernetes API over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from collector.enrichment import FilePolicy, PathMeta
from collector.kube.cache import PodCache
from collector.kube.enrich import build_enricher
from collector.kube.metadata import KeyFilter, pod_from_api
from collector.kube.snapshot import snapshot_bytes, write_snapshot
from podlog.config import CommonConfig
from podlog.errors import ConfigError
from podlog.lifecycle import Health
from podlog.metrics import sample
from tests.fixtures.kube_api import FakeKubeApi, make_namespace, make_pod
from tests.integration.kube.conftest import FAST, NODE, config_for, eventually, running_agent


def meta_for(pod: dict[str, object], container: str = "app") -> PathMeta:
    md = pod["metadata"]
    assert isinstance(md, dict)
    return PathMeta(md["namespace"], md["name"], container, pod_uid=md["uid"], restart_count=0)


async def test_pods_on_this_node_only_with_one_list_and_one_watch(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """The agent lists and watches pods with spec.nodeName=<node>, and nothing per file."""
    mine = kube_api.add_pod(make_pod("mine", node=NODE, labels={"app": "a"}))
    other = kube_api.add_pod(make_pod("other", node="node-b"))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: kube_api.open_watches("pods") == 1, "pod watch")
        assert agent.marker(meta_for(mine)) == "api"
        assert agent.marker(meta_for(other)) == "path"
        for _ in range(20):
            agent.enrich(meta_for(mine), "line")
            agent.enricher.policy(meta_for(mine))
    lists = kube_api.requests_of("pods", watch=False)
    watches = kube_api.requests_of("pods", watch=True)
    assert len(lists) == 1 and len(watches) == 1
    assert {p["fieldSelector"] for p in lists + watches} == {f"spec.nodeName={NODE}"}
    assert watches[0]["allowWatchBookmarks"] == "true"


async def test_pod_added_after_its_first_log_line(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """Lines read before the pod is known go on with the path; later ones get the API's."""
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        pod = make_pod("early-bird", labels={"app": "bird"})
        meta = meta_for(pod)
        first = agent.enrich(meta, "first line")[0]
        assert first["podlog"]["metadata"] == "path"
        assert first["kubernetes"]["pod"] == {"name": "early-bird", "uid": meta.pod_uid}
        kube_api.add_pod(pod)
        await eventually(lambda: agent.marker(meta) == "api", "pod from the watch")
        later = agent.enrich(meta, "second line")[0]
        assert later["kubernetes"]["labels"] == {"app": "bird"}


async def test_pod_deleted_while_its_lines_are_still_read(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """After deletion the metadata stays (marker cache) while lines keep coming."""
    pod = kube_api.add_pod(make_pod("short-lived", labels={"job": "x"}))
    meta = meta_for(pod)
    config = config_for(kube_api, tmp_path, deleted_grace_seconds=0.5)
    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: agent.marker(meta) == "api", "pod listed")
        kube_api.delete_pod("default", "short-lived")
        await eventually(lambda: agent.marker(meta) == "cache", "deletion seen")
        # Keep reading for longer than the grace: the pod is in use, so it stays.
        for _ in range(8):
            record = agent.enrich(meta, "still draining")[0]
            assert record["kubernetes"]["labels"] == {"job": "x"}
            assert record["podlog"]["metadata"] == "cache"
            await asyncio.sleep(0.1)  # time passing past the grace, not synchronisation
        # Stop reading: after the grace it expires and only the path is left.
        cache = agent.enricher.cache
        assert cache is not None
        await eventually(lambda: cache.get(meta.pod_uid) is None, "expiry after grace")
        assert agent.marker(meta) == "path"


async def test_restart_after_deletion_still_enriches(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """A pod deleted while the agent was down is enriched from the snapshot after restart."""
    pod = kube_api.add_pod(make_pod("batch-1", labels={"run": "42"}, owner=("Job", "nightly-29000000")))
    meta = meta_for(pod)
    config = config_for(kube_api, tmp_path)
    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: agent.marker(meta) == "api", "pod listed")
    assert (tmp_path / "kube" / "pods.json").exists()
    kube_api.delete_pod("default", "batch-1")
    async with running_agent(tmp_path, config) as agent:
        record = agent.enrich(meta, "remaining line")[0]
        assert record["podlog"]["metadata"] == "cache"
        assert record["kubernetes"]["labels"] == {"run": "42"}
        assert record["kubernetes"]["workload"] == {"kind": "CronJob", "name": "nightly"}
        # The first agent's watch may still be open on the server side, so
        # count watch requests, not open watches: the second one follows the relist.
        await eventually(
            lambda: len(kube_api.requests_of("pods", watch=True)) == 2, "watch after relist"
        )
        cache = agent.enricher.cache
        assert cache is not None
        entry = cache.get(meta.pod_uid)
        assert entry is not None and entry.state == "deleted"
        assert agent.marker(meta) == "cache"


def _container_id(pod: dict[str, Any]) -> str:
    return str(pod["status"]["containerStatuses"][0]["containerID"]).partition("://")[2]


@pytest.mark.parametrize("down", ["agent", "api"])
async def test_a_pod_recreated_under_its_name_while_unseen_never_gets_the_old_pods_metadata(
    kube_api: FakeKubeApi, tmp_path: Path, down: str
) -> None:
    """db-0 of a StatefulSet is deleted and recreated (new uid, new container id) while the agent
    is stopped, or while the API is out of reach.  Its file, found by name and container id, is
    not enriched with the old pod: path metadata, counted, until the new pod is known."""
    old = kube_api.add_pod(make_pod("db-0", labels={"gen": "old"}, owner=("StatefulSet", "db")))
    config = config_for(kube_api, tmp_path)
    path_only = {"reason": "container_mismatch"}

    def recreate() -> tuple[dict[str, Any], PathMeta]:
        kube_api.delete_pod("default", "db-0")
        new = kube_api.add_pod(make_pod("db-0", labels={"gen": "new"}, owner=("StatefulSet", "db")))
        return new, PathMeta("default", "db-0", "app", container_id=_container_id(new))

    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: agent.marker(meta_for(old)) == "api", "the old pod listed")
        if down == "api":
            kube_api.fail_next(1_000_000)
            kube_api.drop_watches()
            _, meta = recreate()
            before = sample("podlog_collector_kube_path_only_records_total", path_only)
            record = agent.enrich(meta, "first line of the new pod")[0]
            assert record["podlog"]["metadata"] == "path"
            assert record["kubernetes"].get("pod_uid", "") != old["metadata"]["uid"]
            assert sample("podlog_collector_kube_path_only_records_total", path_only) == before + 1
            kube_api.heal()
            await eventually(lambda: agent.marker(meta) == "api", "the new pod after the outage")
            assert agent.enrich(meta, "x")[0]["kubernetes"]["labels"] == {"gen": "new"}
    if down == "agent":
        _, meta = recreate()
        kube_api.fail_next(1_000_000)  # the restarted agent has only its snapshot at first
        async with running_agent(tmp_path, config) as agent:
            record = agent.enrich(meta, "first line of the new pod")[0]
            assert record["podlog"]["metadata"] == "path"
            assert "labels" not in record["kubernetes"]
            kube_api.heal()
            await eventually(lambda: agent.marker(meta) == "api", "the new pod once listed")
            assert agent.enrich(meta, "x")[0]["kubernetes"]["labels"] == {"gen": "new"}


async def test_api_down_at_start_and_coming_back(tmp_path: Path) -> None:
    """The agent starts without the API; records flow with the path, counted, until it answers."""
    api = FakeKubeApi().start()
    port = api.port
    api.stop()
    pod = make_pod("web", labels={"app": "web"})
    meta = meta_for(pod)
    config = config_for(api, tmp_path)
    label = {"reason": "api_unreachable"}
    before = sample("podlog_collector_kube_path_only_records_total", label)
    async with running_agent(tmp_path, config) as agent:
        batch = agent.enrich(meta, "a", "b", "c")
        assert [r["podlog"]["metadata"] for r in batch] == ["path"] * 3
        assert sample("podlog_collector_kube_path_only_records_total", label) == before + 3
        assert agent.enricher.policy(meta) == FilePolicy()
        await eventually(
            lambda: sample(
                "podlog_collector_kube_api_errors_total", {"resource": "pods", "error_code": "connect"}
            ),
            "a failed connect",
        )
        assert sample("podlog_collector_kube_api_up") == 0
        revived = FakeKubeApi(port)
        revived.add_pod(pod)
        revived.start()
        try:
            await eventually(lambda: agent.marker(meta) == "api", "API back", timeout=15)
            assert sample("podlog_collector_kube_api_up") == 1
        finally:
            await agent.watcher.stop()
            revived.stop()


async def test_relist_after_410_marks_vanished_pods_deleted(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """A watch resumed from a compacted version relists and learns what was deleted."""
    keep = kube_api.add_pod(make_pod("keep"))
    lose = kube_api.add_pod(make_pod("lose"))
    gone_before = sample("podlog_collector_kube_lists_total", {"resource": "pods", "reason": "gone"})
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        kube_api.stop()  # the agent loses the API...
        kube_api.start()
        kube_api.delete_pod("default", "lose")  # ...the pod goes meanwhile...
        added = kube_api.add_pod(make_pod("new"))
        kube_api.compact()  # ...and the history with it: resuming gives 410 Gone
        await eventually(
            lambda: sample("podlog_collector_kube_lists_total", {"resource": "pods", "reason": "gone"})
            > gone_before,
            "relist after 410",
        )
        await eventually(lambda: agent.marker(meta_for(lose)) == "cache", "vanished pod deleted")
        assert agent.marker(meta_for(keep)) == "api"
        assert agent.marker(meta_for(added)) == "api"


async def test_410_as_http_status_also_relists(tmp_path: Path) -> None:
    """An API that answers 410 as an HTTP status instead of an ERROR event relists too."""
    with FakeKubeApi(gone_as_status=True) as api:
        api.add_pod(make_pod("a"))
        async with running_agent(tmp_path, config_for(api, tmp_path)) as agent:
            await eventually(lambda: api.open_watches() == 1, "watch")
            # Cut first: an event sent before the cut could reach the agent and bring its
            # version up to date, and resuming from there is not 410.
            api.drop_watches()
            pod = api.add_pod(make_pod("b"))
            api.compact()
            await eventually(lambda: len(api.requests_of("pods", watch=False)) == 2, "relist")
            await eventually(lambda: agent.marker(meta_for(pod)) == "api", "pod after relist")


async def test_bookmarks_move_the_resume_version(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """After a bookmark, a dropped watch resumes from the bookmark's version, without a list."""
    kube_api.add_pod(make_pod("a"))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        kube_api.add_namespace(make_namespace("unrelated"))  # moves the version, no pod event
        kube_api.add_namespace(make_namespace("unrelated-2"))
        kube_api.compact()  # without the bookmark, resuming would now be 410
        assert kube_api.bookmark() >= 1
        bookmark_version = str(kube_api.resource_version)
        await eventually(
            lambda: sample(
                "podlog_collector_kube_watch_events_total", {"resource": "pods", "type": "BOOKMARK"}
            ),
            "bookmark received",
        )
        kube_api.drop_watches()
        await eventually(lambda: len(kube_api.requests_of("pods", watch=True)) == 2, "rewatch")
        resumed = kube_api.requests_of("pods", watch=True)[1]
        assert resumed["resourceVersion"] == bookmark_version
        assert len(kube_api.requests_of("pods", watch=False)) == 1
        assert agent.enricher.cache is not None


async def test_dropped_connection_resumes_without_losing_events(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """A cut watch reconnects from its last version and replays what happened meanwhile."""
    kube_api.add_pod(make_pod("a"))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        kube_api.fail_next(2)  # the reconnects fail a while too
        kube_api.drop_watches()
        pod = kube_api.add_pod(make_pod("during-outage"))
        await eventually(lambda: agent.marker(meta_for(pod)) == "api", "replayed ADDED")
        assert len(kube_api.requests_of("pods", watch=False)) == 1
        errors = sample(
            "podlog_collector_kube_api_errors_total",
            {"resource": "pods", "error_code": "connection_dropped"},
        )
        assert errors >= 1


async def test_annotations_switch_policy_on_and_off(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """Editing podlog.io/* annotations changes exclude, parser and multiline live."""
    pod = kube_api.add_pod(make_pod("tunable", containers=["app", "proxy"]))
    meta = meta_for(pod)
    proxy = dataclasses.replace(meta, container="proxy")
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        enr = agent.enricher
        await eventually(lambda: agent.marker(meta) == "api", "pod listed")
        assert enr.policy(meta) == FilePolicy()

        def annotate(annotations: dict[str, str]) -> None:
            pod["metadata"]["annotations"] = annotations
            kube_api.update_pod(pod)

        annotate({"podlog.io/exclude": "true"})
        await eventually(lambda: enr.policy(meta).exclude, "exclude on")
        annotate({"podlog.io/exclude-containers": "proxy"})
        await eventually(lambda: not enr.policy(meta).exclude, "exclude off for app")
        assert enr.policy(proxy).exclude
        annotate({"podlog.io/parser": "logfmt", "podlog.io/multiline": "java"})
        await eventually(lambda: enr.policy(meta).parser == "logfmt", "parser logfmt")
        assert enr.policy(meta).multiline == "java"
        assert agent.enrich(meta, "level=error msg=boom")[0]["json"] == {
            "level": "error",
            "msg": "boom",
        }
        annotate({})
        await eventually(lambda: enr.policy(meta) == FilePolicy(), "all off")
        assert agent.enrich(meta, "level=error msg=boom")[0]["json"] is None


async def test_namespace_watch_sets_retention_default(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """A namespace's retention annotation reaches its pods' records, and follows edits."""
    kube_api.add_namespace(make_namespace("default", {"team": "a"}, {"podlog.io/retention": "short"}))
    pod = kube_api.add_pod(make_pod("p"))
    meta = meta_for(pod)
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(
            lambda: agent.enrich(meta, "x")[0]["podlog"].get("retention") == "short", "ns listed"
        )
        kube_api.add_namespace(make_namespace("default", {"team": "a"}, {"podlog.io/retention": "long"}))
        await eventually(
            lambda: agent.enrich(meta, "x")[0]["podlog"].get("retention") == "long", "ns edited"
        )


async def test_kubeconfig_token_is_sent(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """A kubeconfig user's bearer token authenticates the list and the watch."""
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kc", token="t0k3n")
    config = dataclasses.replace(config_for(kube_api, tmp_path), kubeconfig=str(kubeconfig))
    async with running_agent(tmp_path, config):
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
    assert kube_api.authorizations
    assert set(kube_api.authorizations) == {"Bearer t0k3n"}


async def test_api_server_without_credentials_lists_and_watches(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """``api_server`` alone: no kubeconfig, no token; the pods are listed and watched."""
    pod = kube_api.add_pod(make_pod("a"))
    config = dataclasses.replace(FAST, api_server=kube_api.url)
    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        assert agent.marker(meta_for(pod)) == "api"
        assert not agent.task.done()
    assert set(kube_api.authorizations) == {None}


async def test_api_server_token_file_is_read_again_as_it_rotates(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """``api_token_file`` authenticates every request; when the server refuses a token that
    rotated, the file is read again (as client-go does) and the watch goes on."""
    token = tmp_path / "token"
    token.write_text("first\n")
    kube_api.required_token = "first"
    config = dataclasses.replace(FAST, api_server=kube_api.url, api_token_file=str(token))
    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        token.write_text("second\n")
        kube_api.required_token = "second"
        kube_api.drop_watches()
        pod = kube_api.add_pod(make_pod("after-rotation"))
        await eventually(lambda: agent.marker(meta_for(pod)) == "api", "the pod added after the rotation")
    assert set(kube_api.authorizations) == {"Bearer first", "Bearer second"}


async def test_unusable_configuration_stops_the_start_with_its_message(tmp_path: Path) -> None:
    """A missing kubeconfig or token file fails the agent's composition with a message that
    names it, before any service starts; it is not retried as if the API were down."""
    missing = dataclasses.replace(FAST, kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"missing.*kubernetes\.enabled: false"):
        build_enricher(CommonConfig(node_name=NODE, state_dir=str(tmp_path)), missing, Health())
    no_token = dataclasses.replace(
        FAST, api_server="http://127.0.0.1:1", api_token_file=str(tmp_path / "token")
    )
    with pytest.raises(ConfigError, match="api_token_file"):
        build_enricher(CommonConfig(node_name=NODE, state_dir=str(tmp_path)), no_token, Health())


@pytest.mark.parametrize(
    ("kube", "message"),
    [
        ({"api_server": "localhost:6443"}, "not an http:// or https:// URL"),
        ({"api_server": "http://127.0.0.1:1", "api_token_file": "/nonexistent/token"},
         "api_token_file: /nonexistent/token is not a file"),
        ({"kubeconfig": "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig not found"),
    ],
)
def test_agent_with_an_unusable_api_configuration_exits_1_with_a_message(
    tmp_path: Path, kube: dict[str, str], message: str
) -> None:
    """``podlog agent`` with a bad ``api_server``, a missing token file or kubeconfig: exit 1
    and one line naming the problem, no traceback, nothing started."""
    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({
        "podlog": {"node_name": NODE, "state_dir": str(tmp_path / "state"), "http_listen": ""},
        "collector": {"include": [str(tmp_path / "*.log")]},
        "kubernetes": kube,
        "shipper": {"kafka": {"bootstrap_servers": "127.0.0.1:1", "topic": "t"}},
    }))
    done = subprocess.run(
        [sys.executable, "-m", "podlog", "agent", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "service_started" not in done.stdout


async def test_snapshot_of_another_node_is_not_restored(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """A state directory written by another node's agent does not leak its pods."""
    pod = kube_api.add_pod(make_pod("elsewhere", node="node-b"))
    other = config_for(kube_api, tmp_path)
    cache = PodCache(grace_seconds=60, max_pods=10)
    extracted = pod_from_api(
        pod, annotations=KeyFilter(["*"], []), labels=KeyFilter(["*"], []),
        max_annotation_value_bytes=100,
    )
    assert extracted is not None
    cache.upsert(extracted)
    write_snapshot(tmp_path / "kube", snapshot_bytes(cache, "node-b"))
    kube_api.stop()  # no API: only the snapshot could know the pod
    async with running_agent(tmp_path, other) as agent:
        assert agent.marker(meta_for(pod)) == "path"
        assert sample("podlog_collector_kube_snapshots_total", {"operation": "read", "result": "error"})


async def test_paged_list_and_an_expired_list_retry(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """Lists follow continue tokens page by page; a 410 on a list page lists again."""
    pods = [kube_api.add_pod(make_pod(f"p{i}")) for i in range(5)]
    kube_api.fail_next(1, status=410)
    config = config_for(kube_api, tmp_path, list_page_size=2, watch_namespaces=False)
    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        assert [agent.marker(meta_for(p)) for p in pods] == ["api"] * 5
    pages = kube_api.requests_of("pods", watch=False)
    assert len(pages) == 1 + 3  # the refused page, then three pages of two
    assert [p.get("continue") is not None for p in pages[1:]] == [False, True, True]
    assert {p["limit"] for p in pages} == {"2"}


async def test_a_paged_pod_list_is_whole_when_namespaces_are_listed_at_its_version(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """The pod and namespace lists start together at one resource version; each is continued
    on its own snapshot, so every page of the pods arrives (none is the namespaces')."""
    kube_api.add_namespace(make_namespace("default"))
    pods = [kube_api.add_pod(make_pod(f"p{i}")) for i in range(9)]
    config = config_for(kube_api, tmp_path, list_page_size=2)
    async with running_agent(tmp_path, config) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        assert [agent.marker(meta_for(p)) for p in pods] == ["api"] * 9

    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{kube_api.url}{path}", timeout=5) as response:
            return dict(json.loads(response.read()))

    first = get("/api/v1/pods?limit=5")
    assert len(get("/api/v1/namespaces?limit=5")["items"]) == 1
    token = urllib.parse.quote(first["metadata"]["continue"])
    rest = get(f"/api/v1/pods?limit=5&continue={token}")
    assert [p["metadata"]["name"] for p in first["items"] + rest["items"]] == [
        f"p{i}" for i in range(9)
    ]


async def test_malformed_watch_events_are_counted_and_skipped(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """Objects without identity are counted and skipped; a garbage line reconnects the watch."""
    rejected = {"resource": "pods"}
    before = sample("podlog_collector_kube_objects_rejected_total", rejected)
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: kube_api.open_watches() == 1, "watch")
        kube_api.inject("pods", {"type": "ADDED", "object": {"metadata": {"name": "no-uid"}}})
        kube_api.inject("pods", {"type": "DELETED", "object": {"metadata": ["not", "a", "map"]}})
        await eventually(
            lambda: sample("podlog_collector_kube_objects_rejected_total", rejected) == before + 2,
            "two rejected objects",
        )
        kube_api.inject("pods", "this is not JSON")
        await eventually(lambda: len(kube_api.requests_of("pods", watch=True)) == 2, "rewatch")
        pod = kube_api.add_pod(make_pod("fine"))
        await eventually(lambda: agent.marker(meta_for(pod)) == "api", "later pods still arrive")
        assert not agent.task.done()
