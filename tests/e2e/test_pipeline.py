"""The whole pipeline as real processes: file -> agent -> Kafka -> indexer -> OpenSearch -> search API."""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fixtures.servers import ManagedProcess, free_port, get_json, start_podlog, wait_for

LINES = 1000
NAMESPACE = "shop"
POD = "checkout-7d9f8b6c5-x2x9z"
CONTAINER = "api"


def write_cri_log(path: Path, count: int) -> list[str]:
    """Write ``count`` CRI lines (a few split into P/F partials); return the messages."""
    messages = []
    base_ns = time.time_ns() - count * 1_000_000
    with path.open("w") as out:
        for i in range(count):
            ts = base_ns + i * 1_000_000
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1_000_000_000))
            stamp += f".{ts % 1_000_000_000:09d}Z"
            message = f"request {i:04d} GET /cart/{i} status=200"
            stream = "stderr" if i % 10 == 0 else "stdout"
            if i % 97 == 0:
                half = len(message) // 2
                out.write(f"{stamp} {stream} P {message[:half]}\n")
                out.write(f"{stamp} {stream} F {message[half:]}\n")
            else:
                out.write(f"{stamp} {stream} F {message}\n")
            messages.append(message)
    return messages


@pytest.fixture
def pipeline(
    tmp_path: Path, kafka_bootstrap: str, opensearch_any: str
) -> Iterator[tuple[str, list[str], list[ManagedProcess]]]:
    """agent, indexer and search as subprocesses against the fixture servers."""
    logs = tmp_path / "containers"
    logs.mkdir()
    container_id = secrets.token_hex(32)
    messages = write_cri_log(logs / f"{POD}_{NAMESPACE}_{CONTAINER}-{container_id}.log", LINES)
    run_id = secrets.token_hex(4)
    search_port = free_port()
    config = {
        "podlog": {"cluster": "e2e", "node_name": "node-1", "log_format": "json", "http_listen": ""},
        "collector": {"include": [str(logs / "*.log")]},
        "kubernetes": {"enabled": False},
        "shipper": {"kafka": {"bootstrap_servers": kafka_bootstrap, "topic": f"e2e-{run_id}"}},
        "indexer": {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "topics": [f"e2e-{run_id}"],
                "group_id": f"e2e-{run_id}",
            },
            "opensearch": {"hosts": [opensearch_any], "index_prefix": f"e2e{run_id}"},
        },
        "search": {
            "listen": f"127.0.0.1:{search_port}",
            "opensearch_hosts": [opensearch_any],
            "index_prefix": f"e2e{run_id}",
            "auth": {"mode": "none"},
        },
    }
    procs: list[ManagedProcess] = []
    for role in ("agent", "indexer", "search"):
        role_config = {**config, "podlog": {**config["podlog"], "state_dir": str(tmp_path / f"state-{role}")}}
        path = tmp_path / f"{role}.yaml"
        path.write_text(yaml.safe_dump(role_config))
        procs.append(start_podlog([role, "--config", str(path)], tmp_path / "logs"))
    try:
        yield f"http://127.0.0.1:{search_port}", messages, procs
    finally:
        for proc in procs:
            proc.stop()


def _alive(procs: list[ManagedProcess]) -> None:
    for proc in procs:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")


@pytest.mark.slow
def test_thousand_cri_lines_arrive_in_order_with_path_metadata(
    pipeline: tuple[str, list[str], list[ManagedProcess]],
) -> None:
    """All 1,000 lines are searchable, once each, in order, with namespace/pod/container from the path."""
    base, messages, procs = pipeline
    query = urllib.parse.urlencode(
        {"namespace": NAMESPACE, "size": 2000, "start": "now-1d", "end": "now+1h"}
    )

    def all_indexed() -> list[dict[str, object]] | None:
        _alive(procs)
        page = get_json(f"{base}/api/search?{query}")
        hits: list[dict[str, object]] = page["hits"]
        return hits if len(hits) >= LINES else None

    hits = wait_for(all_indexed, timeout=90, what="1000 lines in the search API", interval=0.5)
    assert len(hits) == LINES
    oldest_first = list(reversed(hits))
    assert [h["message"] for h in oldest_first] == messages
    assert len({h["event"]["id"] for h in hits}) == LINES  # type: ignore[index]
    for hit in hits:
        k8s = hit["kubernetes"]
        assert k8s["namespace"] == NAMESPACE  # type: ignore[index]
        assert k8s["pod"]["name"] == POD  # type: ignore[index]
        assert k8s["container"]["name"] == CONTAINER  # type: ignore[index]
    assert {h["stream"] for h in hits} == {"stdout", "stderr"}
