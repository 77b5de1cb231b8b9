"""The search HTTP API over real OpenSearch: auth, namespace authorization, guards, streams.

The server runs in-process on a free port (uvicorn, as in production) and is
called over real HTTP.  Identities: ``team-a`` (token, namespace ``a`` only),
``admin`` (token, every namespace), ``alice`` (password; used in basic mode).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opensearchpy import OpenSearch

from podlog.lifecycle import Health
from podlog.metrics import sample
from search.backends.opensearch import OpenSearchBackend
from search.config import AuthConfig, SearchConfig
from search.passwords import hash_password
from search.service import SearchService
from tests.fixtures.records import BASE_NS, MS, ContainerSpec, one_line
from tests.integration.search.conftest import CORPUS
from tests.integration.search.loading import opensearch_add, opensearch_load, unique_prefix

TEAM_A = "team-a-token-0001"
ADMIN = "admin-token-00001"
RANGE = {"start": str(BASE_NS // MS - 1), "end": str(BASE_NS // MS + 10_000)}
IN_A = sum(1 for r in CORPUS if r["kubernetes"]["namespace"] == "a")
IN_B = len(CORPUS) - IN_A

ALICE_HASH = hash_password("correct-horse")

SECRETS = f"""
identities:
  - name: team-a
    token: {TEAM_A}
    namespaces: ["a"]
  - name: admin
    token: {ADMIN}
    namespaces: ["*"]
  - name: alice
    password_hash: {ALICE_HASH}
    namespaces: ["b", "c-*"]
"""


@pytest.fixture(scope="module")
def api_prefix(opensearch_any: str) -> str:
    """The corpus, indexed once for this module."""
    prefix = unique_prefix("api")
    opensearch_load(opensearch_any, prefix, CORPUS)
    return prefix


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    path.write_text(SECRETS)
    return path


Server = Callable[..., Any]


@pytest.fixture
async def serve(opensearch_any: str, secrets_file: Path) -> AsyncIterator[Server]:
    """Start a search server over an index prefix; returns an httpx client for it."""
    started: list[tuple[SearchService, httpx.AsyncClient]] = []

    async def start(prefix: str, **overrides: Any) -> httpx.AsyncClient:
        auth = overrides.pop("auth", AuthConfig(mode="token", secrets_file=str(secrets_file)))
        config = dataclasses.replace(
            SearchConfig(),
            listen="127.0.0.1:0",
            ops_listen="127.0.0.1:0",
            index_prefix=prefix,
            auth=auth,
            tail_poll_seconds=0.1,
            **overrides,
        )
        service = SearchService(config, OpenSearchBackend([opensearch_any], prefix), health=Health())
        await service.start()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30)
        started.append((service, client))
        return client

    yield start
    for service, client in started:
        await client.aclose()
        await service.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def namespaces(hits: list[dict[str, Any]]) -> set[str]:
    return {h["kubernetes"]["namespace"] for h in hits}


async def test_api_requires_authentication(serve: Server, api_prefix: str) -> None:
    """Without a valid token every endpoint answers 401 with a Bearer challenge."""
    client = await serve(api_prefix)
    for path in ("/api/search", "/api/histogram", "/api/top?field=pod", "/api/context/x", "/api/tail", "/api/export"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/api/search", headers=bearer("not-a-token"))
    assert wrong.status_code == 401
    assert sample("podlog_search_auth_failures_total", {"reason": "invalid"}) >= 1


async def test_search_returns_full_records_newest_first_with_paging(serve: Server, api_prefix: str) -> None:
    """Pages of the search API join into every record newest first, no gaps or repeats."""
    client = await serve(api_prefix)
    collected: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**RANGE, "size": 40, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/search", params=params, headers=bearer(ADMIN))).json()
        collected += page["hits"]
        assert page["total"] == len(CORPUS)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    keys = [(h["timestamp_ns"], h["log"]["offset"], h["event"]["id"]) for h in collected]
    assert keys == sorted(keys, reverse=True)
    assert len({h["event"]["id"] for h in collected}) == len(CORPUS) == len(collected)


async def test_token_limited_to_a_never_sees_b(serve: Server, api_prefix: str) -> None:
    """team-a gets only namespace a from search, histogram, top, context and export, whatever it asks."""
    client = await serve(api_prefix)
    headers = bearer(TEAM_A)
    asks: list[dict[str, Any]] = [
        {**RANGE},
        {**RANGE, "namespace": "b"},
        {**RANGE, "q": "namespace:b"},
        {**RANGE, "q": "ns:b OR namespace:a"},
    ]
    for ask in asks:
        page = (await client.get("/api/search", params={**ask, "size": 1000}, headers=headers)).json()
        assert "b" not in namespaces(page["hits"]), ask
        histogram = (await client.get("/api/histogram", params=ask, headers=headers)).json()
        assert histogram["total"] <= IN_A
        top = (await client.get("/api/top", params={**ask, "field": "namespace"}, headers=headers)).json()
        assert {v["value"] for v in top["values"]} <= {"a"}
        export = await client.get("/api/export", params=ask, headers=headers)
        exported = [orjson.loads(line) for line in export.content.splitlines()]
        assert "b" not in namespaces(exported)
    everything = (await client.get("/api/search", params={**RANGE, "size": 1000}, headers=headers)).json()
    assert everything["total"] == IN_A
    in_b = next(r for r in CORPUS if r["kubernetes"]["namespace"] == "b")
    in_a = next(r for r in CORPUS if r["kubernetes"]["namespace"] == "a")
    forbidden = await client.get(f"/api/context/{in_b['event']['id']}", headers=headers)
    assert forbidden.status_code == 404
    allowed = await client.get(f"/api/context/{in_a['event']['id']}", headers=headers)
    assert allowed.status_code == 200
    admin = (await client.get("/api/search", params={**RANGE, "namespace": "b"}, headers=bearer(ADMIN))).json()
    assert admin["total"] == IN_B


async def test_histogram_counts_add_up_to_search_total(serve: Server, api_prefix: str) -> None:
    """The histogram's buckets sum to the search total and its interval is a round one."""
    client = await serve(api_prefix)
    params = {**RANGE, "q": "level:error OR level:warning"}
    page = (await client.get("/api/search", params=params, headers=bearer(ADMIN))).json()
    histogram = (await client.get("/api/histogram", params=params, headers=bearer(ADMIN))).json()
    assert sum(b["count"] for b in histogram["buckets"]) == histogram["total"] == page["total"]
    assert histogram["interval_ns"] == 200 * MS  # 10 s in at most 60 buckets


