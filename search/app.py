"""The search HTTP API and page: one Starlette app over a :class:`SearchBackend`.

Every ``/api`` endpoint authenticates first, then builds its request with the
caller's namespace patterns (``search/params.py``), so authorization holds in
search, histogram, top values, context, tail and export alike.  Errors are
JSON ``{"error": ..., "position": ...}`` with 400 (bad query or parameter),
401/403 (authentication), 404, 503 (index unavailable) or 504 (timeout).

``/openapi.json`` asks for the same credentials, or is not served
(``search.openapi``).  The ops routes (``/metrics``, ``/healthz``, ``/readyz``)
are not in this app: :class:`search.service.SearchService` serves them on
``search.ops_listen``, a port no public route reaches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podlog.lifecycle import Health
from search import events
from search.auth import Authenticator, AuthError, Identity
from search.backends.base import FILTER_FIELDS, SearchBackend
from search.config import SearchConfig
from search.errors import BackendError, RequestError
from search.openapi import openapi_spec
from search.params import auto_interval, build_request, encode_cursor, int_param
from search.query import QueryError
from search.streams import export_ndjson, tail_events

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

Handler = Callable[[Request, Identity], Awaitable[Response]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


def _error(message: str, status: int, position: int | None = None, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if position is not None:
        body["position"] = position
    return _json(body, status, headers)


class _Api:
    """Endpoint handlers bound to one backend, authenticator and settings."""

    def __init__(self, config: SearchConfig, backend: SearchBackend, health: Health) -> None:
        self.config = config
        self.backend = backend
        self.auth = Authenticator(config.auth)
        self.closing = asyncio.Event()
        self.tails = 0
        self.backend_error: str | None = None
        """Set by the service's periodic backend probe; /readyz reports it."""
        health.add("search_backend", lambda: self.backend_error)

    def endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with authentication, error mapping and metrics."""

        async def wrapped(request: Request) -> Response:
            started = time.monotonic()
            client = request.client.host if request.client else None
            response = await self._dispatch(name, handler, request, client)
            events.request_completed(name, response.status_code, time.monotonic() - started)
            return response

        return wrapped

    async def _dispatch(self, name: str, handler: Handler, request: Request, client: str | None) -> Response:
        try:
            identity = self.auth.authenticate(request.headers, client)
        except AuthError as exc:
            events.auth_failed(exc.reason, client, str(exc))
            challenge = {"basic": 'Basic realm="podlog"', "token": 'Bearer realm="podlog"'}
            headers = {}
            if exc.status == 401 and self.auth.mode in challenge:
                headers["www-authenticate"] = challenge[self.auth.mode]
            return _error(str(exc), exc.status, headers=headers)
        try:
            async with asyncio.timeout(self.config.guards.timeout_seconds + 5):
                response = await handler(request, identity)
        except QueryError as exc:
            events.query_rejected(name, identity.name, str(exc))
            return _error(str(exc), 400, exc.position)
        except RequestError as exc:
            events.query_rejected(name, identity.name, str(exc))
            return _error(str(exc), 400)
        except TimeoutError:
            events.backend_failed(name, identity.name, "timeout")
            return _error("the search took too long; narrow the time range or query", 504)
        except BackendError as exc:
            events.backend_failed(name, identity.name, str(exc))
            return _error(str(exc), 503 if exc.retriable else 502)
        return response

    async def whoami(self, _: Request, identity: Identity) -> Response:
        return _json({"name": identity.name, "namespaces": list(identity.namespaces), "auth": self.auth.mode})

    async def search(self, request: Request, identity: Identity) -> Response:
        search_request = build_request(request.query_params, identity, self.config)
        page = await self.backend.search(search_request)
        return _json(
            {
                "hits": page.hits,
                "total": page.total,
                "total_exact": page.total_exact,
                "next_cursor": encode_cursor(page.next_cursor),
            }
        )

    async def histogram(self, request: Request, identity: Identity) -> Response:
        search_request = build_request(request.query_params, identity, self.config)
        buckets_wanted = int_param(request.query_params, "buckets", 60, 1, 500)
        interval = auto_interval(search_request.start_ns, search_request.end_ns, buckets_wanted)
        buckets = await self.backend.histogram(search_request, interval)
        return _json(
            {
                "start_ns": search_request.start_ns,
                "end_ns": search_request.end_ns,
                "interval_ns": interval,
                "buckets": [{"start_ns": b.start_ns, "count": b.count} for b in buckets],
                "total": sum(b.count for b in buckets),
            }
        )

    async def top(self, request: Request, identity: Identity) -> Response:
        field = request.query_params.get("field", "")
        if field not in FILTER_FIELDS:
            raise RequestError(f"field: {field!r} is not one of {', '.join(FILTER_FIELDS)}")
        search_request = build_request(request.query_params, identity, self.config)
        size = int_param(request.query_params, "size", 10, 1, 100)
        values = await self.backend.top_values(search_request, field, size)
        return _json({"field": field, "values": [{"value": v, "count": c} for v, c in values]})

    async def context(self, request: Request, identity: Identity) -> Response:
        event_id = str(request.path_params["event_id"])
        before = int_param(request.query_params, "before", 20, 0, 500)
        after = int_param(request.query_params, "after", 20, 0, 500)
        allowed = None if "*" in identity.namespaces else list(identity.namespaces)
        result = await self.backend.context(event_id, before, after, allowed)
        if result is None:
            return _error(f"no record {event_id!r} you may see", 404)
        return _json({"before": result.before, "anchor": result.anchor, "after": result.after})

    async def tail(self, request: Request, identity: Identity) -> Response:
        limit = self.config.guards.max_tail_streams
        if self.tails >= limit:
            events.query_rejected("tail", identity.name, "too many live tails")
            return _error(f"this server already streams {limit} live tails; try again later", 429)
        search_request = build_request(
            request.query_params, identity, self.config, size_default=500, require_range_guard=False
        )
        stream = tail_events(
            self.backend,
            search_request,
            poll_seconds=self.config.tail_poll_seconds,
            lookback_seconds=self.config.tail_lookback_seconds,
            closing=self.closing,
        )
        # The first poll runs now, so a bad query or a down index is a plain error response.
        first, _ = await anext(stream)
        events.tail_opened(identity.name, request.query_params.get("q", ""))
        return StreamingResponse(
            self._counted_tail(identity, first, stream),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _counted_tail(
        self, identity: Identity, first: bytes, stream: AsyncIterator[tuple[bytes, int]]
    ) -> AsyncIterator[bytes]:
        sent = 0
        self.tails += 1
        try:
            yield first
            async for chunk, count in stream:
                sent += count
                yield chunk
        except (QueryError, BackendError) as exc:
            yield b"event: error\ndata: " + orjson.dumps({"error": str(exc)}) + b"\n\n"
        finally:
            self.tails -= 1
            events.tail_closed(identity.name, sent)

    async def export(self, request: Request, identity: Identity) -> Response:
        cap = self.config.guards.max_export_records
        limit = int_param(request.query_params, "limit", cap, 1, cap)
        search_request = build_request(
            request.query_params,
            identity,
            self.config,
            size_default=min(1000, self.config.guards.max_page_size),
        )
        # Check the query against the index before the 200 status is sent.
        await self.backend.search(build_request(request.query_params, identity, self.config, size_default=1))
        return StreamingResponse(
            self._counted_export(identity, export_ndjson(self.backend, search_request, limit), limit),
            media_type="application/x-ndjson",
            headers={
                "content-disposition": 'attachment; filename="podlog-export.ndjson"',
                "cache-control": "no-store",
            },
        )

    async def _counted_export(
        self, identity: Identity, stream: AsyncIterator[bytes], limit: int
    ) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in stream:
                sent += chunk.count(b"\n")
                yield chunk
        finally:
            events.export_finished(identity.name, sent, capped=sent >= limit)


def create_app(config: SearchConfig, backend: SearchBackend, health: Health) -> Starlette:
    """The search app: ``/api/*``, ``/openapi.json`` (unless off) and the page; no ops routes."""
    api = _Api(config, backend, health)

    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)

    async def openapi(_: Request, __: Identity) -> Response:
        return _json(openapi_spec())

    described: list[BaseRoute] = []
    if config.openapi == "authenticated":
        described.append(Route("/openapi.json", api.endpoint("openapi", openapi)))
    routes: list[BaseRoute] = [
        Route("/", index),
        *described,
        Route("/api/whoami", api.endpoint("whoami", api.whoami)),
        Route("/api/search", api.endpoint("search", api.search)),
        Route("/api/histogram", api.endpoint("histogram", api.histogram)),
        Route("/api/top", api.endpoint("top", api.top)),
        Route("/api/context/{event_id}", api.endpoint("context", api.context)),
        Route("/api/tail", api.endpoint("tail", api.tail)),
        Route("/api/export", api.endpoint("export", api.export)),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.api = api
    return app


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response (streams too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def closing_event(app: Starlette) -> asyncio.Event:
    """Set to end live tails when the server stops."""
    event: asyncio.Event = app.state.api.closing
    return event
