"""Helpers that check shipped podlog config files the way podlog itself reads them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_type_hints

from podlog.settings import Settings

SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "private_key", "api_key")
"""Parts of key names that mark a value as a credential."""


def config_check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``podlog config check path`` as a user would, with extra environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PODLOG_")}
    return subprocess.run(
        [sys.executable, "-m", "podlog", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
    )


def secret_settings(cls: type[Any] = Settings, prefix: str = "") -> list[str]:
    """Dotted keys of every setting declared ``secret=True``."""
    keys: list[str] = []
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            keys.extend(secret_settings(hint, key + "."))
        elif field.metadata.get("secret"):
            keys.append(key)
    return keys


def env_name(dotted: str) -> str:
    """The ``PODLOG_<SECTION>__<KEY>`` variable that overrides a dotted key."""
    return "PODLOG_" + "__".join(part.upper() for part in dotted.split("."))


def dotted(env: str) -> str:
    """The dotted key a ``PODLOG_A__B`` variable overrides."""
    return ".".join(part.lower() for part in env[len("PODLOG_") :].split("__"))


def looks_secret(key: str) -> bool:
    """Whether a key name says its value is a credential."""
    lowered = key.lower().rpartition(".")[2]
    if lowered.endswith(("_file", "_files", "_path", "_dir", "_header")):
        return False  # names where a credential is kept, not the credential
    return any(word in lowered for word in SECRET_WORDS)


def walk(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, scalar value) of every leaf of a YAML mapping."""
    if isinstance(data, dict):
        leaves: list[tuple[str, Any]] = []
        for key, value in data.items():
            leaves.extend(walk(value, f"{prefix}{key}."))
        return leaves
    return [(prefix.rstrip("."), data)]


def pipeline_mismatches(agent: Any, indexer: Any, search: Any) -> list[str]:
    """Where the agent, indexer and search configs (loaded Settings) would not meet:
    the topic the agent writes vs the ones the indexer reads, the brokers, and the
    index prefix and cluster the indexer writes vs the ones search reads."""
    problems = []
    topic = agent.shipper.kafka.topic
    if "{" not in topic and topic not in indexer.indexer.kafka.topics:
        problems.append(f"agent writes topic {topic}, indexer reads {indexer.indexer.kafka.topics}")
    if agent.shipper.kafka.bootstrap_servers != indexer.indexer.kafka.bootstrap_servers:
        problems.append("agent and indexer use different Kafka bootstrap servers")
    if indexer.indexer.opensearch.index_prefix != search.search.index_prefix:
        problems.append("indexer and search use different index prefixes")
    if indexer.indexer.opensearch.hosts != search.search.opensearch_hosts:
        problems.append("indexer and search use different OpenSearch hosts")
    return problems
