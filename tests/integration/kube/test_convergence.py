"""Whatever happens to the API and the connection, the cache converges to the API's pods."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.fixtures.kube_api import FakeKubeApi, make_pod
from tests.integration.kube.conftest import NODE, config_for, eventually, running_agent


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cache_converges_after_random_changes_and_faults(seed: int, tmp_path: Path) -> None:
    """Adds, edits, deletes, other-node pods, compactions, bookmarks, drops and errors in a
    random order: afterwards the live pods and their labels match the API's view of the node."""
    rng = random.Random(seed)
    with FakeKubeApi() as api:
        expected: dict[str, dict[str, str]] = {}  # uid -> labels of pods on this node
        pods: dict[str, dict[str, object]] = {}
        async with running_agent(tmp_path, config_for(api, tmp_path)) as agent:
            cache = agent.enricher.cache
            assert cache is not None
            for step in range(60):
                op = rng.choice(
                    ["add", "add", "edit", "delete", "other", "compact", "bookmark", "drop", "fail"]
                )
                if op == "add" or (op in ("edit", "delete") and not pods):
                    pod = api.add_pod(make_pod(f"p{step}", labels={"v": "0"}))
                    pods[f"p{step}"] = pod
                elif op == "edit":
                    name = rng.choice(sorted(pods))
                    pod = pods[name]
                    pod["metadata"]["labels"] = {"v": str(step)}  # type: ignore[index]
                    pods[name] = api.update_pod(pod)
                elif op == "delete":
                    name = rng.choice(sorted(pods))
                    del pods[name]
                    api.delete_pod("default", name)
                elif op == "other":
                    api.add_pod(make_pod(f"o{step}", node="node-b"))
                elif op == "compact":
                    api.compact()
                elif op == "bookmark":
                    api.bookmark()
                elif op == "drop":
                    api.drop_watches()
                else:
                    api.fail_next(rng.randint(1, 3))
                if rng.random() < 0.3:
                    # Let the watch run between some changes (interleaving, not syncing).
                    await asyncio.sleep(rng.random() * 0.05)
            expected = {
                str(p["metadata"]["uid"]): dict(p["metadata"]["labels"])  # type: ignore[index]
                for p in pods.values()
            }

            def converged() -> bool:
                live = {e.pod.uid: dict(e.pod.labels) for e in cache.entries() if e.state == "live"}
                return live == expected

            await eventually(converged, "cache equal to the API", timeout=20)
            assert all(e.pod.node == NODE for e in cache.entries())
