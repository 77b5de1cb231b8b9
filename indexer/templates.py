"""Index layout: names, the index templates podlog owns, and what the cluster can do.

Log indices are ``{prefix}-logs-{retention_class}-{YYYY.MM.DD}`` (the UTC day
of the record's ``timestamp_ns``), searched as ``{prefix}-logs-*``; rejected
documents go to ``{prefix}-dlq``.  One composable index template per family
(``{prefix}-logs`` and ``{prefix}-dlq``) carries explicit mappings for every
contract field, with ``dynamic: false`` so an application's payload never
grows the mapping: ``kubernetes.labels``, ``kubernetes.annotations`` and
``json`` are one flat field each (``flat_object`` on OpenSearch 2.7+,
``flattened`` on Elasticsearch-compatible clusters, else an unindexed object
plus a keyword list of ``key=value`` in ``<field>_kv``).
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from indexer.config import OpenSearchConfig
from podlog.logging import get_logger

__all__ = [
    "FLAT_FIELDS",
    "TEMPLATE_VERSION",
    "Capabilities",
    "detect_capabilities",
    "dlq_index",
    "dlq_template_body",
    "ensure_templates",
    "index_name",
    "index_template_body",
    "install_templates",
    "logs_pattern",
    "open_client",
    "parse_index_name",
]

log = get_logger("indexer.templates")

TEMPLATE_VERSION = 2
"""Bumped whenever a template body changes; stored in the template's ``_meta``."""

