"""The search HTTP API and page: one Starlette app over a :class:`SearchBackend`.

Every ``/api`` endpoint authenticates first, takes a token from the caller's
rate limit, then builds its request with the caller's namespace patterns
(``search/params.py``), so authorization holds in search, histogram, top
values, context, tail and export alike.  Every error is the JSON shape of
``search/responses.py`` with a request id: 400 (bad query or parameter, with
``position`` or ``parameter``), 401/403 (authentication), 404, 429 (rate limit
or tail cap, with ``Retry-After``), 500, 502/503 (index failed or unavailable)
or 504 (timeout).  Backend detail goes to the server log only.

``/openapi.json`` asks for the same credentials, or is not served
(``search.openapi``).  The ops routes (``/metrics``, ``/healthz``, ``/readyz``)
are not in this app: :class:`search.service.SearchService` serves them on
``search.ops_listen``, a port no public route reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from podlog.lifecycle import Health
from search import events
from search.alerts.api import RulesApi
from search.audit import AuditLog
from search.auth import Authenticator, AuthError, Identity
from search.backends.base import FILTER_FIELDS, SearchBackend, SearchRequest
from search.config import SearchConfig
from search.errors import BackendError, RequestError
from search.limits import RateLimiter, TailSlot, TailSlots, retry_after_header
from search.middleware import SECURITY_HEADERS, RequestContext
from search.openapi import openapi_spec
from search.params import auto_interval, build_request, encode_cursor, int_param
from search.query import QueryError
from search.responses import error_response, json_response, request_id_of
from search.streams import TailLimits, export_ndjson, tail_events

__all__ = ["SECURITY_HEADERS", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"

_TAIL_RETRY_SECONDS = 10.0
"""Retry-After of a tail refused by a cap: a tail slot frees when someone closes a tab."""

Handler = Callable[[Request, Identity], Awaitable[Response]]


def _note(request: Request, search: SearchRequest | None = None, results: int | None = None) -> None:
    """Remember what a request asked and found, for its audit line."""
    state = request.scope.setdefault("state", {})
    if search is not None:
        state["audit_range"] = (search.start_ns, search.end_ns)
        state["audit_filters"] = {k: list(v) for k, v in search.filters.items()}
    if results is not None:
        state["audit_results"] = results


class _ClosingStream(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends, even if its body never started."""

    def __init__(
        self, content: AsyncIterator[bytes], media_type: str, headers: dict[str, str], on_close: Callable[[], None]
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            self._on_close()


class _Api:
    """Endpoint handlers bound to one backend, authenticator and settings."""

    def __init__(self, config: SearchConfig, backend: SearchBackend, health: Health) -> None:
        self.config = config
        self.backend = backend
        self.auth = Authenticator(config.auth)
        self.audit = AuditLog(config.audit_log)
        self.closing = asyncio.Event()
        guards = config.guards
        self.tail_slots = TailSlots(guards.max_tail_streams, guards.max_tail_streams_per_identity)
        limit = config.rate_limit
        self.limiter = (
            RateLimiter(limit.requests_per_second, limit.burst) if limit.enabled(config.backend) else None
        )
        self.backend_error: str | None = None
        """Set by the service's periodic backend probe; /readyz reports it."""
        self.alerts: RulesApi | None = None
        """Set by the service when alert rules are configured; /api/alerts/rules lists them."""
        health.add("search_backend", lambda: self.backend_error)

    @property
    def tails(self) -> int:
        """Live tails open now."""
        return self.tail_slots.open

    def endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with authentication, rate limiting, error mapping, metrics and the audit log."""

        async def wrapped(request: Request) -> Response:
            started = time.monotonic()
            client = request.client.host if request.client else None
            identity, response = await self._dispatch(name, handler, request, client)
            events.request_completed(name, response.status_code, time.monotonic() - started)
            if identity is not None and not request.scope.get("state", {}).get("audit_deferred"):
                self._audit(name, request, identity, response.status_code, started, client)
            return response

        return wrapped

    def _audit(
        self, name: str, request: Request, identity: Identity, status: int, started: float, client: str | None
    ) -> None:
        state = request.scope.get("state", {})
        start_ns, end_ns = state.get("audit_range", (None, None))
        self.audit.request(
            endpoint=name,
            identity=identity.name,
            namespaces=identity.namespaces,
            params={**request.query_params, **{k: str(v) for k, v in request.path_params.items()}},
            filters=state.get("audit_filters", {}),
            status=status,
            results=state.get("audit_results"),
            seconds=time.monotonic() - started,
            request_id=request_id_of(request),
            start_ns=start_ns,
            end_ns=end_ns,
            client=client,
        )

    async def _dispatch(
        self, name: str, handler: Handler, request: Request, client: str | None
    ) -> tuple[Identity | None, Response]:
        request_id = request_id_of(request)
        try:
            identity = await self.auth.authenticate(request.headers, client)
        except AuthError as exc:
            events.auth_failed(exc.reason, client, str(exc))
            challenge = {"basic": 'Basic realm="podlog"', "token": 'Bearer realm="podlog"'}
            headers = {}
            if exc.status == 401 and self.auth.mode in challenge:
                headers["www-authenticate"] = challenge[self.auth.mode]
            return None, error_response(str(exc), exc.status, request_id, headers=headers)
        if self.limiter is not None:
            key = identity.name if self.auth.mode != "none" else f"client:{client}"
            wait = self.limiter.acquire(key)
            if wait > 0:
                events.rate_limited(name, identity.name, wait)
                return identity, error_response(
                    "too many requests; slow down",
                    429,
                    request_id,
                    headers={"retry-after": retry_after_header(wait)},
                )
        return identity, await self._handle(name, handler, request, identity, request_id)

    async def _handle(
        self, name: str, handler: Handler, request: Request, identity: Identity, request_id: str
    ) -> Response:
        try:
            async with asyncio.timeout(self.config.guards.timeout_seconds + 5):
                return await handler(request, identity)
        except QueryError as exc:
            events.query_rejected(name, identity.name, str(exc))
            return error_response(str(exc), 400, request_id, position=exc.position)
        except RequestError as exc:
            events.query_rejected(name, identity.name, str(exc))
            return error_response(str(exc), 400, request_id, parameter=exc.parameter)
        except TimeoutError:
            events.backend_failed(name, identity.name, "timeout")
            return error_response("the search took too long; narrow the time range or query", 504, request_id)
        except BackendError as exc:
            events.backend_failed(name, identity.name, _detail(exc))
            return error_response(_public(exc, request_id), 503 if exc.retriable else 502, request_id)
        except Exception:  # noqa: BLE001 - the request boundary: log the stack, answer the JSON error shape
            events.request_failed(name, identity.name, request.url.path)
            return error_response(f"internal error; quote request id {request_id}", 500, request_id)

    async def whoami(self, _: Request, identity: Identity) -> Response:
        return json_response({"name": identity.name, "namespaces": list(identity.namespaces), "auth": self.auth.mode})

    async def alert_rules(self, request: Request, identity: Identity) -> Response:
        if self.alerts is None:
            if request.method == "GET":
                return json_response({"rules": []})
            return error_response("alerting is off (search.alerts)", 404, request_id_of(request))
        return await self.alerts.collection(request, identity.namespaces)

    async def alert_rule(self, request: Request, identity: Identity) -> Response:
        if self.alerts is None:
            return error_response("alerting is off (search.alerts)", 404, request_id_of(request))
        return await self.alerts.item(request, identity.namespaces)

    async def search(self, request: Request, identity: Identity) -> Response:
        search_request = build_request(request.query_params, identity, self.config)
        _note(request, search_request)
        page = await self.backend.search(search_request)
        _note(request, results=len(page.hits))
        return json_response(
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
        _note(request, search_request)
        buckets = await self.backend.histogram(search_request, interval)
        total = sum(b.count for b in buckets)
        _note(request, results=total)
        return json_response(
            {
                "start_ns": search_request.start_ns,
                "end_ns": search_request.end_ns,
                "interval_ns": interval,
                "buckets": [{"start_ns": b.start_ns, "count": b.count} for b in buckets],
                "total": total,
            }
        )

    async def top(self, request: Request, identity: Identity) -> Response:
        field = request.query_params.get("field", "")
        if field not in FILTER_FIELDS:
            raise RequestError(f"field: {field!r} is not one of {', '.join(FILTER_FIELDS)}", parameter="field")
        search_request = build_request(request.query_params, identity, self.config)
        size = int_param(request.query_params, "size", 10, 1, 100)
        _note(request, search_request)
        values = await self.backend.top_values(search_request, field, size)
        _note(request, results=len(values))
        return json_response({"field": field, "values": [{"value": v, "count": c} for v, c in values]})

    async def context(self, request: Request, identity: Identity) -> Response:
        event_id = str(request.path_params["event_id"])
        before = int_param(request.query_params, "before", 20, 0, 500)
        after = int_param(request.query_params, "after", 20, 0, 500)
        allowed = None if "*" in identity.namespaces else list(identity.namespaces)
        result = await self.backend.context(event_id, before, after, allowed)
        if result is None:
            _note(request, results=0)
            return error_response(f"no record {event_id[:200]!r} you may see", 404, request_id_of(request))
        _note(request, results=1 + len(result.before) + len(result.after))
        return json_response({"before": result.before, "anchor": result.anchor, "after": result.after})

    async def tail(self, request: Request, identity: Identity) -> Response:
        # The caps are checked and the slot taken before the first await: concurrent opens cannot all pass.
        slot = self.tail_slots.take(identity.name)
        if isinstance(slot, str):
            limit = self.tail_slots.total if slot == "global" else self.tail_slots.per_key
            events.tail_refused(identity.name, slot, limit)
            whose = "this server already streams" if slot == "global" else "you already have"
            return error_response(
                f"{whose} {limit} live tails; close one or try again later",
                429,
                request_id_of(request),
                headers={"retry-after": retry_after_header(_TAIL_RETRY_SECONDS)},
            )
        try:
            return await self._open_tail(request, identity, slot)
        except BaseException:
            slot.release()
            raise

    async def _open_tail(self, request: Request, identity: Identity, slot: TailSlot) -> Response:
        guards = self.config.guards
        search_request = build_request(
            request.query_params, identity, self.config, size_default=500, require_range_guard=False
        )
        limits = TailLimits(
            max_seconds=guards.max_tail_seconds,
            idle_seconds=guards.tail_idle_seconds,
            revoked=lambda: not self.auth.is_current(identity),
        )
        stream = tail_events(
            self.backend,
            search_request,
            poll_seconds=self.config.tail_poll_seconds,
            lookback_seconds=self.config.tail_lookback_seconds,
            closing=self.closing,
            limits=limits,
        )
        # The first poll runs now, so a bad query or a down index is a plain error response.
        first, _ = await anext(stream)
        events.tail_opened(identity.name, request.query_params.get("q", ""))
        _note(request, search_request)
        request.scope["state"]["audit_deferred"] = True
        sent = [0]
        started = time.monotonic()
        client = request.client.host if request.client else None

        def closed() -> None:
            if slot.released:
                return
            slot.release()
            events.tail_closed(identity.name, sent[0], limits.ended or "client")
            _note(request, results=sent[0])
            self._audit("tail", request, identity, 200, started, client)

        return _ClosingStream(
            self._counted_tail(first, stream, sent, limits),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
            on_close=closed,
        )

    async def _counted_tail(
        self, first: bytes, stream: AsyncGenerator[tuple[bytes, int]], sent: list[int], limits: TailLimits
    ) -> AsyncIterator[bytes]:
        yield first
        try:
            async for chunk, count in stream:
                sent[0] += count
                yield chunk
        except QueryError as exc:
            limits.ended = "error"
            yield _sse_error(str(exc), "error")
        except BackendError as exc:
            limits.ended = "error"
            events.backend_failed("tail", "", _detail(exc))
            yield _sse_error(exc.public or "the index failed to answer; the live tail stopped", "error")
        finally:
            await stream.aclose()

    async def export(self, request: Request, identity: Identity) -> Response:
        cap = self.config.guards.max_export_records
        limit = int_param(request.query_params, "limit", cap, 1, cap)
        search_request = build_request(
            request.query_params,
            identity,
            self.config,
            size_default=min(1000, self.config.guards.max_page_size),
        )
        _note(request, search_request)
        # Check the query against the index before the 200 status is sent.
        await self.backend.search(build_request(request.query_params, identity, self.config, size_default=1))
        request.scope["state"]["audit_deferred"] = True
        sent = [0]
        started = time.monotonic()
        client = request.client.host if request.client else None
        done = [False]

        def closed() -> None:
            if done[0]:
                return
            done[0] = True
            events.export_finished(identity.name, sent[0], capped=sent[0] >= limit)
            _note(request, results=sent[0])
            self._audit("export", request, identity, 200, started, client)

        return _ClosingStream(
            self._counted_export(export_ndjson(self.backend, search_request, limit), sent, request_id_of(request)),
            media_type="application/x-ndjson",
            headers={
                "content-disposition": 'attachment; filename="podlog-export.ndjson"',
                "cache-control": "no-store",
            },
            on_close=closed,
        )

    async def _counted_export(
        self, stream: AsyncIterator[bytes], sent: list[int], request_id: str
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                sent[0] += chunk.count(b"\n")
                yield chunk
        except (QueryError, BackendError) as exc:
            # The 200 is sent: the last line says the export is incomplete, and why.
            events.backend_failed("export", "", _detail(exc))
            message = exc.public if isinstance(exc, BackendError) and exc.public else "the export stopped early"
            yield orjson.dumps({"error": message, "request_id": request_id}) + b"\n"


def _detail(exc: BaseException) -> str:
    """An error and its cause, for the server log."""
    cause = exc.__cause__
    return f"{exc} ({type(cause).__name__}: {cause})" if cause is not None else str(exc)


def _public(exc: BackendError, request_id: str) -> str:
    if exc.public:
        return exc.public
    if exc.retriable:
        return f"the index is unavailable; try again (request id {request_id})"
    return f"the index failed to answer (request id {request_id})"


def _sse_error(message: str, reason: str) -> bytes:
    return b"event: error\ndata: " + orjson.dumps({"error": message, "reason": reason}) + b"\n\n"


def create_app(config: SearchConfig, backend: SearchBackend, health: Health) -> Starlette:
    """The search app: ``/api/*``, ``/openapi.json`` (unless off) and the page; no ops routes."""
    api = _Api(config, backend, health)

    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)

    async def alerts_page(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "alerts.html", headers=SECURITY_HEADERS)

    async def openapi(_: Request, __: Identity) -> Response:
        return json_response(openapi_spec())

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers) if exc.headers else None
        return error_response(message, exc.status_code, request_id_of(request), headers=headers)

    described: list[BaseRoute] = []
    if config.openapi == "authenticated":
        described.append(Route("/openapi.json", api.endpoint("openapi", openapi)))
    routes: list[BaseRoute] = [
        Route("/", index),
        Route("/alerts", alerts_page),
        *described,
        Route("/api/whoami", api.endpoint("whoami", api.whoami)),
        Route("/api/search", api.endpoint("search", api.search)),
        Route("/api/histogram", api.endpoint("histogram", api.histogram)),
        Route("/api/top", api.endpoint("top", api.top)),
        Route("/api/context/{event_id}", api.endpoint("context", api.context)),
        Route("/api/tail", api.endpoint("tail", api.tail)),
        Route("/api/export", api.endpoint("export", api.export)),
        Route("/api/alerts/rules", api.endpoint("alert_rules", api.alert_rules), methods=["GET", "POST"]),
        Route(
            "/api/alerts/rules/{name}", api.endpoint("alert_rule", api.alert_rule), methods=["GET", "PUT", "DELETE"]
        ),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContext)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.api = api
    return app


def closing_event(app: Starlette) -> asyncio.Event:
    """Set to end live tails when the server stops."""
    event: asyncio.Event = app.state.api.closing
    return event
