"""Kubernetes metadata settings: the node-scoped pod watch and its cache."""

from __future__ import annotations

import dataclasses

from podlog.config import setting

__all__ = ["KubernetesConfig"]


@dataclasses.dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """How the agent learns pod metadata."""

    enabled: bool = setting(True, "Watch the API for pod metadata; off means path metadata only.")
