"""CRUD under /api/alerts/rules: stored in the index store, scoped by the token's namespaces.

Runs on the embedded index (a SQLite file beside it) and the OpenSearch
emulator (an index of its own); file rules stay read-only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from podlog.lifecycle import Health
from search.backends.base import SearchBackend
from search.config import AlertsConfig, AuthConfig, SearchConfig
from search.service import SearchService
from tests.integration.search.loading import embedded_open, unique_prefix

TEAM_A = "token-team-a-0123456789"
ADMIN = "token-admin-0123456789a"
FILE_RULES = "rules:\n  - {name: from-git, namespaces: [a], window: 5m, condition: absent}\n"


@pytest.fixture(params=["embedded", "opensearch"])
async def make_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Start search services (same store) with api_rules on; yields a function returning a client."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(FILE_RULES)
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"identities": [
        {"name": "team-a", "token": TEAM_A, "namespaces": ["a"]},
        {"name": "admin", "token": ADMIN, "namespaces": ["*"]},
    ]}))
    running: list[tuple[SearchService, asyncio.Task[None], httpx.AsyncClient]] = []
    kind = str(request.param)
    url = request.getfixturevalue("opensearch_any") if kind == "opensearch" else ""
    prefix = unique_prefix("rulesapi")

    async def start() -> httpx.AsyncClient:
        backend: SearchBackend
        if kind == "embedded":
            backend = await embedded_open(tmp_path / "index")
        else:
            from search.backends.opensearch import OpenSearchBackend

            backend = OpenSearchBackend([url], prefix)
        config = SearchConfig(
            listen="127.0.0.1:0", ops_listen="", backend=kind, opensearch_hosts=[url or "http://unused"],
            index_prefix=prefix, auth=AuthConfig(mode="token", secrets_file=str(secrets)),
            alerts=AlertsConfig(
                rules_path=str(rules), api_rules=True, evaluation_delay_seconds=0,
                state_file=str(tmp_path / f"state-{len(running)}.json"),  # one per replica
            ),
        )
        service = SearchService(config, backend, health=Health())
        await service.start()
        run = asyncio.create_task(service.run())
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=30)
        running.append((service, run, client))
        return client

    yield start
    for service, run, client in running:
        await client.aclose()
        await service.stop()
        await run


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


RULE = {"name": "a-errors", "query": "level:error", "namespaces": ["a"], "window": "5m", "condition": "count >= 5"}


async def test_a_team_manages_rules_within_its_namespaces_only(make_server: Any) -> None:
    """team-a creates, reads, replaces and deletes a rule in a; a rule for b or for every namespace
    is 403; the file rule is listed but read-only (409)."""
    api = await make_server()
    created = await api.post("/api/alerts/rules", json=RULE, headers=_auth(TEAM_A))
    assert created.status_code == 201, created.text
    assert created.json()["read_only"] is False and created.json()["condition"] == "count >= 5"
    assert (await api.post("/api/alerts/rules", json=RULE, headers=_auth(TEAM_A))).status_code == 409
    for scope in (["b"], [], ["a", "b"]):
        refused = await api.post("/api/alerts/rules", json={**RULE, "name": "x", "namespaces": scope},
                                 headers=_auth(TEAM_A))
        assert refused.status_code == 403, scope
    listed = (await api.get("/api/alerts/rules", headers=_auth(TEAM_A))).json()["rules"]
    assert {(r["name"], r["read_only"]) for r in listed} == {("from-git", True), ("a-errors", False)}
    replaced = await api.put("/api/alerts/rules/a-errors", json={**RULE, "condition": "count >= 9"},
                             headers=_auth(TEAM_A))
    assert replaced.status_code == 200 and replaced.json()["condition"] == "count >= 9"
    assert (await api.delete("/api/alerts/rules/from-git", headers=_auth(TEAM_A))).status_code == 409
    assert (await api.delete("/api/alerts/rules/a-errors", headers=_auth(TEAM_A))).status_code == 204
    assert (await api.get("/api/alerts/rules/a-errors", headers=_auth(TEAM_A))).status_code == 404


async def test_bad_rules_are_400_with_the_key_and_the_query_position(make_server: Any) -> None:
    """An invalid query answers 400 with its position; an unknown group_by field 400 naming it."""
    api = await make_server()
    bad_query = await api.post("/api/alerts/rules", json={**RULE, "query": "level:error AND colour:red"},
                               headers=_auth(ADMIN))
    assert bad_query.status_code == 400
    assert bad_query.json()["position"] == 16 and bad_query.json()["parameter"] == "query"
    bad_group = await api.post("/api/alerts/rules", json={**RULE, "group_by": "colour"}, headers=_auth(ADMIN))
    assert bad_group.status_code == 400 and "unknown field 'colour'" in bad_group.json()["error"]


async def test_a_team_cannot_see_or_change_another_teams_rule(make_server: Any) -> None:
    """The admin's rule in b is invisible to team-a: 404 for GET, PUT and DELETE alike."""
    api = await make_server()
    rule = {**RULE, "name": "b-errors", "namespaces": ["b"]}
    assert (await api.post("/api/alerts/rules", json=rule, headers=_auth(ADMIN))).status_code == 201
    for method in ("GET", "DELETE"):
        assert (await api.request(method, "/api/alerts/rules/b-errors", headers=_auth(TEAM_A))).status_code == 404
    sneaky = await api.put("/api/alerts/rules/b-errors", json={**rule, "namespaces": ["a"]}, headers=_auth(TEAM_A))
    assert sneaky.status_code == 404


async def test_stored_rules_survive_a_restart_and_reach_other_replicas(make_server: Any) -> None:
    """A rule made on one server is in the store: a second server on the same store runs it."""
    first = await make_server()
    assert (await first.post("/api/alerts/rules", json=RULE, headers=_auth(ADMIN))).status_code == 201
    second = await make_server()
    names = [r["name"] for r in (await second.get("/api/alerts/rules", headers=_auth(ADMIN))).json()["rules"]]
    assert names == ["from-git", "a-errors"]
