"""Documents the cluster refuses are salvaged or dead-lettered, and the partition keeps moving."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import yaml
from click.testing import CliRunner
from opensearchpy import OpenSearch

from indexer.commands import dlq
from podlog.record import encode_batch
from tests.integration.indexer.conftest import (
    count,
    index_through,
    make_records,
    produce,
)
from tests.integration.indexer.proxy import FaultyProxy


def _write_config(path: Path, url: str, prefix: str) -> Path:
    path.write_text(yaml.safe_dump({
        "indexer": {"opensearch": {"hosts": [url], "index_prefix": prefix}},
        # The records are stamped on a fixed date: classes that keep a century never expire them.
        "retention": {"classes": {"short": 36500, "standard": 36500, "long": 36500}},
    }))  # fmt: skip
    return path


def _source(client: OpenSearch, pattern: str, doc_id: str) -> dict[str, Any] | None:
    hits = client.search(index=pattern, body={"query": {"ids": {"values": [doc_id]}}})
    found = hits["hits"]["hits"]
    return found[0]["_source"] if found else None


async def test_conflicts_are_salvaged_or_dead_lettered_and_replayable(
    kafka_bootstrap: str, opensearch_url: str, opensearch_flavour: str, unique: str, tmp_path: Path
) -> None:
    """A field of the wrong type is moved aside (or the record dead-lettered), an undecodable
    message and an unsalvageable document land in the DLQ with reason and Kafka position,
    offsets move past all of them, and `dlq replay` indexes what now succeeds."""
    records = make_records(30)
    bad_offset, bad_level, refused = records[3], records[7], records[11]
    bad_offset["log"]["offset"] = "not-a-number"
    bad_level["level"] = {"severity": "high"}
    refused_id = refused["event"]["id"]
    future = orjson.dumps({"schema": 99, "records": []})
    await produce(
        kafka_bootstrap,
        unique,
        [encode_batch(records[:10]), future, encode_batch(records[10:20]), encode_batch(records[20:])],
    )
    proxy = await FaultyProxy(opensearch_url).start()
    proxy.item_rule = lambda index, doc_id, attempt: (
        (400, {"type": "illegal_argument_exception", "reason": "injected: document refused"})
        if doc_id == refused_id and "-logs-" in index
        else None
    )
    await index_through(proxy, kafka_bootstrap, unique, 4)

    client = OpenSearch(opensearch_url)
    logs = f"{unique}-logs-*"
    assert count(client, logs) == 29
    offset_doc = _source(client, logs, bad_offset["event"]["id"])
    level_doc = _source(client, logs, bad_level["event"]["id"])
    assert offset_doc is not None
    assert level_doc is not None
    if opensearch_flavour != "noida":  # noida accepts any value for any type
        assert offset_doc["podlog"]["salvaged"] == ["log.offset=not-a-number"]
        assert "offset" not in offset_doc["log"]
        assert level_doc["podlog"]["salvaged"] == ['level={"severity":"high"}']

    runner = CliRunner()
    conf = _write_config(tmp_path / "podlog.yaml", opensearch_url, unique)
    listed = await asyncio.to_thread(runner.invoke, dlq, ["list", "--config", str(conf), "--json"])
    assert listed.exit_code == 0, listed.output
    letters = {row["id"]: row for row in map(orjson.loads, listed.output.splitlines())}
    assert set(letters) == {refused_id, f"{unique}:0:1"}
    assert "injected: document refused" in letters[refused_id]["reason"]
    assert letters[refused_id]["kafka"] == {"topic": unique, "partition": 0, "offset": 2}
    assert letters[refused_id]["record"] == refused
    assert "unknown record schema version 99" in letters[f"{unique}:0:1"]["reason"]

    replayed = await asyncio.to_thread(runner.invoke, dlq, ["replay", "--config", str(conf)])
    assert replayed.exit_code == 0, replayed.output
    assert "1 indexed" in replayed.output and "1 not replayable" in replayed.output
    assert count(client, logs) == 30
    again = await asyncio.to_thread(runner.invoke, dlq, ["list", "--config", str(conf), "--json"])
    assert [orjson.loads(line)["id"] for line in again.output.splitlines()] == [f"{unique}:0:1"]
