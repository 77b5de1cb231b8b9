"""The root settings: every section podlog knows, composed from each package.

This is the one module that names every component's config class; each
component's own ``config.py`` only imports :mod:`podlog.config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from collector.config import CollectorConfig
from collector.kube.config import KubernetesConfig
from indexer.config import IndexerConfig
from podlog.config import CommonConfig, apply_env, build, read_yaml, setting
from podlog.retention import RetentionConfig
from search.config import EmbeddedConfig, SearchConfig
from shipper.config import ShipperConfig

__all__ = ["Settings", "load_settings"]


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """A whole podlog configuration file."""

    podlog: CommonConfig = setting(CommonConfig, "Settings every process shares.")
    collector: CollectorConfig = setting(CollectorConfig, "Discovering and reading log files.")
    kubernetes: KubernetesConfig = setting(KubernetesConfig, "Pod metadata from the Kubernetes API.")
    shipper: ShipperConfig = setting(ShipperConfig, "The spool and delivery to Kafka.")
    indexer: IndexerConfig = setting(IndexerConfig, "Kafka to OpenSearch.")
    search: SearchConfig = setting(SearchConfig, "The search API and page.")
    embedded: EmbeddedConfig = setting(EmbeddedConfig, "The embedded index of `podlog run`.")
    retention: RetentionConfig = setting(RetentionConfig, "Retention by namespace.")


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read ``path`` (optional), apply ``PODLOG_*`` overrides, validate everything."""
    data = read_yaml(path) if path is not None else {}
    return build(Settings, apply_env(data, environ))
