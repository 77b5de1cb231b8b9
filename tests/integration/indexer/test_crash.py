"""An indexer killed after its bulk write but before its commit replays without duplicates."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml
from opensearchpy import OpenSearch

from podlog import metrics
from tests.fixtures.servers import ManagedProcess
from tests.integration.indexer.conftest import (
    batches,
    committed,
    count,
    indexer_config,
    make_records,
    produce,
    running,
    wait_committed,
    wait_until,
)
from tests.integration.indexer.proxy import FaultyProxy


async def test_kill_9_between_bulk_and_commit_replays_without_duplicates(
    kafka_bootstrap: str, opensearch_any: str, unique: str, tmp_path: Path
) -> None:
    """`podlog indexer` is killed with SIGKILL while its bulk reply is held back (documents
    written, offsets not committed); the next indexer of the group replays the batch and
    finds every document already present."""
    records = make_records(120)
    await produce(kafka_bootstrap, unique, batches(records, 30))
    proxy = await FaultyProxy(opensearch_any).start()
    proxy.hold_replies = True
    group = f"{unique}-group"
    config_path = tmp_path / "podlog.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "podlog": {"http_listen": "", "log_format": "json"},
                "indexer": {
                    "kafka": {
                        "bootstrap_servers": kafka_bootstrap,
                        "topics": [unique],
                        "group_id": group,
                        "batch_max_wait_seconds": 0.5,
                        "session_timeout_ms": 6000,
                    },
                    "opensearch": {
                        "hosts": [proxy.url],
                        "index_prefix": unique,
                        "number_of_replicas": 0,
                    },
                },
            }
        )
    )
    log_path = tmp_path / "indexer.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", "podlog", "indexer", "--config", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    process = ManagedProcess(name="podlog-indexer", popen=popen, log_path=log_path)
    client = OpenSearch(opensearch_any)
    try:
        await wait_until(
            lambda: proxy.items_forwarded >= 120 or popen.poll() is not None,
            60,
            "the indexer's bulk requests to reach the cluster",
        )
        assert popen.poll() is None, process.tail()
        assert count(client, f"{unique}-logs-*") == 120
    finally:
        process.stop(signal.SIGKILL)
        await proxy.close()
    assert await committed(kafka_bootstrap, group, unique) == -1

    present_before = metrics.sample("podlog_indexer_documents_total", {"outcome": "already_present"})
    config = indexer_config(kafka_bootstrap, opensearch_any, unique, unique, group=group)
    async with running(config):
        await wait_committed(kafka_bootstrap, group, unique, 4, timeout=60)
    assert count(client, f"{unique}-logs-*") == 120
    present = metrics.sample("podlog_indexer_documents_total", {"outcome": "already_present"})
    assert present - present_before == 120
