"""The bulk writer: every item resolved on its own, nothing duplicated, nothing lost.

:meth:`BulkWriter.write` returns only when each item is *resolved*: indexed,
already present (a ``409`` on ``create``: the same ``event.id`` was written
before), or dead-lettered with its reason.  Until then it retries:

* the whole request, unchanged, while the cluster is unreachable, throttles
  the request (429) or fails it (5xx), with exponential backoff and jitter
  and without limit: the caller is paused, so nothing is committed;
* only the items answered 429 or 5xx, with backoff (5xx items give up after
  ``item_max_attempts`` and are dead-lettered; 429 never gives up);
* a document rejected for its content, at once, with the offending value
  moved to ``podlog.salvaged`` (see :func:`indexer.documents.salvage`).

A request the cluster refuses as a whole (413, or another 4xx) is split in
halves until the culprit stands alone, which is then dead-lettered.

A dead letter the cluster refuses in turn (a record too large for any
request, say) is written again without its record, keeping the reason and
the Kafka position (see :func:`indexer.documents.omit_body`), so every
record leaves a trace in the dead-letter index.  Only a letter refused even
then is ``dropped``; the caller reports it, with its position, once the
batch's offsets are committed (see :mod:`indexer.outcomes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from indexer.config import IndexerConfig
from indexer.documents import BulkItem, KafkaPosition, dead_letter_item, omit_body, salvage
from indexer.events import IndexerEvents, events
from indexer.retry import (
    ItemAction,
    backoff_delay,
    classify_bulk_item,
    classify_request_status,
    describe_item_error,
)
from podlog.lifecycle import Health

__all__ = ["BulkWriter", "WriterClosedError", "http_client"]

_MAX_SALVAGES = 8
_Result = tuple[BulkItem, int, Any]


class WriterClosedError(Exception):
    """The writer was closed while a write was waiting to retry; nothing was resolved."""


def http_client(config: IndexerConfig, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An HTTP client for the cluster with the configured auth, TLS and timeout
    (over ``transport`` when given: a stand-in cluster in tests)."""
    opensearch = config.opensearch
    verify: ssl.SSLContext | bool = opensearch.verify_certs
    if opensearch.ca_certs:
        verify = ssl.create_default_context(cafile=opensearch.ca_certs)
    auth = httpx.BasicAuth(opensearch.username, opensearch.password) if opensearch.username else None
    return httpx.AsyncClient(
        auth=auth,
        verify=verify,
        transport=transport,
        timeout=httpx.Timeout(opensearch.request_timeout_seconds, connect=10.0),
        limits=httpx.Limits(
            max_connections=max(4, config.bulk_concurrency * 2),
            max_keepalive_connections=max(4, config.bulk_concurrency * 2),
        ),
    )


