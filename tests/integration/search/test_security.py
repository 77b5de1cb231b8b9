"""Search security, second round: each hole of the review has a test that failed before its fix.

The server runs in-process on a free port over the embedded index (or, for
the 503 test, an OpenSearch address nobody listens on) and is called over
real HTTP.  Identities: ``team-a`` (token, namespace ``a``), ``admin`` (token,
every namespace).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from podlog.lifecycle import Health
from podlog.metrics import sample
from search.backends.base import SearchBackend
from search.backends.opensearch import OpenSearchBackend
from search.config import AuthConfig, GuardConfig, RateLimitConfig, SearchConfig
from search.service import SearchService
from tests.fixtures.servers import free_port
from tests.integration.search.loading import embedded_close, embedded_open

TEAM_A = "team-a-token-0001"
ADMIN = "admin-token-00001"
SECRETS = f"""
identities:
  - name: team-a
    token: {TEAM_A}
    namespaces: ["a"]
  - name: admin
    token: {ADMIN}
    namespaces: ["*"]
"""
WITHOUT_TEAM_A = f"""
identities:
  - name: admin
    token: {ADMIN}
    namespaces: ["*"]
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    path.write_text(SECRETS)
    return path


Serve = Callable[..., Any]
SERVICES: dict[int, SearchService] = {}
"""Running services by API port, so a test can reach a server's ops port."""


@pytest.fixture
async def serve(tmp_path: Path, secrets_file: Path) -> AsyncIterator[Serve]:
    """Start a search server (embedded index unless a backend is given); returns an httpx client."""
    started: list[tuple[SearchService, httpx.AsyncClient]] = []
    indices: list[Any] = []

    async def start(backend: SearchBackend | None = None, **overrides: Any) -> httpx.AsyncClient:
        if backend is None:
            backend = await embedded_open(tmp_path / f"index{len(indices)}")
            indices.append(backend)
        config = dataclasses.replace(
            SearchConfig(),
            listen="127.0.0.1:0",
            ops_listen="127.0.0.1:0",
            backend="embedded",
            auth=overrides.pop(
                "auth", AuthConfig(mode="token", secrets_file=str(secrets_file), reload_seconds=0.2)
            ),
            tail_poll_seconds=0.1,
            **overrides,
        )
        service = SearchService(config, backend, health=Health())
        await service.start()
        SERVICES[service.port] = service
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30)
        started.append((service, client))
        return client

    yield start
    for service, client in started:
        SERVICES.pop(service.port, None)
        await client.aclose()
        await service.stop()
    for index in indices:
        await embedded_close(index)


def guards(**changes: Any) -> GuardConfig:
    return dataclasses.replace(GuardConfig(), **changes)


async def next_event(lines: AsyncIterator[str], name: str, seconds: float) -> dict[str, Any]:
    """The data of the next SSE event called ``name``, within ``seconds``."""
    async with asyncio.timeout(seconds):
        event = ""
        async for line in lines:
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == name:
                return dict(orjson.loads(line.removeprefix("data: ")))
    raise AssertionError(f"the stream ended without an {name!r} event")


# Hole 1: a live tail outlives the revocation of its token, and has no maximum duration.


async def test_revoking_a_token_closes_its_live_tail(serve: Serve, secrets_file: Path) -> None:
    """Removing team-a's token from the secrets file ends team-a's open tail with an error event saying why."""
    client = await serve()
    async with client.stream("GET", "/api/tail", headers=bearer(TEAM_A)) as tail:
        lines = tail.aiter_lines()
        await next_event(lines, "ready", 10)
        secrets_file.write_text(WITHOUT_TEAM_A)
        os.utime(secrets_file, ns=(time.time_ns(), time.time_ns()))
        error = await next_event(lines, "error", 10)
    assert error["reason"] == "revoked"
    assert "revoked" in error["error"]
    assert (await client.get("/api/whoami", headers=bearer(TEAM_A))).status_code == 401


async def test_a_live_tail_ends_at_its_maximum_duration(serve: Serve) -> None:
    """A tail open longer than guards.max_tail_seconds ends with a max_duration error event."""
    client = await serve(guards=guards(max_tail_seconds=0.5))
    async with client.stream("GET", "/api/tail", headers=bearer(ADMIN)) as tail:
        lines = tail.aiter_lines()
        await next_event(lines, "ready", 10)
        assert (await next_event(lines, "error", 10))["reason"] == "max_duration"


async def test_an_idle_live_tail_ends(serve: Serve) -> None:
    """A tail that sent no line for guards.tail_idle_seconds ends with an idle error event."""
    client = await serve(guards=guards(tail_idle_seconds=0.5))
    before = sample("podlog_search_tail_ends_total", {"reason": "idle"})
    async with client.stream("GET", "/api/tail", headers=bearer(ADMIN)) as tail:
        lines = tail.aiter_lines()
        await next_event(lines, "ready", 10)
        assert (await next_event(lines, "error", 10))["reason"] == "idle"
    deadline = time.monotonic() + 10
    while sample("podlog_search_tail_ends_total", {"reason": "idle"}) == before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sample("podlog_search_tail_ends_total", {"reason": "idle"}) == before + 1


