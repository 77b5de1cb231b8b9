"""A small HTTP proxy in front of a real OpenSearch stand-in that misbehaves on purpose.

It forwards every request to the upstream server.  For ``_bulk`` requests a
test can make it answer 503 for the whole request, answer 413 for a body
above a size (as a cluster's ``http.max_content_length`` does), answer 429
(or any status and error) for chosen items *without* forwarding them, or
forward the request and then hold the reply (so the caller never learns the
outcome).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson

ItemRule = Callable[[str, str, int], tuple[int, dict[str, Any]] | None]
"""``(index, doc_id, attempt for this id) -> (status, error)`` to fake an item answer, or None."""


class FaultyProxy:
    """HTTP/1.1 proxy on 127.0.0.1 with bulk fault injection."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_request: Callable[[int], bool] = lambda n: False
        """Given the bulk request number (1-based), answer it 503 without forwarding."""
        self.item_rule: ItemRule = lambda index, doc_id, attempt: None
        self.max_bulk_bytes: int | None = None
        """Answer a bulk request whose body is larger than this 413, without forwarding it."""
        self.bulk_too_large = 0
        self.hold_replies = False
        """Forward bulk requests but never answer them."""
        self.drop_bulk_connections = False
        """Close the connection on a bulk request without answering (cluster unreachable)."""
        self.bulk_requests = 0
        self.requests_failed = 0
        self.items_faked = 0
        self.items_forwarded = 0
        self.forwarded_bulks = 0
        self.errors: list[str] = []
        """What went wrong inside the proxy itself (answered 502), for the test to show."""
        self._attempts: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        # Longer than any client's own timeout: the proxy never gives up first.
        self._client = httpx.AsyncClient(timeout=300)
        self._release = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if self.drop_bulk_connections and "_bulk" in target:
                    self.bulk_requests += 1
                    self.requests_failed += 1
                    break
                try:
                    status, reply, ctype = await self._handle(method, target, headers, body)
                except (httpx.HTTPError, ValueError, LookupError) as exc:
                    # Answer as a real proxy would (502), and keep the cause for the test.
                    self.errors.append(f"{method} {target}: {exc!r}")
                    status, ctype = 502, "application/json"
                    reply = orjson.dumps({"error": f"proxy: {exc!r}", "status": 502})
                head = (
                    f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(reply)}\r\n\r\n"
                ).encode()
                writer.write(head + reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        keep = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
        response = await self._client.request(method, self.upstream + target, content=body or None, headers=keep)
        ctype = response.headers.get("content-type", "application/json")
        return response.status_code, response.content, ctype

    async def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        if not (method == "POST" and target.split("?")[0].endswith("/_bulk")):
            return await self._forward(method, target, headers, body)
        self.bulk_requests += 1
        if self.fail_request(self.bulk_requests):
            self.requests_failed += 1
            return 503, b'{"error":"injected: unavailable","status":503}', "application/json"
        if self.max_bulk_bytes is not None and len(body) > self.max_bulk_bytes:
            self.bulk_too_large += 1
            return 413, b"", "text/plain"
        lines = body.splitlines()
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
        faked: dict[int, dict[str, Any]] = {}
        forward: list[tuple[bytes, bytes]] = []
        for number, (action_line, source) in enumerate(pairs):
            action = orjson.loads(action_line)
            op, meta = next(iter(action.items()))
            doc_id = str(meta.get("_id"))
            attempt = self._attempts.get(doc_id, 0) + 1
            self._attempts[doc_id] = attempt
            rule = self.item_rule(str(meta.get("_index")), doc_id, attempt)
            if rule is None:
                forward.append((action_line, source))
                continue
            status, error = rule
            self.items_faked += 1
            faked[number] = {op: {"_index": meta.get("_index"), "_id": doc_id, "status": status, "error": error}}
        answers: list[Any] = []
        if forward:
            payload = b"".join(a + b"\n" + s + b"\n" for a, s in forward)
            status, reply, _ = await self._forward("POST", target, {"content-type": "application/x-ndjson"}, payload)
            self.items_forwarded += len(forward)
            self.forwarded_bulks += 1
            if status >= 300:
                return status, reply, "application/json"
            answers = list(orjson.loads(reply)["items"])
        if self.hold_replies:
            await self._release.wait()
        merged = []
        for number in range(len(pairs)):
            merged.append(faked[number] if number in faked else answers.pop(0))
        errors = any(next(iter(m.values())).get("status", 200) >= 300 for m in merged)
        return 200, orjson.dumps({"took": 1, "errors": errors, "items": merged}), "application/json"
