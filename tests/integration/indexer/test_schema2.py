"""Schema 1 and schema 2 messages of the same lines on one topic, as during an upgrade of the agents."""

from __future__ import annotations

from opensearchpy import OpenSearch

from podlog import metrics
from podlog.wire import batch_from_records, encode
from tests.integration.indexer.conftest import (
    batches,
    count,
    indexer_config,
    make_records,
    produce,
    running,
    wait_committed,
)


async def test_an_upgrade_mid_stream_overwrites_and_a_damaged_schema_2_message_is_dead_lettered(
    kafka_bootstrap: str, opensearch_url: str, unique: str,
) -> None:
    """Lines 0-59 from an old agent (schema 1), lines 30-89 from a new one (schema 2) after it
    replayed from its checkpoint: one document per line, a replayed line already present (the
    same event.id) and a new one parsed by the indexer; a schema 2 message cut short goes to the
    dead-letter index with its reason and the partition moves past it."""
    records = make_records(90)
    records[70]["message"] = '{"level":"error","msg":"charge failed"}'
    old = batches(records[:60], 20)
    new = [encode(batch_from_records(records[i : i + 20])) for i in range(30, 90, 20)]
    damaged = new[0][:-5]
    await produce(kafka_bootstrap, unique, [*old, damaged, *new])
    dead_before = metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": "schema"})
    present_before = metrics.sample("podlog_indexer_documents_total", {"outcome": "already_present"})
    config = indexer_config(kafka_bootstrap, opensearch_url, unique, unique)
    async with running(config):
        await wait_committed(kafka_bootstrap, config.kafka.group_id, unique, len(old) + 1 + len(new))
    client = OpenSearch(opensearch_url)
    assert count(client, f"{unique}-logs-*") == 90
    hit = client.search(index=f"{unique}-logs-*", body={"query": {"ids": {"values": [records[70]["event"]["id"]]}}})
    (doc,) = [h["_source"] for h in hit["hits"]["hits"]]
    assert doc["podlog"]["schema"] == 2
    assert doc["level"] == "error" and doc["json"]["msg"] == "charge failed"
    assert metrics.sample("podlog_indexer_messages_dead_lettered_total", {"reason": "schema"}) == dead_before + 1
    assert metrics.sample("podlog_indexer_documents_total", {"outcome": "already_present"}) == present_before + 30
    assert count(client, f"{unique}-dlq") == 1
