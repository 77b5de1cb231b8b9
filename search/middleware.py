"""ASGI middleware of the search app: a request id, security headers, and a JSON 500.

Every request gets an id (a well-formed ``X-Request-ID`` from the proxy in
front, or a new one).  It is bound into the log context, so every log line the
request causes carries it; it is returned in the ``X-Request-ID`` header and in
every error body.  An exception that escapes a handler is logged with its
traceback under that id and answered with the API's JSON error shape: no
stack, path or address reaches the client.
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search import events
from search.responses import error_response

__all__ = ["SECURITY_HEADERS", "RequestContext"]

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get("x-request-id", "")
    return given if _GIVEN_ID.match(given) else uuid.uuid4().hex


class RequestContext:
    """Request id, :data:`SECURITY_HEADERS` on every response (streams too), and a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
                headers["x-request-id"] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:  # noqa: BLE001 - the request boundary: log it, answer JSON, serve on
                events.request_failed("unhandled", None, str(scope.get("path", "")))
                if not started:
                    response = error_response(f"internal error; quote request id {request_id}", 500, request_id)
                    await response(scope, receive, send_with_headers)