class BulkWriter:
    """Writes :class:`BulkItem` s with ``_bulk``, resolving each one."""

    def __init__(
        self,
        config: IndexerConfig,
        *,
        health: Health | None = None,
        event_sink: IndexerEvents = events,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._transport = transport
        self._prefix = config.opensearch.index_prefix
        self._hosts = [h.rstrip("/") for h in config.opensearch.hosts] or ["http://localhost:9200"]
        self._host = 0
        self._events = event_sink
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(max(1, config.bulk_concurrency))
        self._closing = asyncio.Event()
        self._unreachable: str | None = None
        if health is not None:
            health.add("opensearch", lambda: self._unreachable)

    async def start(self) -> None:
        """Open the HTTP connection pool."""
        if self._client is None:
            self._client = http_client(self._config, self._transport)

    async def close(self) -> None:
        """Abort any retry wait and close connections; idempotent."""
        self._closing.set()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def abort(self) -> None:
        """Make writes waiting to retry raise :class:`WriterClosedError`."""
        self._closing.set()

    async def write(self, items: Sequence[BulkItem], dead: Sequence[BulkItem] = ()) -> dict[str, int]:
        """Resolve every item (and write the ready-made dead letters ``dead``).

        Returns counts by outcome, one per record (an item, or a ready-made
        letter); each item's and letter's ``outcome`` is set (a letter's to
        ``dropped`` when even its bodyless form was refused, else to how its
        write ended), and ``error`` with it.  Nothing is counted here: the
        caller reports outcomes once they are final (see
        :mod:`indexer.outcomes`).  Raises :class:`WriterClosedError` if closed
        before everything was resolved.
        """
        counts: Counter[str] = Counter()
        dead_letters = list(dead)
        await self._resolve(list(items), counts, dead_letters)
        if dead_letters:
            self._log_dead(dead_letters)
            await self._resolve(dead_letters, Counter(), [])
            dropped: dict[str, str] = {}
            for letter in dead_letters:
                if letter.outcome == "dropped":
                    counts["dropped"] += 1
                    dropped[letter.doc_id] = letter.error
                else:
                    counts["dead_lettered"] += 1
            for item in items:
                if item.outcome == "dead_lettered" and item.doc_id in dropped:
                    item.outcome = "dropped"
                    item.error = dropped[item.doc_id]
        return {k: counts[k] for k in ("indexed", "already_present", "dead_lettered", "dropped")}

    # -- one pass per retry round ------------------------------------------------

    async def _resolve(self, pending: list[BulkItem], counts: Counter[str], dead_letters: list[BulkItem]) -> None:
        is_dead_letter = bool(pending) and pending[0].op == "index"
        while pending:
            results = await self._send_all(pending)
            again: list[BulkItem] = []
            retry: Counter[str] = Counter()
            first_errors: dict[str, str] = {}  # per status class, so each log line shows its own
            waiting: list[BulkItem] = []
            for item, status, error in results:
                action = classify_bulk_item(status)
                if action is ItemAction.INDEXED:
                    item.outcome = "indexed"
                    counts["indexed"] += 1
                elif action is ItemAction.ALREADY_PRESENT:
                    item.outcome = "already_present"
                    counts["already_present"] += 1
                elif action is ItemAction.RETRY:
                    item.attempts += 1
                    if status >= 500 and item.attempts >= self._config.item_max_attempts:
                        kind, reason = describe_item_error(error)
                        reason = f"gave up after {item.attempts} attempts: {reason}"
                        if self._dead(item, kind, reason, status, dead_letters, is_dead_letter):
                            again.append(item)
                    else:
                        status_class = "429" if status == 429 else "5xx"
                        retry[status_class] += 1
                        first_errors.setdefault(status_class, _short(error, status))
                        waiting.append(item)
                else:
                    kind, reason = describe_item_error(error)
                    salvaged = not is_dead_letter and self._try_salvage(item, reason)
                    if salvaged or self._dead(item, kind, reason, status, dead_letters, is_dead_letter):
                        again.append(item)
            if waiting:
                attempt = max(i.attempts for i in waiting)
                delay = backoff_delay(attempt, self._config.retry_initial_seconds, self._config.retry_max_seconds)
                for status_class, count in retry.items():
                    self._events.items_retried(status_class, count, first_errors[status_class], delay)
                await self._pause(delay)
            pending = again + waiting

    def _try_salvage(self, item: BulkItem, reason: str) -> bool:
        if not self._config.salvage or item.op != "create" or len(item.salvaged) >= _MAX_SALVAGES:
            return False
        result = salvage(item.document, reason)
        if result is None:
            return False
        item.document, field = result
        item.encoded = None
        item.salvaged.append(field)
        self._events.document_salvaged(item.index, field, reason[:500])
        return True

    def _dead(
        self,
        item: BulkItem,
        kind: str,
        reason: str,
        status: int,
        dead_letters: list[BulkItem],
        is_dead_letter: bool,
    ) -> bool:
        """Dead-letter a refused document, or shrink a refused letter; True: send it again."""
        error = f"{kind}: {reason}"[:1000]
        item.error = error
        if not is_dead_letter:
            item.outcome = "dead_lettered"
            dead_letters.append(dead_letter_item(item, self._prefix, kind, reason, status))
            return False
        size = omit_body(item, error)
        if size is None:
            item.outcome = "dropped"
            return False
        where = item.position or KafkaPosition("", -1, -1)
        self._events.dead_letter_body_omitted(item.doc_id, where.topic, where.partition, where.offset, size, error)
        return True

    def _log_dead(self, dead_letters: list[BulkItem]) -> None:
        first = dead_letters[0].document
        self._events.documents_dead_lettered(
            len(dead_letters),
            {
                "error_code": first.get("error_type", ""),
                "error": str(first.get("reason", ""))[:500],
                "index": first.get("index", ""),
                "namespace": first.get("namespace", ""),
            },
        )

    # -- requests ---------------------------------------------------------------

    async def _send_all(self, pending: list[BulkItem]) -> list[_Result]:
        chunks = _split_by_bytes(pending, self._config.bulk_max_bytes)
        if len(chunks) == 1:
            return await self._send_chunk(chunks[0])
        # gather, not a TaskGroup: every chunk runs to its end (a chunk only
        # fails when the writer is closed), and the error stays unwrapped.
        replies = await asyncio.gather(
            *(self._send_chunk(chunk) for chunk in chunks), return_exceptions=True
        )
        results: list[_Result] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
            results.extend(reply)
        return results

    async def _send_chunk(self, chunk: list[BulkItem]) -> list[_Result]:
        attempt = 0
        while True:
            body = b"".join(item.lines() for item in chunk)
            started = time.perf_counter()
            try:
                async with self._slots:
                    response = await self._post(body)
            except httpx.TransportError as exc:
                attempt += 1
                self._rotate_host()
                self._unreachable = f"bulk request failed: {type(exc).__name__}: {exc}"[:300]
                delay = self._delay(attempt)
                self._events.bulk_failed("unreachable", repr(exc)[:300], attempt, delay)
                await self._pause(delay)
                continue
            seconds = time.perf_counter() - started
            kind = classify_request_status(response.status_code)
            if kind == "ok":
                results = self._parse(chunk, response.content)
                if results is not None:
                    self._unreachable = None
                    errors = any(not 200 <= status < 300 for _, status, _ in results)
                    self._events.bulk_sent(seconds, len(body), "item_errors" if errors else "ok")
                    return results
                kind = "server_error"
            if kind in ("throttled", "server_error"):
                attempt += 1
                delay = self._delay(attempt)
                self._events.bulk_failed(kind, response.text[:300], attempt, delay)
                await self._pause(delay)
                continue
            # The request as a whole was refused (413 or another 4xx).
            self._events.bulk_failed("rejected", response.text[:300], attempt + 1, 0.0)
            if len(chunk) > 1:
                middle = len(chunk) // 2
                return [
                    *await self._send_chunk(chunk[:middle]),
                    *await self._send_chunk(chunk[middle:]),
                ]
            error = {
                "type": "request_rejected",
                "reason": f"HTTP {response.status_code}: {response.text[:1000]}",
            }
            return [(chunk[0], response.status_code, error)]

    async def _post(self, body: bytes) -> httpx.Response:
        if self._client is None:
            raise WriterClosedError("the bulk writer is not started or was closed")
        return await self._client.post(
            f"{self._hosts[self._host]}/_bulk",
            content=body,
            headers={"content-type": "application/x-ndjson"},
        )

    def _parse(self, chunk: list[BulkItem], content: bytes) -> list[_Result] | None:
        try:
            reply = orjson.loads(content)
            answers = reply["items"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if not isinstance(answers, list) or len(answers) != len(chunk):
            return None
        results: list[_Result] = []
        for item, answer in zip(chunk, answers, strict=True):
            body = answer.get(item.op) if isinstance(answer, dict) else None
            if not isinstance(body, dict):
                body = next(iter(answer.values()), {}) if isinstance(answer, dict) else {}
            status = int(body.get("status", 500))
            results.append((item, status, body.get("error")))
            item.last_status = status
        return results

    def _rotate_host(self) -> None:
        self._host = (self._host + 1) % len(self._hosts)

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self._config.retry_initial_seconds, self._config.retry_max_seconds)

    async def _pause(self, delay: float) -> None:
        if self._closing.is_set():
            raise WriterClosedError("closed while waiting to retry")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()
        if self._closing.is_set():
            raise WriterClosedError("closed while waiting to retry")


def _split_by_bytes(items: list[BulkItem], max_bytes: int) -> list[list[BulkItem]]:
    chunks: list[list[BulkItem]] = []
    current: list[BulkItem] = []
    size = 0
    for item in items:
        length = len(item.lines())
        if current and size + length > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += length
    if current:
        chunks.append(current)
    return chunks


def _short(error: Any, status: int) -> str:
    kind, reason = describe_item_error(error)
    return f"{status} {kind}: {reason}"[:300]