async def test_context_is_in_file_order(serve: Server, api_prefix: str) -> None:
    """Context returns the anchor's neighbours from its file and stream by offset."""
    client = await serve(api_prefix)
    sidecar = sorted(
        (r for r in CORPUS if r["kubernetes"]["container"]["name"] == "sidecar"),
        key=lambda r: r["log"]["offset"],
    )
    anchor = sidecar[10]
    response = await client.get(
        f"/api/context/{anchor['event']['id']}", params={"before": 3, "after": 2}, headers=bearer(ADMIN)
    )
    body = response.json()
    assert [r["log"]["offset"] for r in body["before"]] == [r["log"]["offset"] for r in sidecar[7:10]]
    assert body["anchor"] == anchor
    assert [r["log"]["offset"] for r in body["after"]] == [r["log"]["offset"] for r in sidecar[11:13]]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": "level:error AND (timeout"}, "syntax error"),
        ({"q": "*rror"}, "leading wildcard"),
        ({"q": "/err.*/"}, "regular expressions are disabled"),
        ({"q": "nosuchfield:x"}, "unknown field"),
        ({"start": "now-90d", "end": "now"}, "time range is longer"),
        ({"size": "100000"}, "size"),
        ({"start": "yesterday"}, "start"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
async def test_bad_queries_and_guards_are_clear_400s(
    serve: Server, api_prefix: str, params: dict[str, str], fragment: str
) -> None:
    """Invalid queries and requests beyond a guard get 400 with a message naming the problem."""
    client = await serve(api_prefix)
    response = await client.get("/api/search", params=params, headers=bearer(ADMIN))
    assert response.status_code == 400
    assert fragment in response.json()["error"]


async def test_query_error_reports_its_position(serve: Server, api_prefix: str) -> None:
    """A rejected term's character position comes back for the page to point at."""
    client = await serve(api_prefix)
    response = await client.get("/api/search", params={"q": "level:error AND *rror"}, headers=bearer(ADMIN))
    assert response.status_code == 400
    assert response.json()["position"] == 16


async def test_export_streams_every_match_as_ndjson(serve: Server, api_prefix: str) -> None:
    """Export pages through all matches, newest first, one record per line, capped by limit."""
    client = await serve(api_prefix)
    response = await client.get("/api/export", params={**RANGE, "q": "level:info"}, headers=bearer(ADMIN))
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    expected = sum(1 for r in CORPUS if r["level"] == "info")
    assert len(lines) == expected
    assert all(r["level"] == "info" for r in lines)
    capped = await client.get("/api/export", params={**RANGE, "limit": 5}, headers=bearer(ADMIN))
    assert len(capped.content.splitlines()) == 5


async def _read_events(lines: AsyncIterator[str], want: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    event = ""
    async for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = orjson.loads(line[6:])
            events.append((event, data))
            if want(event, data):
                return events
    return events


async def test_tail_streams_lines_indexed_after_it_opened(serve: Server, opensearch_any: str) -> None:
    """A tail limited to namespace a receives a matching line indexed later, and never b's lines."""
    prefix = unique_prefix("tail")
    now = time.time_ns()
    spec_a, spec_b = ContainerSpec("a", "web-9", "app"), ContainerSpec("b", "web-9", "app")
    old = [one_line(spec_a, timestamp_ns=now - 5 * 1_000_000_000, offset=0, message="old boom", level="error")]
    await asyncio.to_thread(opensearch_load, opensearch_any, prefix, old)
    client = await serve(prefix)
    async with client.stream("GET", "/api/tail", params={"q": "boom"}, headers=bearer(TEAM_A)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert await anext(lines) == "event: ready"
        new = [
            one_line(spec_b, timestamp_ns=now, offset=100, message="b boom", level="error"),
            one_line(spec_a, timestamp_ns=now, offset=100, message="quiet", level="info"),
            one_line(spec_a, timestamp_ns=now + 1, offset=200, message="new boom", level="error"),
        ]
        writer = OpenSearch([opensearch_any])
        try:
            await asyncio.to_thread(opensearch_add, writer, prefix, new)
        finally:
            writer.close()
        async with asyncio.timeout(20):
            events = await _read_events(lines, lambda event, _: event == "records")
    records = [r for event, data in events if event == "records" for r in data["records"]]
    assert [r["message"] for r in records] == ["new boom"]


async def test_tail_picks_up_a_late_line_within_lookback(serve: Server, opensearch_any: str) -> None:
    """A line indexed after a newer one, with an older timestamp inside the lookback, still streams."""
    prefix = unique_prefix("late")
    now = time.time_ns()
    spec = ContainerSpec("a", "late-0", "app")
    await asyncio.to_thread(
        opensearch_load, opensearch_any, prefix, [one_line(spec, timestamp_ns=now, offset=0, message="first")]
    )
    client = await serve(prefix)
    async with client.stream("GET", "/api/tail", headers=bearer(ADMIN)) as response:
        lines = response.aiter_lines()
        assert await anext(lines) == "event: ready"
        late = one_line(spec, timestamp_ns=now - 2_000_000_000, offset=500, message="late but true")
        writer = OpenSearch([opensearch_any])
        try:
            await asyncio.to_thread(opensearch_add, writer, prefix, [late])
        finally:
            writer.close()
        async with asyncio.timeout(20):
            events = await _read_events(lines, lambda event, _: event == "records")
    assert [r["message"] for e, d in events if e == "records" for r in d["records"]] == ["late but true"]


async def test_basic_auth_mode_maps_user_to_namespaces(serve: Server, api_prefix: str, secrets_file: Path) -> None:
    """In basic mode alice's password gives her namespace b only; a wrong password is 401."""
    client = await serve(api_prefix, auth=AuthConfig(mode="basic", secrets_file=str(secrets_file)))
    good = base64.b64encode(b"alice:correct-horse").decode()
    params = {**RANGE, "size": 1000}
    page = (await client.get("/api/search", params=params, headers={"Authorization": f"Basic {good}"})).json()
    assert page["total"] == IN_B and namespaces(page["hits"]) == {"b"}
    bad = base64.b64encode(b"alice:wrong").decode()
    response = await client.get("/api/search", headers={"Authorization": f"Basic {bad}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_trusted_header_mode_believes_only_the_proxy(serve: Server, api_prefix: str, secrets_file: Path) -> None:
    """In header mode the user header names the identity; an unknown user is 403."""
    client = await serve(
        api_prefix, auth=AuthConfig(mode="header", secrets_file=str(secrets_file), trusted_header="X-Auth-User")
    )
    page = (await client.get("/api/search", params=RANGE, headers={"X-Auth-User": "team-a"})).json()
    assert page["total"] == IN_A
    assert (await client.get("/api/search", headers={"X-Auth-User": "mallory"})).status_code == 403
    assert (await client.get("/api/search")).status_code == 401
    untrusted = await serve(
        api_prefix,
        auth=AuthConfig(
            mode="header", secrets_file=str(secrets_file), trusted_header="X-Auth-User", trusted_proxies=["10.9.9.9/32"]
        ),
    )
    assert (await untrusted.get("/api/search", headers={"X-Auth-User": "admin"})).status_code == 401


OPS_ROUTES = ("/metrics", "/healthz", "/readyz")


async def test_page_and_authenticated_openapi_are_served(serve: Server, api_prefix: str) -> None:
    """The page comes with a strict CSP; the OpenAPI spec asks for a token and lists every endpoint."""
    client = await serve(api_prefix)
    page = await client.get("/")
    assert page.status_code == 200 and "<title>podlog search</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert (await client.get("/static/app.js")).status_code == 200
    refused = await client.get("/openapi.json")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    spec = (await client.get("/openapi.json", headers=bearer(TEAM_A))).json()
    assert {"/api/search", "/api/histogram", "/api/top", "/api/context/{event_id}", "/api/tail", "/api/export"} <= set(
        spec["paths"]
    )


async def test_openapi_off_is_not_served(serve: Server, api_prefix: str) -> None:
    """With search.openapi off, /openapi.json is a 404 even with a valid token."""
    client = await serve(api_prefix, openapi="off")
    assert (await client.get("/openapi.json", headers=bearer(ADMIN))).status_code == 404
    assert (await client.get("/api/whoami", headers=bearer(ADMIN))).status_code == 200


async def test_public_port_serves_no_ops_route(serve: Server, api_prefix: str) -> None:
    """/metrics, /healthz and /readyz are 404 on the API port, with or without credentials."""
    client = await serve(api_prefix)
    for path in OPS_ROUTES:
        assert (await client.get(path)).status_code == 404, path
        assert (await client.get(path, headers=bearer(ADMIN))).status_code == 404, path


async def test_ops_routes_answer_on_their_own_port(opensearch_any: str, api_prefix: str, secrets_file: Path) -> None:
    """The ops port serves /healthz, /readyz and /metrics (with the API's counters), and no API route."""
    config = dataclasses.replace(
        SearchConfig(),
        listen="127.0.0.1:0",
        ops_listen="127.0.0.1:0",
        index_prefix=api_prefix,
        auth=AuthConfig(mode="token", secrets_file=str(secrets_file)),
    )
    service = SearchService(config, OpenSearchBackend([opensearch_any], api_prefix), health=Health())
    await service.start()
    try:
        assert service.ops_port and service.ops_port != service.port
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30) as api,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.ops_port}", timeout=30) as ops,
        ):
            assert (await api.get("/api/search", params=RANGE, headers=bearer(ADMIN))).status_code == 200
            assert (await ops.get("/healthz")).status_code == 200
            assert (await ops.get("/readyz")).json()["status"] == "ready"
            assert b'podlog_search_requests_total{endpoint="search"' in (await ops.get("/metrics")).content
            for path in ("/", "/api/search", "/openapi.json", "/static/app.js"):
                assert (await ops.get(path, headers=bearer(ADMIN))).status_code == 404, path
    finally:
        await service.stop()


async def test_ops_listen_empty_serves_no_ops_port(api_prefix: str, opensearch_any: str) -> None:
    """search.ops_listen empty: no second listener, and the API port still has no ops route."""
    config = dataclasses.replace(
        SearchConfig(), listen="127.0.0.1:0", ops_listen="", index_prefix=api_prefix, auth=AuthConfig(mode="none")
    )
    service = SearchService(config, OpenSearchBackend([opensearch_any], api_prefix), health=Health())
    await service.start()
    try:
        assert service.ops_port == 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30) as api:
            assert (await api.get("/healthz")).status_code == 404
            assert (await api.get("/api/whoami")).status_code == 200
    finally:
        await service.stop()


async def test_unreachable_index_is_503_and_not_ready(secrets_file: Path) -> None:
    """With OpenSearch down, searches answer 503 and /readyz says why."""
    from tests.fixtures.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    config = dataclasses.replace(
        SearchConfig(),
        listen="127.0.0.1:0",
        ops_listen="127.0.0.1:0",
        auth=AuthConfig(mode="token", secrets_file=str(secrets_file)),
    )
    service = SearchService(config, OpenSearchBackend([dead], "down", request_timeout=2), health=Health())
    await service.start()
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30) as client,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.ops_port}", timeout=30) as ops,
        ):
            response = await client.get("/api/search", headers=bearer(ADMIN))
            assert response.status_code == 503
            assert "unreachable" in response.json()["error"]

            async def not_ready() -> dict[str, Any]:
                return dict((await ops.get("/readyz")).json())

            deadline = time.monotonic() + 20
            body = await not_ready()
            while body["status"] == "ready" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                body = await not_ready()
            assert body["reasons"] == {"search_backend": "opensearch does not answer"}
    finally:
        await service.stop()


async def test_live_tails_beyond_the_cap_are_refused(serve: Server, api_prefix: str) -> None:
    """Once max_tail_streams tails are open, the next one gets 429 until one closes."""
    client = await serve(api_prefix, guards=dataclasses.replace(SearchConfig().guards, max_tail_streams=1))
    async with client.stream("GET", "/api/tail", headers=bearer(ADMIN)) as first:
        assert await anext(first.aiter_lines()) == "event: ready"
        refused = await client.get("/api/tail", headers=bearer(ADMIN))
        assert refused.status_code == 429
    async with asyncio.timeout(10):
        while True:  # polled: the server counts the stream closed once it sees the disconnect
            async with client.stream("GET", "/api/tail", headers=bearer(ADMIN)) as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.1)
