"""The search process: uvicorn serving :func:`search.app.create_app` as a Service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from podlog.lifecycle import Health
from podlog.logging import get_logger
from podlog.ops import HttpServer
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
        self.app = create_app(config, backend, health)
        self._backend = backend
        self._http = HttpServer(self.name, self.app, config.listen, graceful_seconds=3)
        self._probe: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._http.port

    async def start(self) -> None:
        """Bind and start serving; raises if the address cannot be bound."""
        await self._http.start()
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
        await self._http.run()

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
        await self._http.stop()
        await self._backend.close()
        log.info("search_stopped")
