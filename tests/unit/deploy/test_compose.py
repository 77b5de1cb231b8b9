"""docker-compose.yml: it parses, everything it names exists, its podlog configs are valid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from podlog.settings import load_settings
from tests.unit.deploy.conftest import REPO
from tests.unit.deploy.podlog_config import config_check, looks_secret, pipeline_mismatches, walk

COMPOSE = REPO / "docker-compose.yml"
PODLOG_COMMANDS = {"agent", "indexer", "search", "run"}
IMAGE_REF = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[\w][\w.-]{0,127})?$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def podlog_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services(compose).items() if "build" in s}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(host source, container target, read-only) of each bind mount."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append((source, target, mode == ["ro"]))
    return mounts


def test_compose_file_has_the_whole_stack(compose: dict[str, Any]) -> None:
    """Kafka, OpenSearch, Dashboards, a demo writer, agent, indexer and search are there."""
    names = set(services(compose))
    assert {"kafka", "opensearch", "dashboards", "demo", "agent", "indexer", "search"} <= names
    commands = {s["command"][0] for s in podlog_services(compose).values()}
    assert {"agent", "indexer", "search", "run"} <= commands


def test_every_service_has_an_image_or_existing_build_context(compose: dict[str, Any]) -> None:
    """Each service names a well-formed image, or a build context and Dockerfile that exist."""
    for name, service in services(compose).items():
        assert "image" in service or "build" in service, name
        if "image" in service:
            assert IMAGE_REF.match(service["image"]), f"{name}: bad image {service['image']}"
        if "build" in service:
            build = service["build"]
            context = REPO / build["context"]
            assert context.is_dir(), f"{name}: no build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        if "image" in service and "build" not in service:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), (
                f"{name}: third-party images are pinned to a version"
            )


def test_bind_mounted_files_exist(compose: dict[str, Any]) -> None:
    """Every file the stack mounts from the repository exists, mounted read-only."""
    for name, service in services(compose).items():
        for source, _, read_only in bind_mounts(service):
            assert (REPO / source).exists(), f"{name}: {source} does not exist"
            assert read_only, f"{name}: {source} is mounted writable"


def test_podlog_configs_pass_config_check(compose: dict[str, Any]) -> None:
    """The config each podlog service reads passes `podlog config check`."""
    checked = 0
    for name, service in podlog_services(compose).items():
        command = service["command"]
        assert command[0] in PODLOG_COMMANDS, name
        if "--config" not in command:
            continue
        path = command[command.index("--config") + 1]
        (source,) = [s for s, target, _ in bind_mounts(service) if target == path]
        result = config_check(REPO / source, service.get("environment"))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        checked += 1
        for leaf, value in walk(yaml.safe_load((REPO / source).read_text())):
            assert not looks_secret(leaf) or not value, f"{source}: {leaf} holds a credential"
    assert checked == 3


def test_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    """Services start after what they need is healthy, and those have health checks."""
    all_services = services(compose)
    for name, service in all_services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in all_services[dependency], dependency
    needs = {
        "agent": {"kafka", "demo"},
        "indexer": {"kafka", "opensearch"},
        "search": {"opensearch"},
        "dashboards": {"opensearch"},
    }
    for name, expected in needs.items():
        assert expected <= set(all_services[name]["depends_on"]), name


def test_podlog_health_checks_probe_readyz_on_the_configured_port(compose: dict[str, Any]) -> None:
    """agent and indexer probe podlog.http_listen, search probes search.ops_listen."""
    for name in ("agent", "indexer", "search"):
        service = services(compose)[name]
        command = service["command"]
        path = command[command.index("--config") + 1]
        (source,) = [s for s, target, _ in bind_mounts(service) if target == path]
        config = yaml.safe_load((REPO / source).read_text())
        section, key = ("search", "ops_listen") if name == "search" else ("podlog", "http_listen")
        port = config[section][key].rpartition(":")[2]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"]), name


def test_agent_reads_what_the_demo_writes(compose: dict[str, Any]) -> None:
    """The agent's include globs point into the volume the demo writer fills."""
    demo = services(compose)["demo"]
    agent = services(compose)["agent"]
    data_dir = demo["command"][demo["command"].index("--data-dir") + 1]
    (demo_volume,) = [v for v in demo["volumes"] if v.endswith(f":{data_dir}")]
    volume_name = demo_volume.split(":")[0]
    (agent_mount,) = [v for v in agent["volumes"] if v.startswith(f"{volume_name}:")]
    _, target, mode = agent_mount.split(":")
    assert mode == "ro"
    config = yaml.safe_load((REPO / "deploy/compose/agent.yaml").read_text())
    for pattern in config["collector"]["include"]:
        assert pattern.startswith(f"{target}/demo-logs/"), pattern
    assert config["kubernetes"]["enabled"] is False


def test_published_ports_are_local_only(compose: dict[str, Any]) -> None:
    """Nothing in the unauthenticated stack listens beyond 127.0.0.1."""
    for name, service in services(compose).items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_dashboards_importer_posts_the_saved_objects(compose: dict[str, Any]) -> None:
    """The one-shot importer sends deploy/dashboards/podlog.ndjson to the import API."""
    importer = services(compose)["dashboards-import"]
    command = " ".join(importer["command"])
    assert "/api/saved_objects/_import" in command and "osd-xsrf: true" in command
    sources = [Path(s).resolve() for s, _, _ in bind_mounts(importer)]
    assert (REPO / "deploy/dashboards/podlog.ndjson").resolve() in sources


def test_inline_health_checks_are_valid_python(compose: dict[str, Any]) -> None:
    """The `python -c` health checks of the podlog services compile."""
    checked = 0
    for name, service in services(compose).items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"<{name} healthcheck>", "exec")
            checked += 1
    assert checked >= 4


def test_agent_indexer_and_search_configs_meet(compose: dict[str, Any]) -> None:
    """The compose configs agree on topic, brokers, OpenSearch hosts and index prefix."""
    loaded = {}
    for name in ("agent", "indexer", "search"):
        service = services(compose)[name]
        command = service["command"]
        path = command[command.index("--config") + 1]
        (source,) = [s for s, target, _ in bind_mounts(service) if target == path]
        loaded[name] = load_settings(REPO / source, environ={})
    assert not pipeline_mismatches(loaded["agent"], loaded["indexer"], loaded["search"])
