"""The fake API server and a running enricher+watch, as the agent composes them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from collector.enrichment import PathMeta
from collector.kube.config import KubernetesConfig
from collector.kube.enrich import KubeEnricher, build_enricher
from collector.kube.watch import PodWatcher
from podlog.config import CommonConfig
from podlog.lifecycle import Health
from podlog.record import Record, SourcePosition, make_record
from shipper.messages import StoredMessages, build_messages
from tests.fixtures.kube_api import FakeKubeApi
from tests.fixtures.servers import wait_until

NODE = "node-a"

FAST = KubernetesConfig(
    backoff_initial_seconds=0.05,
    backoff_max_seconds=0.3,
    snapshot_interval_seconds=0.1,
    request_timeout_seconds=2.0,
)


@pytest.fixture
def kube_api() -> Iterator[FakeKubeApi]:
    """A fake API server on a free port, stopped after the test."""
    api = FakeKubeApi().start()
    try:
        yield api
    finally:
        api.stop()


async def eventually(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` on the loop until it is truthy or ``timeout`` passes."""
    return await wait_until(predicate, timeout, what)


@dataclasses.dataclass
class Agent:
    """The enricher and its watch, running."""

    enricher: KubeEnricher
    watcher: PodWatcher
    task: asyncio.Task[None]

    def enrich(self, meta: PathMeta, *messages: str) -> list[Record]:
        batch = [
            make_record(
                position=SourcePosition("c", NODE, "1:2:ff", 0, i),
                timestamp="2026-11-27T00:00:00.000000000Z",
                timestamp_ns=0,
                message=m,
                stream="stdout",
                path="/var/log/pods/f/0.log",
            )
            for i, m in enumerate(messages)
        ]
        self.enricher.enrich(meta, batch)
        # As the reader of the spool's messages gets them: payloads parsed with the pod's parser.
        return StoredMessages(build_messages(batch)).records()

    def marker(self, meta: PathMeta) -> str:
        return str(self.enrich(meta, "probe")[0]["podlog"]["metadata"])


@asynccontextmanager
async def running_agent(
    state_dir: Path, config: KubernetesConfig
) -> AsyncIterator[Agent]:
    """Start the watch like run_services does, and stop it at the end."""
    enricher, services = build_enricher(
        CommonConfig(node_name=NODE, state_dir=str(state_dir)), config, Health()
    )
    assert isinstance(enricher, KubeEnricher)
    (watcher,) = services
    assert isinstance(watcher, PodWatcher)
    await watcher.start()
    task = asyncio.create_task(watcher.run())
    try:
        yield Agent(enricher, watcher, task)
    finally:
        await watcher.stop()
        await asyncio.wait_for(task, timeout=10)


def config_for(api: FakeKubeApi, tmp_path: Path, **overrides: Any) -> KubernetesConfig:
    """FAST settings pointed at ``api`` through a kubeconfig file."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    return dataclasses.replace(FAST, kubeconfig=str(kubeconfig), **overrides)
