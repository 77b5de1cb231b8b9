"""A batch is bounded by bytes even when one fetch returns a whole backlog."""

from __future__ import annotations

import dataclasses

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


async def test_a_backlog_is_indexed_in_batches_of_batch_max_bytes(
    kafka_bootstrap: str, opensearch_any: str, unique: str
) -> None:
    """20 messages waiting before the indexer starts arrive in one fetch; no batch holds more than the limit."""
    values = batches(make_records(400), 20)
    await produce(kafka_bootstrap, unique, values)
    limit = 2 * max(len(v) for v in values) + 1  # every batch is 3 messages at most
    before = metrics.sample("podlog_indexer_batches_committed_total")
    config = indexer_config(kafka_bootstrap, opensearch_any, unique, unique)
    config = dataclasses.replace(config, kafka=dataclasses.replace(config.kafka, batch_max_bytes=limit))
    async with running(config):
        await wait_committed(kafka_bootstrap, config.kafka.group_id, unique, len(values))
    assert metrics.sample("podlog_indexer_batches_committed_total") - before >= len(values) / 3
    assert count(OpenSearch(opensearch_any), f"{unique}-logs-*") == 400
