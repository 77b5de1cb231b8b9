"""Put records into a search backend the way production does, for the search tests.

OpenSearch: the indexer's own templates (``indexer.templates.ensure_templates``)
and daily index names, documents keyed by ``event.id``, refreshed at once.
Embedded: ``EmbeddedIndex.write``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from indexer.config import OpenSearchConfig
from indexer.templates import ensure_templates, index_name
from podlog.record import Record

_prefixes = itertools.count()


def unique_prefix(tag: str) -> str:
    """An index prefix no other test in this session uses."""
    return f"t{tag}{next(_prefixes)}"


def opensearch_load(url: str, prefix: str, records: Sequence[Record]) -> None:
    """Create podlog's templates under ``prefix`` and index ``records``, searchable on return."""
    client = OpenSearch([url], timeout=30)
    try:
        config = OpenSearchConfig(hosts=[url], index_prefix=prefix, number_of_replicas=0)
        ensure_templates(client, config)
        opensearch_add(client, prefix, records)
    finally:
        client.close()


def opensearch_add(client: OpenSearch, prefix: str, records: Sequence[Record]) -> None:
    """Index ``records`` by ``event.id`` into their daily indices and refresh."""
    if not records:
        return
    body: list[dict[str, Any]] = []
    for record in records:
        index = index_name(prefix, "standard", int(record["timestamp_ns"]))
        body.append({"index": {"_index": index, "_id": record["event"]["id"]}})
        body.append(record)
    result = client.bulk(body=body, refresh="true")
    assert not result["errors"], result


def embedded_available() -> str | None:
    """None when the embedded index imports, else why not."""
    try:
        from search.backends.embedded import EmbeddedIndex  # noqa: F401
    except ImportError as exc:
        return f"search.backends.embedded is not importable yet: {exc}"
    return None


async def embedded_open(directory: Path) -> Any:
    """A started embedded index in ``directory``."""
    from podlog.retention import RetentionConfig
    from search.backends.embedded import EmbeddedIndex
    from search.config import EmbeddedConfig

    # Classes that keep a century: the fixed-date test records never expire on arrival.
    retention = RetentionConfig(classes={"short": 36500.0, "standard": 36500.0, "long": 36500.0})
    index = EmbeddedIndex(EmbeddedConfig(path=str(directory / "index")), retention, directory)
    start = getattr(index, "start", None)
    if start is not None:
        await start()
    return index


async def embedded_close(index: Any) -> None:
    """Stop and close an index from :func:`embedded_open`."""
    stop = getattr(index, "stop", None)
    if stop is not None:
        await stop()
    await index.close()
