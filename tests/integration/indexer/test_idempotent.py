"""Replays and duplicates leave exactly one copy of each record."""

from __future__ import annotations

from opensearchpy import OpenSearch

from podlog import metrics
from tests.integration.indexer.conftest import (
    batches,
    count,
    indexer_config,
    make_records,
    produce,
    running,
    wait_committed,
)


async def test_same_batch_twice_gives_one_copy(kafka_bootstrap: str, opensearch_url: str, unique: str) -> None:
    """A message sent twice, then the whole topic replayed by a new group, keeps one copy each."""
    records = make_records(60)
    values = batches(records, 20)
    await produce(kafka_bootstrap, unique, [*values, values[0]])
    client = OpenSearch(opensearch_url)
    config = indexer_config(kafka_bootstrap, opensearch_url, unique, unique)
    present_before = metrics.sample("podlog_indexer_documents_total", {"outcome": "already_present"})
    async with running(config):
        await wait_committed(kafka_bootstrap, config.kafka.group_id, unique, 4)
    assert count(client, f"{unique}-logs-*") == 60
    assert metrics.sample("podlog_indexer_consumer_lag_messages", {"topic": unique, "partition": "0"}) == 0
    replay = indexer_config(kafka_bootstrap, opensearch_url, unique, unique, group=f"{unique}-replay")
    async with running(replay):
        await wait_committed(kafka_bootstrap, replay.kafka.group_id, unique, 4)
    assert count(client, f"{unique}-logs-*") == 60
    present = metrics.sample("podlog_indexer_documents_total", {"outcome": "already_present"})
    assert present - present_before == 20 + 80
