"""The OpenSearch backend: podlog's indices as the indexer writes them.

Searches the index pattern ``{index_prefix}-logs-*`` (missing indices are an
empty result, not an error), newest first by ``(timestamp_ns, log.offset,
event.id)`` with ``search_after`` paging.  Context walks one file's lines in
file order by ``(log.generation, log.offset)``, so equal timestamps and clock
skew cannot reorder them.  opensearch-py's client is synchronous; its calls
run on a dedicated thread pool so long-polling tails never starve the
default executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors
from opensearchpy.serializer import JSONSerializer

from podlog.logging import get_logger
from podlog.record import Record
from search.backends.base import (
    FILTER_FIELDS,
    ContextResult,
    Cursor,
    HistogramBucket,
    SearchPage,
    SearchRequest,
)
from search.backends.opensearch_dsl import (
    NEWEST_FIRST,
    OLDEST_FIRST,
    build_filter,
    cursor_of,
    namespace_clause,
    query_from_tree,
)
from search.errors import BackendError
from search.query import QueryError

__all__ = ["OpenSearchBackend"]

log = get_logger("search.opensearch")

T = TypeVar("T")

TOTAL_HITS_CAP = 100_000
"""Totals above this are reported as a lower bound; counting further costs every query."""

_WORKERS = 16


class _OrjsonSerializer(JSONSerializer):
    """Request and response bodies through orjson: pages of records decode several times faster."""

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            raise os_errors.SerializationError(s, exc) from exc

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str):
            return data
        try:
            return orjson.dumps(data).decode()
        except TypeError as exc:  # a value orjson cannot encode: the stock encoder knows more
            log.debug("orjson_encode_fallback", error=str(exc))
            return super().dumps(data)


class OpenSearchBackend:
    """:class:`search.backends.base.SearchBackend` over an OpenSearch cluster."""

    name = "opensearch"

    def __init__(
        self,
        hosts: Sequence[str],
        index_prefix: str = "podlog",
        *,
        client: OpenSearch | None = None,
        request_timeout: float = 30.0,
        username: str = "",
        password: str = "",
        verify_certs: bool = True,
        ca_certs: str = "",
    ) -> None:
        self.index_pattern = f"{index_prefix}-logs-*"
        if client is None:
            options: dict[str, Any] = {
                "timeout": request_timeout,
                "pool_maxsize": _WORKERS,
                "max_retries": 1,
                "verify_certs": verify_certs,
                "serializer": _OrjsonSerializer(),
            }
            if username:
                options["http_auth"] = (username, password)
            if ca_certs:
                options["ca_certs"] = ca_certs
            client = OpenSearch(list(hosts), **options)
        self._client = client
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="opensearch")
        self._closed = False

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, **kwargs))
        except os_errors.ConnectionTimeout as exc:
            raise BackendError(f"OpenSearch timed out: {exc}", public="the index did not answer in time") from exc
        except os_errors.ConnectionError as exc:
            raise BackendError(f"OpenSearch is unreachable: {exc}", public="the index is unreachable") from exc
        except os_errors.RequestError as exc:
            # The reason may name indices and nodes: it goes to the log, the client reads a summary.
            log.warning("query_refused_by_index", error=_reason(exc))
            raise QueryError("the index refused the query; simplify it") from exc
        except os_errors.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            retriable = status == 429 or status >= 500
            raise BackendError(
                f"OpenSearch answered {exc.status_code}: {_reason(exc)}",
                retriable=retriable,
                public="the index is busy; try again" if status == 429 else None,
            ) from exc

    async def _search(self, body: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        body = {**body, "timeout": f"{max(1, int(timeout_seconds * 1000))}ms"}
        result: dict[str, Any] = await self._call(
            self._client.search,
            index=self.index_pattern,
            body=body,
            params={
                "ignore_unavailable": "true",
                "allow_no_indices": "true",
                "request_timeout": timeout_seconds + 5,
            },
        )
        if result.get("timed_out"):
            message = f"the search took longer than {timeout_seconds:g}s; narrow it"
            raise BackendError(message, public=message)
        return result

    def _bool(self, request: SearchRequest, *, with_range: bool = True) -> dict[str, Any]:
        return {
            "bool": {
                "must": [query_from_tree(request.query)],
                "filter": build_filter(request, with_range=with_range),
            }
        }

    async def search(self, request: SearchRequest) -> SearchPage:
        """Matching records, newest first, one page."""
        body: dict[str, Any] = {
            "query": self._bool(request),
            "sort": NEWEST_FIRST,
            "size": request.size,
            "track_total_hits": TOTAL_HITS_CAP,
        }
        if request.search_after is not None:
            body["search_after"] = list(request.search_after)
        result = await self._search(body, request.timeout_seconds)
        hits = [hit["_source"] for hit in result["hits"]["hits"]]
        total_obj = result["hits"].get("total") or {}
        total = int(total_obj.get("value", len(hits)))
        exact = total_obj.get("relation", "eq") == "eq"
        next_cursor = cursor_of(hits[-1]) if len(hits) == request.size and hits else None
        return SearchPage(hits=hits, total=total, total_exact=exact, next_cursor=next_cursor)

    async def histogram(self, request: SearchRequest, interval_ns: int) -> list[HistogramBucket]:
        """Counts per ``interval_ns`` bucket (aligned to multiples of it), zero buckets omitted."""
        body: dict[str, Any] = {
            "query": self._bool(request),
            "size": 0,
            "track_total_hits": False,
            "aggs": {
                "over_time": {"histogram": {"field": "timestamp_ns", "interval": interval_ns, "min_doc_count": 1}}
            },
        }
        result = await self._search(body, request.timeout_seconds)
        buckets: dict[int, int] = {}
        for bucket in result.get("aggregations", {}).get("over_time", {}).get("buckets", []):
            # Some servers return keys as doubles; snap back to the interval grid.
            start = round(float(bucket["key"]) / interval_ns) * interval_ns
            buckets[start] = buckets.get(start, 0) + int(bucket["doc_count"])
        return [HistogramBucket(start_ns=k, count=v) for k, v in sorted(buckets.items())]

    async def top_values(self, request: SearchRequest, field: str, size: int) -> list[tuple[str, int]]:
        """Most frequent values of a filter field among matches, most frequent first."""
        path = FILTER_FIELDS.get(field)
        if path is None:
            raise QueryError(f"unknown field {field!r}; valid: {', '.join(FILTER_FIELDS)}")
        body: dict[str, Any] = {
            "query": self._bool(request),
            "size": 0,
            "track_total_hits": False,
            "aggs": {"top": {"terms": {"field": path, "size": size}}},
        }
        result = await self._search(body, request.timeout_seconds)
        buckets = result.get("aggregations", {}).get("top", {}).get("buckets", [])
        pairs = [(str(b["key"]), int(b["doc_count"])) for b in buckets]
        return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))[:size]

    async def context(
        self,
        event_id: str,
        before: int,
        after: int,
        allowed_namespaces: Sequence[str] | None,
    ) -> ContextResult | None:
        """Lines around ``event_id`` from its file and stream, in file order."""
        access = namespace_clause(allowed_namespaces)
        access_filter = [access] if access is not None else []
        found = await self._search(
            {
                "query": {"bool": {"filter": [{"term": {"event.id": event_id}}, *access_filter]}},
                "size": 1,
            },
            10.0,
        )
        hits = found["hits"]["hits"]
        if not hits:
            return None
        anchor: Record = hits[0]["_source"]
        log_meta = anchor.get("log") or {}
        identity = (log_meta.get("file") or {}).get("identity")
        position = [int(log_meta.get("generation") or 0), int(log_meta.get("offset") or 0)]
        same_stream: list[dict[str, Any]] = [
            {"term": {"log.file.identity": identity}},
            {"term": {"stream": anchor.get("stream")}},
            *access_filter,
        ]

        async def side(count: int, order: str) -> list[Record]:
            if count <= 0:
                return []
            result = await self._search(
                {
                    "query": {"bool": {"filter": same_stream}},
                    "sort": [
                        {"log.generation": {"order": order, "unmapped_type": "long"}},
                        {"log.offset": {"order": order, "unmapped_type": "long"}},
                    ],
                    "search_after": position,
                    "size": count,
                },
                10.0,
            )
            return [hit["_source"] for hit in result["hits"]["hits"]]

        older, newer = await asyncio.gather(side(before, "desc"), side(after, "asc"))
        older.reverse()
        return ContextResult(before=older, anchor=anchor, after=newer)

    async def tail(self, request: SearchRequest, after: Cursor | None) -> tuple[list[Record], Cursor | None]:
        """Matches newer than ``after``, oldest first, and the newest cursor seen."""
        if after is None:
            body: dict[str, Any] = {"query": self._bool(request), "sort": NEWEST_FIRST, "size": 1}
            result = await self._search(body, request.timeout_seconds)
            hits = result["hits"]["hits"]
            return [], (cursor_of(hits[0]["_source"]) if hits else None)
        body = {
            "query": self._bool(request),
            "sort": OLDEST_FIRST,
            "size": request.size,
            "search_after": list(after),
        }
        result = await self._search(body, request.timeout_seconds)
        records = [hit["_source"] for hit in result["hits"]["hits"]]
        return records, (cursor_of(records[-1]) if records else after)

    async def ping(self) -> bool:
        """True when the cluster answers."""
        try:
            return bool(await self._call(self._client.ping))
        except BackendError:
            return False

    async def close(self) -> None:
        """Close connections and the thread pool; idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _reason(exc: os_errors.TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error")
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        return str(causes[0].get("reason") or error.get("type") or exc.error)
    return str(exc.error)
