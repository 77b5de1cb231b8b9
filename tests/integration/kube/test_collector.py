"""The collector pipeline with the API-backed enricher: files in, enriched records out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from collector.config import CollectorConfig
from collector.enrichment import Enricher
from collector.kube.enrich import build_enricher
from collector.pipeline import Collector
from podlog.config import CommonConfig
from podlog.lifecycle import Health, run_services
from podlog.metrics import sample
from podlog.protocols import Batch
from podlog.record import Record
from shipper.messages import StoredMessages, build_messages
from tests.fixtures.kube_api import FakeKubeApi, make_namespace, make_pod
from tests.integration.kube.conftest import NODE, Agent, config_for, eventually, running_agent


class Sink:
    """Keeps every batch the collector hands over."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def append(self, batch: Batch) -> None:
        self.batches.append(batch)

    def records(self, pod: str) -> list[Record]:
        """The pod's records as a reader gets them from the spool's messages (payloads parsed)."""
        return [
            r for b in self.batches if b.records for r in StoredMessages(build_messages(b.records)).records()
            if r["kubernetes"]["pod"]["name"] == pod
        ]


def pod_log(root: Path, pod: dict[str, object], container: str = "app") -> Path:
    md = pod["metadata"]
    assert isinstance(md, dict)
    directory = root / "pods" / f"{md['namespace']}_{md['name']}_{md['uid']}" / container
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "0.log"


def write_lines(path: Path, messages: list[str]) -> None:
    with path.open("ab") as handle:
        for i, message in enumerate(messages):
            handle.write(f"2026-11-27T00:00:00.{i:09d}Z stdout F {message}\n".encode())


@asynccontextmanager
async def collecting(tmp_path: Path, enricher: Enricher) -> AsyncIterator[Sink]:
    sink = Sink()
    common = CommonConfig(
        cluster="test", node_name=NODE, state_dir=str(tmp_path / "state"), http_listen=""
    )
    config = CollectorConfig(
        include=[str(tmp_path / "logs" / "pods" / "*" / "*" / "*.log")],
        scan_interval_seconds=0.05,
        poll_interval_seconds=0.02,
        checkpoint_interval_seconds=0.05,
        use_inotify=False,
    )
    collector = Collector(common, config, sink=sink, enricher=enricher)
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        yield sink
    finally:
        await collector.stop()
        await task


async def test_pipeline_records_carry_api_metadata_and_parsed_payloads(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """Lines of a listed pod leave the pipeline with labels, workload and the parsed JSON."""
    pod = kube_api.add_pod(
        make_pod("api-7f9c-abcde", labels={"app": "api", "pod-template-hash": "7f9c"},
                 owner=("ReplicaSet", "api-7f9c"))
    )
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: len(agent.enricher.cache or ()) == 1, "pod listed")
        async with collecting(tmp_path, agent.enricher) as sink:
            write_lines(pod_log(tmp_path / "logs", pod), ['{"level":"error","msg":"boom"}', "plain"])
            await eventually(lambda: len(sink.records("api-7f9c-abcde")) == 2, "records")
    first, second = sink.records("api-7f9c-abcde")
    assert first["podlog"]["metadata"] == "api"
    assert first["kubernetes"]["workload"] == {"kind": "Deployment", "name": "api"}
    assert first["kubernetes"]["labels"]["app"] == "api"
    assert first["level"] == "error" and first["json"] == {"level": "error", "msg": "boom"}
    assert second["json"] is None


async def test_pipeline_skips_excluded_pods(kube_api: FakeKubeApi, tmp_path: Path) -> None:
    """podlog.io/exclude keeps a pod's files from being read at all."""
    noisy = kube_api.add_pod(make_pod("noisy", annotations={"podlog.io/exclude": "true"}))
    quiet = kube_api.add_pod(make_pod("quiet"))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: len(agent.enricher.cache or ()) == 2, "pods listed")
        async with collecting(tmp_path, agent.enricher) as sink:
            write_lines(pod_log(tmp_path / "logs", noisy), ["spam"] * 5)
            write_lines(pod_log(tmp_path / "logs", quiet), ["hello"])
            await eventually(lambda: sink.records("quiet"), "quiet pod's line")
            # The quiet pod's line came through a later scan than the noisy file's
            # first sight, so the exclusion has been decided by now.
            assert sink.records("noisy") == []


async def test_pipeline_keeps_metadata_of_a_pod_deleted_mid_read(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """Lines written after the pod's deletion still get its labels, marked 'cache'."""
    pod = kube_api.add_pod(make_pod("job-xyz", labels={"run": "7"}))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: len(agent.enricher.cache or ()) == 1, "pod listed")
        async with collecting(tmp_path, agent.enricher) as sink:
            path = pod_log(tmp_path / "logs", pod)
            write_lines(path, ["before"])
            await eventually(lambda: sink.records("job-xyz"), "first line")
            kube_api.delete_pod("default", "job-xyz")
            cache = agent.enricher.cache
            assert cache is not None
            await eventually(
                lambda: (e := cache.get(pod["metadata"]["uid"])) and e.state == "deleted",
                "deletion seen",
            )
            write_lines(path, ["after"])
            await eventually(lambda: len(sink.records("job-xyz")) == 2, "second line")
    before, after = sink.records("job-xyz")
    assert before["podlog"]["metadata"] == "api"
    assert after["podlog"]["metadata"] == "cache"
    assert after["kubernetes"]["labels"] == {"run": "7"}