FLAT_FIELDS = ("kubernetes.labels", "kubernetes.annotations", "json")
"""Map-valued record fields stored as one field each, never one mapping entry per key."""


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What the cluster behind the client supports, as far as podlog cares."""

    distribution: str
    """``opensearch``, or ``elasticsearch`` for clusters that do not say."""
    version: tuple[int, int]
    """Major and minor version number the cluster reports."""
    flat_type: str
    """``flat_object``, ``flattened`` or ``object`` (unindexed, plus ``<field>_kv``)."""
    ism: bool
    """Whether the Index State Management plugin answers."""


def open_client(config: OpenSearchConfig) -> OpenSearch:
    """A synchronous client for templates, policies, retention and the admin commands."""
    kwargs: dict[str, Any] = {
        "hosts": list(config.hosts),
        "verify_certs": config.verify_certs,
        "timeout": config.request_timeout_seconds,
    }
    if config.username:
        kwargs["http_auth"] = (config.username, config.password)
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    return OpenSearch(**kwargs)


def index_name(prefix: str, retention_class: str, timestamp_ns: int) -> str:
    """The daily log index of a record: ``{prefix}-logs-{class}-{YYYY.MM.DD}`` (UTC)."""
    day = datetime.fromtimestamp(timestamp_ns // 1_000_000_000, tz=UTC)
    return f"{prefix}-logs-{retention_class}-{day:%Y.%m.%d}"


def parse_index_name(prefix: str, name: str) -> tuple[str, datetime] | None:
    """``(retention class, UTC day)`` of a log index name, or None if it is not one."""
    head = f"{prefix}-logs-"
    if not name.startswith(head):
        return None
    klass, sep, day = name[len(head) :].rpartition("-")
    if not sep or not klass:
        return None
    try:
        parsed = datetime.strptime(day, "%Y.%m.%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return klass, parsed


def logs_pattern(prefix: str) -> str:
    """The pattern every log index matches (what search queries)."""
    return f"{prefix}-logs-*"


def dlq_index(prefix: str) -> str:
    """The dead-letter index."""
    return f"{prefix}-dlq"


def _keyword() -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": 1024}


def _flat(capabilities: Capabilities) -> dict[str, Any]:
    if capabilities.flat_type == "object":
        return {"type": "object", "enabled": False}
    return {"type": capabilities.flat_type}


def _kubernetes_mapping(capabilities: Capabilities) -> dict[str, Any]:
    kw = _keyword
    props: dict[str, Any] = {
        "namespace": kw(),
        "pod": {"properties": {"name": kw(), "uid": kw()}},
        "container": {
            "properties": {
                "name": kw(),
                "id": kw(),
                "image": kw(),
                "restart_count": {"type": "integer"},
            }
        },
        "node": {"properties": {"name": kw()}},
        "workload": {"properties": {"kind": kw(), "name": kw()}},
        "labels": _flat(capabilities),
        "annotations": _flat(capabilities),
    }
    if capabilities.flat_type == "object":
        props["labels_kv"] = kw()
        props["annotations_kv"] = kw()
    return {"properties": props}


def logs_mappings(config: OpenSearchConfig, capabilities: Capabilities) -> dict[str, Any]:
    """Explicit mappings of every contract field; nothing else is indexed."""
    kw = _keyword
    props: dict[str, Any] = {
        "@timestamp": {"type": "date_nanos", "format": "strict_date_optional_time_nanos"},
        "timestamp_ns": {"type": "long"},
        "message": {
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": config.message_ignore_above}},
        },
        "level": kw(),
        "stream": kw(),
        "json": _flat(capabilities),
        "log": {
            "properties": {
                "file": {"properties": {"path": kw(), "identity": kw()}},
                "offset": {"type": "long"},
                "generation": {"type": "long"},
                "truncated": {"type": "boolean"},
                "source": kw(),
                "level": kw(),
            }
        },
        "kubernetes": _kubernetes_mapping(capabilities),
        # Node records (docs/node-logs.md): the node, and journald's unit, pid and identifier.
        "host": {"properties": {"name": kw()}},
        "systemd": {"properties": {"unit": kw()}},
        "process": {"properties": {"pid": {"type": "long"}}},
        "syslog": {"properties": {"identifier": kw()}},
        "event": {"properties": {"id": kw()}},
        "podlog": {
            "properties": {
                "schema": kw(),
                "metadata": kw(),
                "retention": kw(),
                "salvaged": kw(),
            }
        },
    }
    if capabilities.flat_type == "object":
        props["json_kv"] = kw()
    return {"dynamic": False, "properties": props}


def _settings(config: OpenSearchConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "number_of_shards": config.number_of_shards,
        "number_of_replicas": config.number_of_replicas,
        "refresh_interval": config.refresh_interval,
    }
    if config.codec:
        settings["codec"] = config.codec
    return settings


def index_template_body(config: OpenSearchConfig, capabilities: Capabilities) -> dict[str, Any]:
    """The composable index template of every ``{prefix}-logs-*`` index."""
    return {
        "index_patterns": [logs_pattern(config.index_prefix)],
        "priority": 200,
        "template": {
            "settings": _settings(config),
            "mappings": logs_mappings(config, capabilities),
        },
        "_meta": {"managed_by": "podlog", "podlog_template_version": TEMPLATE_VERSION},
    }


def dlq_template_body(config: OpenSearchConfig) -> dict[str, Any]:
    """The template of the dead-letter index: the reason indexed, the original stored."""
    kw = _keyword
    return {
        "index_patterns": [dlq_index(config.index_prefix)],
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": config.number_of_replicas,
            },
            "mappings": {
                "dynamic": False,
                "properties": {
                    "@timestamp": {"type": "date", "format": "strict_date_optional_time"},
                    "reason": {"type": "text", "fields": {"keyword": kw()}},
                    "error_type": kw(),
                    "status": {"type": "integer"},
                    "index": kw(),
                    "event_id": kw(),
                    "namespace": kw(),
                    "attempts": {"type": "integer"},
                    "kafka": {
                        "properties": {
                            "topic": kw(),
                            "partition": {"type": "integer"},
                            "offset": {"type": "long"},
                        }
                    },
                    "record": {"type": "object", "enabled": False},
                    "message_base64": {"type": "keyword", "index": False, "doc_values": False},
                    "body_omitted": {"type": "boolean"},
                    "body_bytes": {"type": "long"},
                    "body_error": {"type": "text"},
                },
            },
        },
        "_meta": {"managed_by": "podlog", "podlog_template_version": TEMPLATE_VERSION},
    }


def _version(info: dict[str, Any]) -> tuple[str, tuple[int, int]]:
    version = info.get("version") or {}
    distribution = str(version.get("distribution") or "elasticsearch")
    parts = str(version.get("number") or "0.0").split(".")
    try:
        numbers = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    except ValueError:
        numbers = (0, 0)
    return distribution, numbers


def _flat_candidates(distribution: str, version: tuple[int, int]) -> list[str]:
    if distribution == "opensearch":
        return ["flat_object"] if version >= (2, 7) else []
    return ["flattened"] if version >= (7, 3) else []


def has_ism(client: OpenSearch) -> bool:
    """True when ``GET _plugins/_ism/policies`` answers (the ISM plugin is installed)."""
    try:
        client.transport.perform_request("GET", "/_plugins/_ism/policies", params={"size": 1})
    except (NotFoundError, RequestError):
        return False
    except TransportError as exc:
        if exc.status_code in (400, 404, 405):
            return False
        raise
    return True


def _accepts_type(client: OpenSearch, prefix: str, field_type: str) -> bool:
    """Create and drop a throwaway index mapping one field as ``field_type``."""
    probe = f"{prefix}-capability-probe-{secrets.token_hex(4)}"
    body = {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {"probe": {"type": field_type}}},
    }
    try:
        client.indices.create(index=probe, body=body)
    except RequestError:
        return False
    try:
        mapping = client.indices.get_mapping(index=probe)
        got = mapping.get(probe, {}).get("mappings", {}).get("properties", {}).get("probe", {})
        return bool(got.get("type") == field_type)
    finally:
        client.indices.delete(index=probe, ignore_unavailable=True)


def detect_capabilities(client: OpenSearch, config: OpenSearchConfig) -> Capabilities:
    """Ask the cluster its version and plugins, and pick the flat field type it accepts."""
    distribution, version = _version(client.info())
    flat_type: str
    if config.flat_type != "auto":
        flat_type = config.flat_type
    else:
        flat_type = "object"
        for candidate in _flat_candidates(distribution, version):
            if _accepts_type(client, config.index_prefix, candidate):
                flat_type = candidate
                break
    ism = {"on": True, "off": False}.get(config.ism)
    if ism is None:
        ism = distribution == "opensearch" and has_ism(client)
    capabilities = Capabilities(distribution=distribution, version=version, flat_type=flat_type, ism=ism)
    log.info(
        "capabilities_detected",
        distribution=distribution,
        version=".".join(map(str, version)),
        flat_type=flat_type,
        ism=ism,
    )
    return capabilities


def _current_template(client: OpenSearch, name: str) -> dict[str, Any] | None:
    try:
        reply = client.indices.get_index_template(name=name)
    except NotFoundError:
        return None
    for item in reply.get("index_templates", []):
        if item.get("name") == name:
            return dict(item.get("index_template") or {})
    found = reply.get(name)  # some compatible servers answer {name: template}
    return dict(found) if isinstance(found, dict) else None


def _is_current(existing: dict[str, Any] | None, body: dict[str, Any]) -> bool:
    if existing is None:
        return False
    mine = body["template"].get("mappings", {}).get("properties")
    theirs = (existing.get("template") or {}).get("mappings", {}).get("properties")
    return bool(
        existing.get("_meta") == body["_meta"]
        and existing.get("index_patterns") == body["index_patterns"]
        and mine == theirs
        and _same_settings(existing, body)
    )


def _same_settings(existing: dict[str, Any], body: dict[str, Any]) -> bool:
    have = (existing.get("template") or {}).get("settings") or {}
    have = {**have, **(have.get("index") or {})}
    want = body["template"].get("settings") or {}
    return all(str(have.get(key)) == str(value) for key, value in want.items())


def install_templates(
    client: OpenSearch, config: OpenSearchConfig, capabilities: Capabilities
) -> list[str]:
    """Put podlog's index templates where missing or different; returns the names written."""
    prefix = config.index_prefix
    wanted = {
        f"{prefix}-logs": index_template_body(config, capabilities),
        f"{prefix}-dlq": dlq_template_body(config),
    }
    written = []
    for name, body in wanted.items():
        if _is_current(_current_template(client, name), body):
            log.debug("index_template_current", template=name)
            continue
        client.indices.put_index_template(name=name, body=body)
        log.info("index_template_written", template=name)
        written.append(name)
    return written


def ensure_templates(
    client: OpenSearch, config: OpenSearchConfig, capabilities: Capabilities | None = None
) -> Capabilities:
    """Create or update podlog's index templates; a no-op when they are current.

    Detects the cluster's capabilities unless given, and returns them.  New
    settings and mappings apply to indices created afterwards (tomorrow's).
    """
    caps = capabilities or detect_capabilities(client, config)
    install_templates(client, config, caps)
    return caps
