"""Where the API is: api_server, kubeconfig, or the in-cluster service account."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.kube.client import load_api_config
from collector.kube.config import KubernetesConfig
from podlog.errors import ConfigError


def test_api_server_setting_wins() -> None:
    """api_server points the client at a URL without credentials."""
    config = load_api_config(KubernetesConfig(api_server="http://127.0.0.1:1", kubeconfig="/x"))
    assert config.cluster.server == "http://127.0.0.1:1"


def test_api_server_builds_a_client_without_credentials(tmp_path: Path) -> None:
    """lightkube's own server-only configuration has no user and its client refuses it with
    an assert; podlog's builds a client, with the token file when one is set."""
    from collector.kube.client import KubeClient

    KubeClient(KubernetesConfig(api_server="http://127.0.0.1:1"), load_api_config(KubernetesConfig(api_server="http://127.0.0.1:1")))
    token = tmp_path / "token"
    token.write_text("t")
    config = KubernetesConfig(api_server="http://127.0.0.1:1", api_token_file=str(token))
    assert load_api_config(config).user.token_file == str(token)
    with pytest.raises(ConfigError, match="api_token_file"):
        load_api_config(KubernetesConfig(api_server="http://127.0.0.1:1", api_token_file=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="need api_server"):
        KubernetesConfig(api_token_file=str(token))


def test_kubeconfig_file_and_context(tmp_path: Path) -> None:
    """A kubeconfig's named context selects its cluster and user."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        """
apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: "http://a.example:6443"}}
- {name: b, cluster: {server: "http://b.example:6443"}}
users:
- {name: u, user: {token: secret}}
contexts:
- {name: ctx-a, context: {cluster: a, user: u}}
- {name: ctx-b, context: {cluster: b, user: u}}
current-context: ctx-a
"""
    )
    assert load_api_config(KubernetesConfig(kubeconfig=str(path))).cluster.server.startswith(
        "http://a."
    )
    chosen = load_api_config(KubernetesConfig(kubeconfig=str(path), context="ctx-b"))
    assert chosen.cluster.server == "http://b.example:6443"
    assert chosen.user is not None and chosen.user.token == "secret"


def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a kubeconfig the service account's token, CA and the service env are used."""
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("podlog")
    (tmp_path / "ca.crt").write_text("not a real certificate")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    config = load_api_config(KubernetesConfig(service_account_dir=str(tmp_path)))
    assert config.cluster.server == "https://10.0.0.1:443"
    assert config.user is not None
    assert config.user.token_file == str(tmp_path / "token")


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    """A kubeconfig path that does not exist names the problem."""
    with pytest.raises(ConfigError, match="cannot load API configuration"):
        load_api_config(KubernetesConfig(kubeconfig=str(tmp_path / "missing")))
