"""The whole search API fuzzed from its own /openapi.json (Schemathesis) against a live ``podlog run``.

``podlog run --demo`` runs as a real subprocess with token auth, so the index
holds the demo's lines and every request passes authentication.  For each
operation of the served document Schemathesis generates requests (bounded in
examples and in time) and checks that none is answered 500 and that every
status, content type, header and body matches the document.  Half the
requests are schema-valid, half deliberately not (wrong types, missing
required parameters).  Live tails are
capped at one second by the server's own setting, so each tail example ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Err

from tests.fixtures.servers import free_port
from tests.integration.single_node.runner import RunProcess, start_run

TOKEN = "fuzz-token-000001"
BUDGET_SECONDS = 45.0
"""The whole fuzz run stays under this (the suite wants it under a minute)."""
EXAMPLES = {"GET /api/tail": 6, "GET /api/export": 15}
"""Examples per operation where the default is too many: tails last up to a second each."""
DEFAULT_EXAMPLES = 40

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def podlog_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunProcess]:
    """``podlog run --demo`` with token auth and short tails, ready to answer; stopped by its PID."""
    base = tmp_path_factory.mktemp("fuzz")
    secrets = base / "identities.yaml"
    secrets.write_text(f"identities:\n  - {{name: fuzzer, token: {TOKEN}, namespaces: ['*']}}\n")
    config = base / "podlog.yaml"
    config.write_text(
        "search:\n"
        "  auth:\n"
        "    mode: token\n"
        f"    secrets_file: {secrets}\n"
        "  tail_poll_seconds: 0.2\n"
        "  guards:\n"
        "    max_tail_seconds: 1.0\n"
    )
    run = start_run(["--config", str(config), "--demo", "--data-dir", str(base / "data")], free_port(), base / "out")
    try:
        deadline = time.monotonic() + 60
        while True:
            if run.popen.poll() is not None:
                raise RuntimeError(f"podlog run exited: {run.tail()}")
            try:
                if httpx.get(run.url + "/api/whoami", headers=_auth(), timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"podlog run did not answer: {run.tail()}")
            time.sleep(0.1)
        yield run
    finally:
        run.stop()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _operations(schema: Any) -> list[Any]:
    """Every operation of the document; an operation Schemathesis cannot read fails the test."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the OpenAPI document has an invalid operation: {result.err()}")
        found.append(result.ok())
    return found


def test_the_openapi_document_is_valid_and_complete(podlog_run: RunProcess) -> None:
    """The served document loads in Schemathesis and describes every /api route."""
    spec = httpx.get(podlog_run.url + "/openapi.json", headers=_auth(), timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    labels = {operation.label for operation in _operations(schema)}
    assert labels == {
        "GET /api/search",
        "GET /api/histogram",
        "GET /api/top",
        "GET /api/context/{event_id}",
        "GET /api/tail",
        "GET /api/export",
        "GET /api/whoami",
    }


@pytest.mark.slow
def test_every_operation_survives_schema_driven_fuzzing(podlog_run: RunProcess) -> None:
    """Generated requests to every operation get no 500, and every response matches the document."""
    spec = httpx.get(podlog_run.url + "/openapi.json", headers=_auth(), timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    started = time.monotonic()
    operations = _operations(schema)
    calls: dict[str, int] = {}
    for index, operation in enumerate(operations):
        share = max(1.0, (BUDGET_SECONDS - (time.monotonic() - started)) / (len(operations) - index))
        examples = EXAMPLES.get(operation.label, DEFAULT_EXAMPLES)
        calls[operation.label] = _fuzz(operation, podlog_run.url, examples, share)
    assert time.monotonic() - started < BUDGET_SECONDS + 10, "the fuzz run overran its budget"
    # whoami takes no parameter: one distinct request is all there is to generate.
    assert all(count >= 1 for count in calls.values()) and sum(calls.values()) >= 150, calls


def _fuzz(operation: Any, base_url: str, examples: int, seconds: float) -> int:
    """Run up to ``examples`` generated cases of ``operation`` (fewer when ``seconds`` run out); how many ran."""
    stop_at = time.monotonic() + seconds
    calls = [0]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE))
    def run(case: Any) -> None:
        if time.monotonic() > stop_at:
            return
        calls[0] += 1
        case.call_and_validate(base_url=base_url, headers=_auth(), checks=CHECKS, timeout=15)

    run()
    return calls[0]
