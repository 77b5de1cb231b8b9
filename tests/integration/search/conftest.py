"""Backends under test: OpenSearch (each fixture flavour) and the embedded index.

``backend_kind`` is a parameter of every test that uses :func:`backend`; with
``opensearch_url`` also in the closure, the embedded variant would run once
per OpenSearch flavour, so the duplicates are deselected here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from podlog.record import Record
from search.backends.base import SearchBackend
from search.backends.opensearch import OpenSearchBackend
from tests.conftest import OPENSEARCH_FLAVOURS
from tests.fixtures.records import corpus
from tests.integration.search.loading import (
    embedded_available,
    embedded_close,
    embedded_open,
    opensearch_add,
    opensearch_load,
    unique_prefix,
)

CORPUS = corpus()
"""The records every contract test starts from (300, namespaces a and b)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (
            params.get("backend_kind") == "embedded"
            and "opensearch_url" in params
            and params["opensearch_url"] != OPENSEARCH_FLAVOURS[0]
        ):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="module")
def corpus_prefix(opensearch_url: str) -> str:
    """An index prefix holding :data:`CORPUS` on this OpenSearch, loaded once per module."""
    prefix = unique_prefix("corpus")
    opensearch_load(opensearch_url, prefix, CORPUS)
    return prefix


@dataclass
class LoadedBackend:
    """A backend holding some records, and a way to add more."""

    backend: SearchBackend
    kind: str
    records: list[Record]
    _add: Any = field(repr=False)

    async def add(self, records: Sequence[Record]) -> None:
        """Index ``records``; searchable when this returns."""
        await self._add(records)
        self.records.extend(records)


@pytest.fixture(params=["opensearch", "embedded"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Which backend a contract test runs against."""
    kind = str(request.param)
    if kind == "embedded":
        reason = embedded_available()
        if reason:
            pytest.skip(reason)
    return kind


@pytest.fixture
async def backend(
    backend_kind: str, opensearch_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LoadedBackend]:
    """A backend holding :data:`CORPUS`; the OpenSearch copy is shared by the module, so
    tests that add records ask for ``fresh_backend`` instead."""
    if backend_kind == "opensearch":
        prefix = request.getfixturevalue("corpus_prefix")
        async for loaded in _opensearch(opensearch_url, prefix, CORPUS, shared=True):
            yield loaded
    else:
        async for loaded in _embedded(tmp_path, CORPUS):
            yield loaded


@pytest.fixture
async def fresh_backend(backend_kind: str, opensearch_url: str, tmp_path: Path) -> AsyncIterator[LoadedBackend]:
    """An empty backend of its own, for tests that write."""
    if backend_kind == "opensearch":
        prefix = unique_prefix("fresh")
        await asyncio.to_thread(opensearch_load, opensearch_url, prefix, [])
        async for loaded in _opensearch(opensearch_url, prefix, [], shared=False):
            yield loaded
    else:
        async for loaded in _embedded(tmp_path, []):
            yield loaded


async def _opensearch(url: str, prefix: str, records: list[Record], *, shared: bool) -> AsyncIterator[LoadedBackend]:
    client = OpenSearch([url], timeout=30)
    backend = OpenSearchBackend([url], prefix)

    async def add(new: Sequence[Record]) -> None:
        if shared:
            raise AssertionError("the shared corpus is read-only; use fresh_backend")
        await asyncio.to_thread(opensearch_add, client, prefix, new)

    try:
        yield LoadedBackend(backend, "opensearch", list(records), add)
    finally:
        await backend.close()
        client.close()


async def _embedded(tmp_path: Path, records: list[Record]) -> AsyncIterator[LoadedBackend]:
    index = await embedded_open(tmp_path)
    if records:
        await index.write(records)
    try:
        yield LoadedBackend(index, "embedded", list(records), index.write)
    finally:
        await embedded_close(index)