async def test_a_fresh_start_reads_its_backlog_only_once_the_pods_are_listed(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """Lines on disk before the first list answers: none of an excluded pod leaves, and every
    record of the others carries its pod's metadata and its namespace's retention class."""
    kube_api.add_namespace(make_namespace("default", {}, {"podlog.io/retention": "long"}))
    noisy = kube_api.add_pod(make_pod("noisy", annotations={"podlog.io/exclude": "true"}))
    quiet = kube_api.add_pod(make_pod("quiet"))
    write_lines(pod_log(tmp_path / "logs", noisy), ["spam"] * 42)
    write_lines(pod_log(tmp_path / "logs", quiet), [f"hello {i}" for i in range(50)])
    kube_api.fail_next(4)  # the first lists fail: the agent retries a few times
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent, \
            collecting(tmp_path, agent.enricher) as sink:
        await eventually(lambda: len(sink.records("quiet")) == 50, "the quiet pod's backlog")
    assert sink.records("noisy") == []
    records = sink.records("quiet")
    assert {r["podlog"]["metadata"] for r in records} == {"api"}
    assert {r["podlog"]["retention"] for r in records} == {"long"}


async def test_composed_as_the_agent_the_start_wait_ends_with_the_first_list(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """Started one after the other by ``run_services`` (the collector's ``start`` waits before
    any ``run`` is called), the watch still lists: the backlog leaves with API metadata long
    before ``start_wait_seconds``, and no exclusion or retention class is lost."""
    kube_api.add_namespace(make_namespace("default", {}, {"podlog.io/retention": "long"}))
    noisy = kube_api.add_pod(make_pod("noisy", annotations={"podlog.io/exclude": "true"}))
    quiet = kube_api.add_pod(make_pod("quiet"))
    write_lines(pod_log(tmp_path / "logs", noisy), ["spam"] * 42)
    write_lines(pod_log(tmp_path / "logs", quiet), [f"hello {i}" for i in range(50)])
    expired = sample("podlog_collector_kube_start_wait_expired_total")
    config = config_for(kube_api, tmp_path, start_wait_seconds=60.0)
    enricher, services = build_enricher(
        CommonConfig(node_name=NODE, state_dir=str(tmp_path / "state")), config, Health()
    )
    sink = Sink()
    collector = Collector(
        CommonConfig(cluster="test", node_name=NODE, state_dir=str(tmp_path / "state"), http_listen=""),
        CollectorConfig(
            include=[str(tmp_path / "logs" / "pods" / "*" / "*" / "*.log")],
            scan_interval_seconds=0.05, poll_interval_seconds=0.02, use_inotify=False,
        ),
        sink=sink, enricher=enricher,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_services([*services, collector], grace_seconds=10, stop_event=stop)
    )
    try:
        await eventually(lambda: len(sink.records("quiet")) == 50, "the quiet pod's backlog")
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
    assert sink.records("noisy") == []
    assert {r["podlog"]["metadata"] for r in sink.records("quiet")} == {"api"}
    assert {r["podlog"]["retention"] for r in sink.records("quiet")} == {"long"}
    assert sample("podlog_collector_kube_start_wait_expired_total") == expired


async def test_a_start_without_the_api_reads_with_path_metadata_after_its_bound(tmp_path: Path) -> None:
    """The API never answers: reading starts after ``start_wait_seconds``, counted, with path
    metadata."""
    api = FakeKubeApi().start()
    try:
        api.fail_next(1_000_000)
        pod = make_pod("lonely")
        write_lines(pod_log(tmp_path / "logs", pod), ["one", "two"])
        expired = sample("podlog_collector_kube_start_wait_expired_total")
        config = config_for(api, tmp_path, start_wait_seconds=0.3)
        async with running_agent(tmp_path, config) as agent, collecting(tmp_path, agent.enricher) as sink:
            await eventually(lambda: len(sink.records("lonely")) == 2, "the lines after the bound")
        assert {r["podlog"]["metadata"] for r in sink.records("lonely")} == {"path"}
        assert sample("podlog_collector_kube_start_wait_expired_total") == expired + 1
    finally:
        api.stop()


async def lose_api(kube_api: FakeKubeApi, agent: Agent) -> None:
    """Every request fails from now on and the open watches drop, until ``kube_api.heal()``."""
    kube_api.fail_next(1_000_000)
    kube_api.drop_watches()
    await eventually(lambda: not agent.watcher._api.connected, "the watch lost the API")


def held_streams(agent: Agent) -> int:
    """Files the agent's enricher holds now (the gauge is process-wide: other tests' enrichers
    set it too, so it is compared once this one changed it)."""
    return agent.enricher.streams_held


def held_gauge() -> float:
    return sample("podlog_collector_kube_streams_held")


async def test_lines_of_a_pod_created_during_an_outage_wait_for_its_metadata(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """The API goes away, a pod starts and writes, the API comes back with it: every line is
    delivered once, none with path metadata, all with the pod's uid and labels; the pod known
    before the outage is read throughout."""
    old = kube_api.add_pod(make_pod("old", labels={"app": "old"}))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: len(agent.enricher.cache or ()) == 1, "pod listed")
        async with collecting(tmp_path, agent.enricher) as sink:
            await lose_api(kube_api, agent)
            new = kube_api.add_pod(make_pod("new", labels={"app": "new", "tier": "web"}))
            path = pod_log(tmp_path / "logs", new)
            write_lines(path, [f"during {i}" for i in range(20)])
            await eventually(lambda: held_streams(agent) == 1, "the new pod's file held")
            assert held_gauge() == 1
            write_lines(pod_log(tmp_path / "logs", old), ["old during"])
            await eventually(lambda: sink.records("old"), "the known pod's line")
            write_lines(path, [f"during {i}" for i in range(20, 30)])
            assert sink.records("new") == []
            kube_api.heal()
            await eventually(lambda: len(sink.records("new")) == 30, "the held lines")
            write_lines(path, [f"after {i}" for i in range(5)])
            await eventually(lambda: len(sink.records("new")) == 35, "the lines after")
    records = sink.records("new")
    assert [r["message"] for r in records] == (
        [f"during {i}" for i in range(30)] + [f"after {i}" for i in range(5)]
    )
    assert {r["podlog"]["metadata"] for r in records} == {"api"}
    assert {r["kubernetes"]["pod"]["uid"] for r in records} == {new["metadata"]["uid"]}
    assert records[0]["kubernetes"]["labels"] == {"app": "new", "tier": "web"}
    assert held_streams(agent) == 0
    assert held_gauge() == 0


async def test_a_pod_excluded_by_annotation_stays_unread_after_its_hold(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """A pod created during an outage with podlog.io/exclude: its held file is never read once
    the API brings the annotation."""
    kube_api.add_pod(make_pod("quiet"))
    async with running_agent(tmp_path, config_for(kube_api, tmp_path)) as agent:
        await eventually(lambda: len(agent.enricher.cache or ()) == 1, "pod listed")
        async with collecting(tmp_path, agent.enricher) as sink:
            await lose_api(kube_api, agent)
            noisy = kube_api.add_pod(make_pod("noisy", annotations={"podlog.io/exclude": "true"}))
            write_lines(pod_log(tmp_path / "logs", noisy), ["spam"] * 10)
            await eventually(lambda: held_streams(agent) == 1, "the noisy pod's file held")
            kube_api.heal()
            await eventually(lambda: held_streams(agent) == 0, "the hold released")
            assert held_gauge() == 0
            # A line of another pod written after the release is read after the stat pass that
            # applied the exclusion.
            write_lines(pod_log(tmp_path / "logs", kube_api.add_pod(make_pod("late"))), ["hi"])
            await eventually(lambda: sink.records("late"), "a later pod's line")
    assert sink.records("noisy") == []


async def test_a_hold_that_runs_out_ships_path_metadata_and_counts_it(
    kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    """The API stays away past hold_unknown_seconds: the lines leave with path metadata, each
    once, counted as api_unreachable, and the expiry is counted once."""
    async with running_agent(
        tmp_path, config_for(kube_api, tmp_path, hold_unknown_seconds=0.5)
    ) as agent:
        await eventually(lambda: agent.enricher.cache is not None and agent.watcher._api.synced,
                         "pods listed")
        async with collecting(tmp_path, agent.enricher) as sink:
            await lose_api(kube_api, agent)
            expired = sample("podlog_collector_kube_hold_expired_total")
            unreachable = sample(
                "podlog_collector_kube_path_only_records_total", {"reason": "api_unreachable"}
            )
            path = pod_log(tmp_path / "logs", make_pod("orphan"))
            write_lines(path, ["one", "two", "three"])
            await eventually(lambda: len(sink.records("orphan")) == 3, "the lines after the bound")
            write_lines(path, ["four"])
            await eventually(lambda: len(sink.records("orphan")) == 4, "a later line")
    records = sink.records("orphan")
    assert [r["message"] for r in records] == ["one", "two", "three", "four"]
    assert {r["podlog"]["metadata"] for r in records} == {"path"}
    assert sample("podlog_collector_kube_hold_expired_total") == expired + 1
    assert sample(
        "podlog_collector_kube_path_only_records_total", {"reason": "api_unreachable"}
    ) == unreachable + 4
    assert held_streams(agent) == 0
    assert held_gauge() == 0
