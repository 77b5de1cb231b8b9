"""The search process: uvicorn serving :func:`search.app.create_app` as a Service."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from podlog.lifecycle import Health
from podlog.logging import get_logger
from podlog.ops import parse_listen
from podlog.settings import Settings
from search.app import closing_event, create_app
from search.backends.base import SearchBackend
from search.config import SearchConfig

__all__ = ["SearchService", "open_backend"]

log = get_logger("search.service")


def open_backend(settings: Settings) -> SearchBackend:
    """The OpenSearch backend named by ``settings.search``."""
    from search.backends.opensearch import OpenSearchBackend

    config = settings.search
    return OpenSearchBackend(
        config.opensearch_hosts,
        config.index_prefix,
        request_timeout=config.guards.timeout_seconds + 5,
    )


class SearchService:
    """Serves the search API and page until stopped; closes the backend on stop."""

    name = "search-http"

    def __init__(self, config: SearchConfig, backend: SearchBackend, *, health: Health) -> None:
        host, port = parse_listen(config.listen)
        self.app = create_app(config, backend, health)
        self._backend = backend
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=3,
            )
        )
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        for server in getattr(self._server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return 0

    async def start(self) -> None:
        """Bind and start serving; raises if the address cannot be bound."""
        # podlog.lifecycle owns the process's signals; uvicorn must not capture them.
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._task = asyncio.create_task(self._server.serve(), name="search-http-serve")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"search server exited while starting on {self._server.config.port}")
            await asyncio.sleep(0.01)
        log.info("search_started", port=self.port)

    async def run(self) -> None:
        """Serve until stopped."""
        assert self._task is not None
        await self._task

    async def stop(self) -> None:
        """End live tails, stop accepting, finish requests, close the backend; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        closing_event(self.app).set()
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._backend.close()
        log.info("search_stopped")
