"""Search settings (the HTTP API and page) and the embedded index's settings."""

from __future__ import annotations

import dataclasses

from podlog.config import setting

__all__ = ["EmbeddedConfig", "SearchConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class SearchConfig:
    """The search API and web page."""

    listen: str = setting("0.0.0.0:8080", "Address the search API and page listen on.")
    backend: str = setting("opensearch", "opensearch, or embedded (single-node mode).")
    opensearch_hosts: list[str] = setting(["http://localhost:9200"], "OpenSearch URLs to search.")
    index_prefix: str = setting("podlog", "Prefix of podlog's indices, as the indexer writes them.")


@dataclasses.dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    """The embedded index of single-node mode (`podlog run`)."""

    path: str = setting("", "Index file; empty means <state_dir>/index.")