# Hole 2: the tail cap is counted after the first await, so concurrent opens all pass.


async def test_ten_concurrent_tails_against_a_cap_of_two_accept_exactly_two(serve: Serve) -> None:
    """Ten tails opened at once against max_tail_streams=2: two are served, eight get 429 with Retry-After."""
    client = await serve(guards=guards(max_tail_streams=2, max_tail_streams_per_identity=10))
    responses = await asyncio.gather(
        *(client.send(client.build_request("GET", "/api/tail", headers=bearer(ADMIN)), stream=True) for _ in range(10))
    )
    try:
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 2 + [429] * 8
        for refused in (r for r in responses if r.status_code == 429):
            await refused.aread()
            assert int(refused.headers["retry-after"]) >= 1
            assert "request_id" in refused.json()
    finally:
        for response in responses:
            await response.aclose()


async def test_the_tail_cap_per_identity_leaves_others_their_share(serve: Serve) -> None:
    """With one tail per identity, team-a's second tail is refused while admin still gets one."""
    client = await serve(guards=guards(max_tail_streams_per_identity=1))
    async with client.stream("GET", "/api/tail", headers=bearer(TEAM_A)) as first:
        await next_event(first.aiter_lines(), "ready", 10)
        second = await client.get("/api/tail", headers=bearer(TEAM_A))
        assert second.status_code == 429 and "you already have 1" in second.json()["error"]
        async with client.stream("GET", "/api/tail", headers=bearer(ADMIN)) as other:
            assert other.status_code == 200


# Hole 3: a broken secrets file on reload kept the old tokens silently.


async def test_a_broken_reload_keeps_old_tokens_stays_ready_and_is_counted(serve: Serve, secrets_file: Path) -> None:
    """A broken secrets file keeps serving the last good tokens, /readyz stays 200, and the error is counted."""
    client = await serve()
    ops = httpx.AsyncClient(base_url=client.base_url.copy_with(port=_ops_port(client)), timeout=10)
    before = sample("podlog_search_secrets_reload_errors_total", {"reason": "invalid"})
    secrets_file.write_text("identities:\n  - name: team-a\n    password_sha256: abc\n    namespaces: [a]\n")
    try:
        deadline = time.monotonic() + 10
        while sample("podlog_search_secrets_reload_errors_total", {"reason": "invalid"}) == before:
            assert time.monotonic() < deadline, "the broken reload was never counted"
            assert (await client.get("/api/whoami", headers=bearer(TEAM_A))).status_code == 200
            await asyncio.sleep(0.05)
        assert (await client.get("/api/whoami", headers=bearer(TEAM_A))).status_code == 200
        assert (await ops.get("/readyz")).status_code == 200
        metrics = (await ops.get("/metrics")).text
        assert 'podlog_search_secrets_reload_errors_total{reason="invalid"}' in metrics
        assert "podlog_search_secrets_loaded_timestamp_seconds" in metrics
    finally:
        await ops.aclose()


def _ops_port(client: httpx.AsyncClient) -> int:
    """The ops port of the server ``client`` talks to (the fixture keeps the services)."""
    return SERVICES[client.base_url.port or 0].ops_port


# Hole 4: integer and date overflows were a 500 on the embedded backend.


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"q": "offset:99999999999999999999999999"}, ("position", 7)),
        ({"q": "level:info AND log.offset:[0 TO 99999999999999999999]"}, ("position", 26)),
        ({"q": "timestamp_ns:>99999999999999999999"}, ("position", 13)),
        ({"start": "99999999999999999999"}, ("parameter", "start")),
        ({"end": "now+999999999999w"}, ("parameter", "end")),
        ({"start": "9999-12-31T23:59:59Z"}, ("parameter", "start")),
        ({"start": "now-" + "9" * 5000 + "s"}, ("parameter", "start")),
        ({"size": "9" * 5000}, ("parameter", "size")),
        ({"cursor": "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAsMCwiIl0"}, ("parameter", "cursor")),
        ({"q": "timeout~."}, ("error", "syntax error: ~ and ^ must be followed by a number")),
    ],
)
async def test_overflowing_numbers_and_times_are_a_400_that_says_where(
    serve: Serve, params: dict[str, str], where: tuple[str, Any]
) -> None:
    """Numbers beyond 64 bits in q, times past the representable range, and huge cursors are 400s."""
    client = await serve()
    response = await client.get("/api/search", params=params, headers=bearer(ADMIN))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body[where[0]] == where[1], body
    assert body["request_id"] == response.headers["x-request-id"]


async def test_huge_numbers_on_untyped_fields_and_timestamps_are_not_errors(serve: Serve) -> None:
    """json.* values and @timestamp bounds beyond 64 bits are compared, not crashed on."""
    client = await serve()
    for q in ("json.size:99999999999999999999999", "@timestamp:[9999-12-31T23:59:59Z TO *]"):
        response = await client.get("/api/search", params={"q": q}, headers=bearer(ADMIN))
        assert response.status_code == 200, (q, response.text)
        assert response.json()["hits"] == []


