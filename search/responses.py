"""The API's response shapes: JSON bodies, and the one error shape every failure uses.

An error body is ``{"error": <message>, "request_id": <id>}`` plus, when known,
``"position"`` (character offset in ``q``) or ``"parameter"`` (the query
parameter at fault).  The message never names an internal host, port, path
or stack: those go to the server log under the same request id.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["error_response", "json_response", "request_id_of"]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON, never cached."""
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


def error_response(
    message: str,
    status: int,
    request_id: str,
    *,
    position: int | None = None,
    parameter: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The API's error shape."""
    body: dict[str, Any] = {"error": message, "request_id": request_id}
    if position is not None:
        body["position"] = position
    if parameter is not None:
        body["parameter"] = parameter
    return json_response(body, status, headers)


def request_id_of(request: Request) -> str:
    """The id :class:`search.middleware.RequestContext` gave this request."""
    return str(request.scope.get("state", {}).get("request_id", ""))
