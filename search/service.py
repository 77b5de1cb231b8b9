"""The search process: uvicorn serving :func:`search.app.create_app` as a Service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

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

_PROBE_SECONDS = 10.0


def open_backend(settings: Settings) -> SearchBackend:
    """The OpenSearch backend named by ``settings.search``."""
    from search.backends.opensearch import OpenSearchBackend

    config = settings.search
    return OpenSearchBackend(
        config.opensearch_hosts,
        config.index_prefix,
        request_timeout=config.guards.timeout_seconds + 5,
        username=config.opensearch_username,
        password=config.opensearch_password,
        verify_certs=config.opensearch_verify_certs,
        ca_certs=config.opensearch_ca_certs,
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
        self._probe: asyncio.Task[None] | None = None
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
        ping = getattr(self._backend, "ping", None)
        if ping is not None:
            self._probe = asyncio.create_task(self._probe_backend(ping), name="search-backend-probe")

    async def _probe_backend(self, ping: Callable[[], Awaitable[bool]]) -> None:
        """Keep /readyz current: ready while the backend answers its ping."""
        api = self.app.state.api
        while not self._stopped:
            try:
                ok = await ping()
            except Exception as exc:  # noqa: BLE001 - a failing probe means not ready, never a crash
                ok = False
                log.warning("backend_probe_failed", error=repr(exc))
            reason = None if ok else f"{self._backend.name} does not answer"
            if reason != api.backend_error:
                log.info("backend_readiness_changed", ready=ok, backend=self._backend.name)
            api.backend_error = reason
            await asyncio.sleep(_PROBE_SECONDS)

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
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._backend.close()
        log.info("search_stopped")
