"""Session fixtures: real Kafka and OpenSearch, chosen once per session.

``kafka_bootstrap``: an explicit ``PODLOG_TEST_KAFKA``, else Kafka in Docker
when a daemon answers, else a local tansu broker.

``opensearch_url``: parametrized over the OpenSearch flavours available:
``PODLOG_TEST_OPENSEARCH`` alone when set, else OpenSearch in Docker, else
both local emulators, ``noida`` and ``osmem`` (they emulate different
things, so search-facing tests run against both).  ``opensearch_any`` is a
single one, for tests that need not run twice; ``fresh_opensearch`` one of
the test's own, for tests that write hundreds of thousands of documents.

``durable_kafka``: tansu on moto S3 storage, restartable, per test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import (
    DurableKafka,
    docker_available,
    kafka_container,
    opensearch_container,
    start_noida,
    start_noida_kafka,
    start_osmem,
    start_tansu,
)

_started = time.monotonic()
DOCKER = docker_available(timeout=1.0)
DOCKER_PROBE_SECONDS = time.monotonic() - _started


def _opensearch_flavours() -> list[str]:
    if os.environ.get("PODLOG_TEST_OPENSEARCH"):
        return ["explicit"]
    if DOCKER:
        return ["docker"]
    return ["noida", "osmem"]


OPENSEARCH_FLAVOURS = _opensearch_flavours()


def pytest_report_header() -> list[str]:
    return [
        f"podlog: docker daemon {'answers' if DOCKER else 'absent'} "
        f"(probe {DOCKER_PROBE_SECONDS:.2f}s); kafka="
        f"{'explicit' if os.environ.get('PODLOG_TEST_KAFKA') else 'docker' if DOCKER else 'tansu'}; "
        f"opensearch={','.join(OPENSEARCH_FLAVOURS)}"
    ]


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory for the logs of servers the session starts."""
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def kafka_backend() -> str:
    if os.environ.get("PODLOG_TEST_KAFKA"):
        return "explicit"
    return "docker" if DOCKER else "tansu"


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_backend: str, server_logs: Path) -> Iterator[str]:
    """A Kafka bootstrap address for the session."""
    if kafka_backend == "explicit":
        yield os.environ["PODLOG_TEST_KAFKA"]
    elif kafka_backend == "docker":
        with kafka_container() as bootstrap:
            yield bootstrap
    else:
        broker = start_tansu(server_logs)
        try:
            yield broker.url
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def idempotent_kafka_bootstrap(
    request: pytest.FixtureRequest, kafka_backend: str, server_logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A broker that supports the idempotent producer: the session's Kafka, or locally noida-db's."""
    if kafka_backend != "tansu":
        yield request.getfixturevalue("kafka_bootstrap")
        return
    broker = start_noida_kafka(server_logs, tmp_path_factory.mktemp("noida-kafka"))
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def durable_kafka(tmp_path: Path) -> Iterator[DurableKafka]:
    """A tansu broker on S3 storage that survives kill -9; ``.stop_broker()``/``.start_broker()``."""
    cluster = DurableKafka(log_dir=tmp_path / "durable-kafka").start()
    try:
        yield cluster
    finally:
        cluster.close()


def _start_opensearch(flavour: str, logs: Path, data: Path) -> Iterator[str]:
    if flavour == "explicit":
        yield os.environ["PODLOG_TEST_OPENSEARCH"]
    elif flavour == "docker":
        with opensearch_container() as url:
            yield url
    elif flavour == "noida":
        proc = start_noida(logs, data)
        try:
            yield proc.url
        finally:
            proc.stop()
    else:
        proc = start_osmem(logs)
        try:
            yield proc.url
        finally:
            proc.stop()


@pytest.fixture(scope="session", params=OPENSEARCH_FLAVOURS)
def opensearch_url(
    request: pytest.FixtureRequest, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An OpenSearch REST URL; tests using it run once per available flavour."""
    flavour = str(request.param)
    yield from _start_opensearch(flavour, server_logs, tmp_path_factory.mktemp(f"{flavour}-data"))


@pytest.fixture(scope="session")
def opensearch_any(server_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One OpenSearch REST URL (the first flavour), for tests that need not run on each."""
    flavour = OPENSEARCH_FLAVOURS[0]
    yield from _start_opensearch(flavour, server_logs, tmp_path_factory.mktemp("any-data"))


@pytest.fixture
def fresh_opensearch(
    request: pytest.FixtureRequest, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An OpenSearch of the test's own, for tests that write hundreds of thousands of documents.

    Locally that is a new noida with an empty data directory per test: noida
    persists its whole data set as one JSON file rewritten every few seconds,
    so one shared across such tests slows down with every earlier test's
    documents.  (osmem is no alternative at this volume: it indexes about
    1,000 documents/s here, noida 6,000-8,000.)  An explicit or Docker
    OpenSearch is shared; tests use unique index prefixes.
    """
    if OPENSEARCH_FLAVOURS[0] in ("explicit", "docker"):
        yield str(request.getfixturevalue("opensearch_any"))
        return
    proc = start_noida(server_logs, tmp_path_factory.mktemp("fresh-noida"))
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def opensearch_flavour(request: pytest.FixtureRequest) -> str:
    """Name of the flavour behind ``opensearch_url`` in the current test."""
    return str(getattr(request, "param", OPENSEARCH_FLAVOURS[0]))
