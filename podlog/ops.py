"""The operations endpoint every long-running command serves.

``/metrics`` (Prometheus text), ``/healthz`` (the event loop answers) and
``/readyz`` (every registered readiness check passes; 503 with the reasons
otherwise), always on a port of their own: ``podlog.http_listen`` for the agent
and the indexer, ``search.ops_listen`` beside the search API's port, so that a
Service or an Ingress in front of a public port never reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from podlog import metrics
from podlog.lifecycle import Health

__all__ = ["HttpServer", "OpsServer", "UvicornServer", "ops_routes", "parse_listen"]


class UvicornServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: :mod:`podlog.lifecycle` owns them
    and stops every service in order (uvicorn would otherwise take SIGTERM for itself)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_listen(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``":port"``) to a tuple; ValueError names the bad address."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {address!r} is not host:port")
    return (host or "0.0.0.0"), int(port)  # noqa: S104 - listening on all interfaces is the default for a pod


def ops_routes(health: Health) -> list[Route]:
    """Routes for ``/metrics``, ``/healthz`` and ``/readyz``."""

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(_: Request) -> Response:
        reasons = health.not_ready()
        body = orjson.dumps({"status": "not ready" if reasons else "ready", "reasons": reasons})
        return Response(body, status_code=503 if reasons else 200, media_type="application/json")

    return [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]


class HttpServer:
    """Serves an ASGI app with uvicorn as a :class:`podlog.lifecycle.Service`."""

    def __init__(
        self, name: str, app: Any, listen: str, *, graceful_seconds: int | None = None, proxy_headers: bool = True
    ) -> None:
        """``proxy_headers=False``: the client address is the TCP peer, never X-Forwarded-For."""
        host, port = parse_listen(listen)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=graceful_seconds,
            proxy_headers=proxy_headers,
        )
        self.name = name
        self._server = UvicornServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        for server in getattr(self._server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return 0

    async def start(self) -> None:
        """Bind and start serving; raises if the address cannot be bound."""
        self._task = asyncio.create_task(self._server.serve(), name=f"{self.name}-serve")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"{self.name}: server exited while starting on port {self._server.config.port}")
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        assert self._task is not None
        await self._task

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests; idempotent."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class OpsServer(HttpServer):
    """``/metrics``, ``/healthz`` and ``/readyz`` on their own port."""

    def __init__(self, listen: str, health: Health) -> None:
        super().__init__("ops-http", Starlette(routes=ops_routes(health)), listen)
