"""Templates install idempotently and give the mapping search relies on."""

from __future__ import annotations

import dataclasses

from opensearchpy import OpenSearch

from indexer.config import OpenSearchConfig
from indexer.templates import detect_capabilities, ensure_templates, index_name, install_templates
from tests.integration.indexer.conftest import make_records


def test_templates_are_written_once_and_rewritten_on_change(opensearch_url: str, unique: str) -> None:
    """A second install writes nothing; a changed setting rewrites only the log template."""
    client = OpenSearch(opensearch_url)
    config = OpenSearchConfig(hosts=[opensearch_url], index_prefix=unique)
    caps = detect_capabilities(client, config)
    assert caps.flat_type in ("flat_object", "flattened")
    assert install_templates(client, config, caps) == [f"{unique}-logs", f"{unique}-dlq"]
    assert install_templates(client, config, caps) == []
    changed = dataclasses.replace(config, message_ignore_above=100)
    assert install_templates(client, changed, caps) == [f"{unique}-logs"]


def test_indexed_records_get_the_production_mapping(opensearch_url: str, unique: str) -> None:
    """Records bulk-indexed after ensure_templates are found by label, namespace and text,
    sort by timestamp_ns, and keep nanosecond @timestamp in the source."""
    client = OpenSearch(opensearch_url)
    config = OpenSearchConfig(hosts=[opensearch_url], index_prefix=unique, number_of_replicas=0)
    ensure_templates(client, config)
    records = make_records(5)
    body = []
    for record in records:
        index = index_name(unique, "standard", record["timestamp_ns"])
        body += [{"create": {"_index": index, "_id": record["event"]["id"]}}, record]
    assert client.bulk(body=body)["errors"] is False
    index = index_name(unique, "standard", records[0]["timestamp_ns"])
    client.indices.refresh(index=index)
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["@timestamp"]["type"] == "date_nanos"
    assert mapping["kubernetes"]["properties"]["labels"]["type"] == config_flat(client, config)
    query = {
        "query": {
            "bool": {
                "filter": [
                    {"term": {"kubernetes.labels.app": "web"}},
                    {"term": {"kubernetes.namespace": "shop"}},
                    {"match": {"message": "items"}},
                ]
            }
        },
        "sort": [{"timestamp_ns": "desc"}],
    }
    hits = client.search(index=f"{unique}-logs-*", body=query)["hits"]["hits"]
    assert [h["_id"] for h in hits] == [r["event"]["id"] for r in reversed(records)]
    assert hits[-1]["_source"]["@timestamp"] == "2026-11-27T00:00:00.000000000Z"


def config_flat(client: OpenSearch, config: OpenSearchConfig) -> str:
    """The flat type the cluster was detected to take."""
    return detect_capabilities(client, config).flat_type
