"""Where rules made through the API are kept: the index store of the backend.

Over OpenSearch, documents of the ``<index_prefix>-alert-rules`` index (one per
rule, its mapping stored unindexed as JSON); on the embedded index, a SQLite
file beside the index (``alert-rules.db``).  Every search replica re-reads the
store at each reload, so a rule made on one replica runs on all of them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from search.errors import BackendError

__all__ = ["OpenSearchRuleStore", "RuleStore", "SqliteRuleStore"]

T = TypeVar("T")


class RuleStore(Protocol):
    """Rule mappings by name."""

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every stored rule."""

    async def put(self, name: str, body: dict[str, Any]) -> None:
        """Create or replace ``name``."""

    async def delete(self, name: str) -> bool:
        """Remove ``name``; False when it was not there."""

    async def close(self) -> None:
        """Release connections."""


class SqliteRuleStore:
    """Rules in one SQLite table of their own file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def _with(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one transaction on a connection of its own (called in a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            with connection:
                connection.execute("CREATE TABLE IF NOT EXISTS alert_rules (name TEXT PRIMARY KEY, body TEXT NOT NULL)")
                return work(connection)
        finally:
            connection.close()

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every stored rule."""
        async with self._lock:
            rows = await asyncio.to_thread(
                self._with, lambda c: c.execute("SELECT name, body FROM alert_rules ORDER BY name").fetchall()
            )
        return {str(name): json.loads(body) for name, body in rows}

    async def put(self, name: str, body: dict[str, Any]) -> None:
        """Create or replace ``name``."""
        text = json.dumps(body)
        async with self._lock:
            await asyncio.to_thread(
                self._with,
                lambda c: c.execute("INSERT OR REPLACE INTO alert_rules (name, body) VALUES (?, ?)", (name, text)),
            )

    async def delete(self, name: str) -> bool:
        """Remove ``name``; False when it was not there."""
        async with self._lock:
            return await asyncio.to_thread(
                self._with, lambda c: c.execute("DELETE FROM alert_rules WHERE name = ?", (name,)).rowcount > 0
            )

    async def close(self) -> None:
        """Nothing stays open between calls."""


class OpenSearchRuleStore:
    """Rules as documents of one OpenSearch index, written with refresh so every replica reads them at once."""

    def __init__(
        self, hosts: list[str], index: str, *, username: str = "", password: str = "",
        verify: bool | str = True, timeout: float = 10.0,
    ) -> None:
        self.base = hosts[0].rstrip("/")
        self.index = index
        auth = httpx.BasicAuth(username, password) if username else None
        self._client = httpx.AsyncClient(auth=auth, verify=verify, timeout=timeout)

    async def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            return await self._client.request(method, f"{self.base}/{path}", json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"alert rule store: {exc!r}") from exc

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every stored rule (an index that does not exist yet holds none)."""
        reply = await self._call("POST", f"{self.index}/_search", {"size": 10000, "query": {"match_all": {}}})
        if reply.status_code == 404:
            return {}
        if not reply.is_success:
            raise BackendError(f"alert rule store: HTTP {reply.status_code}: {reply.text[:200]}")
        hits = reply.json().get("hits", {}).get("hits", [])
        return {str(hit["_source"]["name"]): json.loads(hit["_source"]["body"]) for hit in hits}

    async def put(self, name: str, body: dict[str, Any]) -> None:
        """Create or replace ``name``; the index is created on first use."""
        document = {"name": name, "body": json.dumps(body)}
        reply = await self._call("PUT", f"{self.index}/_doc/{quote(name, safe='')}?refresh=true", document)
        if not reply.is_success:
            raise BackendError(f"alert rule store: HTTP {reply.status_code}: {reply.text[:200]}")

    async def delete(self, name: str) -> bool:
        """Remove ``name``; False when it was not there."""
        reply = await self._call("DELETE", f"{self.index}/_doc/{quote(name, safe='')}?refresh=true")
        if reply.status_code == 404:
            return False
        if not reply.is_success:
            raise BackendError(f"alert rule store: HTTP {reply.status_code}: {reply.text[:200]}")
        return True

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