# Hole 5: a 503 body revealed the OpenSearch host and port.


async def test_a_503_names_no_address_and_logs_the_detail_under_its_request_id(serve: Serve) -> None:
    """With OpenSearch down the client reads a plain 503 and a request id; the log has host and port."""
    port = free_port()
    client = await serve(backend=OpenSearchBackend([f"http://127.0.0.1:{port}"], "down", request_timeout=2))
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = await client.get("/api/search", headers=bearer(ADMIN))
    assert response.status_code == 503
    assert str(port) not in response.text and "127.0.0.1" not in response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    failed = [e for e in logs if e["event"] == "backend_failed"]
    assert failed and str(port) in failed[0]["error"]
    assert failed[0]["request_id"] == body["request_id"]


class ExplodingBackend:
    """A backend whose every call fails with an error no handler expects."""

    name = "exploding"

    async def search(self, request: Any) -> Any:
        raise RuntimeError("disk /var/lib/podlog/secret.db at 10.0.0.7:9200 is on fire")

    histogram = top_values = context = tail = search

    async def close(self) -> None:
        return None


async def test_an_unexpected_error_is_a_json_500_without_stack_or_path(serve: Serve) -> None:
    """A crash inside a handler is the JSON error shape with a request id; the stack goes to the log."""
    client = await serve(backend=ExplodingBackend())
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = await client.get("/api/search", headers=bearer(ADMIN))
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"error", "request_id"} and body["request_id"] in body["error"]
    assert "/var/lib" not in response.text and "10.0.0.7" not in response.text and "Traceback" not in response.text
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert len(failed) == 1 and failed[0]["request_id"] == body["request_id"] and failed[0]["exc_info"]
    assert (await client.get("/no/such/route")).json()["error"] == "not found"


# Hole 6: header mode believed identity headers from any client that uvicorn's proxy settings trusted.


async def test_a_forwarded_for_header_cannot_make_a_peer_trusted(serve: Serve, secrets_file: Path) -> None:
    """Only the TCP peer counts: X-Forwarded-For naming a trusted proxy is refused with 401 and counted."""
    client = await serve(
        auth=AuthConfig(
            mode="header", secrets_file=str(secrets_file), trusted_header="X-Auth-User", trusted_proxies=["10.9.9.9/32"]
        )
    )
    before = sample("podlog_search_auth_failures_total", {"reason": "untrusted"})
    spoofed = await client.get(
        "/api/whoami", headers={"X-Auth-User": "admin", "X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9"}
    )
    assert spoofed.status_code == 401
    assert sample("podlog_search_auth_failures_total", {"reason": "untrusted"}) == before + 1


# Beyond the holes: the rate limit, request ids and the audit log.


async def test_rate_limit_answers_429_with_retry_after(serve: Serve) -> None:
    """Past its burst an identity gets 429 with Retry-After; another identity is unaffected."""
    client = await serve(rate_limit=RateLimitConfig(mode="enabled", requests_per_second=0.5, burst=2))
    codes = [(await client.get("/api/whoami", headers=bearer(TEAM_A))).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = await client.get("/api/whoami", headers=bearer(TEAM_A))
    assert int(limited.headers["retry-after"]) >= 1
    assert (await client.get("/api/whoami", headers=bearer(ADMIN))).status_code == 200


async def test_rate_limit_is_off_by_default_on_the_embedded_index(serve: Serve) -> None:
    """rate_limit.mode auto does not limit podlog run (embedded backend)."""
    client = await serve(rate_limit=RateLimitConfig(requests_per_second=0.5, burst=1))
    codes = {(await client.get("/api/whoami", headers=bearer(ADMIN))).status_code for _ in range(5)}
    assert codes == {200}


async def test_audit_log_says_who_queried_what_without_the_token(serve: Serve) -> None:
    """One search writes one search.audit line: identity, namespaces, query, range, results; never the token."""
    client = await serve()
    with capture_logs() as logs:
        response = await client.get("/api/search", params={"q": "hello"}, headers=bearer(TEAM_A))
    assert response.status_code == 200
    audited = [e for e in logs if e["event"] == "search_audited"]
    assert len(audited) == 1
    line = audited[0]
    assert line["identity"] == "team-a" and line["namespaces"] == ["a"] and line["q"] == "hello"
    assert line["results"] == 0 and line["status"] == 200 and line["start_ns"] < line["end_ns"]
    assert line["request_id"] == response.headers["x-request-id"]
    assert TEAM_A not in orjson.dumps(logs).decode()


async def test_audit_log_can_be_turned_off(serve: Serve) -> None:
    """search.audit_log false writes no audit line."""
    client = await serve(audit_log=False)
    with capture_logs() as logs:
        assert (await client.get("/api/search", headers=bearer(ADMIN))).status_code == 200
    assert not [e for e in logs if e["event"] == "search_audited"]
