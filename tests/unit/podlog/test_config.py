"""Settings: YAML plus PODLOG_* overrides, validated with useful errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlog.cli import render_config_docs
from podlog.config import apply_env
from podlog.errors import ConfigError
from podlog.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_load_without_a_file() -> None:
    """Every setting has a default."""
    settings = load_settings(environ={})
    assert settings.podlog.cluster == "default"


def test_unknown_key_names_its_path_and_the_valid_keys(tmp_path: Path) -> None:
    """A typo fails with the dotted path and the keys that would have been valid."""
    path = tmp_path / "c.yaml"
    path.write_text("shipper:\n  spool:\n    max_byte: 10\n")
    with pytest.raises(ConfigError, match=r"shipper\.spool\.max_byte; valid keys here: .*max_bytes"):
        load_settings(path, environ={})


def test_wrong_type_names_the_setting(tmp_path: Path) -> None:
    """A string where a number belongs fails with the setting's path."""
    path = tmp_path / "c.yaml"
    path.write_text("shipper:\n  spool:\n    max_bytes: lots\n")
    with pytest.raises(ConfigError, match=r"shipper\.spool\.max_bytes: expected an integer"):
        load_settings(path, environ={})


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    """PODLOG_SECTION__KEY overrides the file, with YAML scalar parsing."""
    path = tmp_path / "c.yaml"
    path.write_text("podlog:\n  cluster: from-file\n")
    settings = load_settings(
        path, environ={"PODLOG_PODLOG__CLUSTER": "from-env", "PODLOG_SHIPPER__SPOOL__MAX_BYTES": "1048576"}
    )
    assert settings.podlog.cluster == "from-env"
    assert settings.shipper.spool.max_bytes == 1048576


def test_environment_override_of_unknown_key_fails() -> None:
    """A mistyped environment variable is an error, not silently ignored."""
    with pytest.raises(ConfigError, match=r"unknown setting podlog\.clustr"):
        load_settings(environ={"PODLOG_PODLOG__CLUSTR": "x"})


def test_apply_env_ignores_unrelated_variables() -> None:
    """Only PODLOG_ variables with a section separator are read."""
    assert apply_env({"a": 1}, {"PODLOG_TEST_KAFKA": "x", "HOME": "/root"}) == {"a": 1}


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    """Broken YAML names the file."""
    path = tmp_path / "bad.yaml"
    path.write_text("podlog: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_settings(path, environ={})


def test_configuration_docs_are_current() -> None:
    """docs/configuration.md matches the config dataclasses (run `podlog config docs > docs/configuration.md`)."""
    assert (ROOT / "docs" / "configuration.md").read_text() == render_config_docs()


def test_example_config_is_valid_and_complete() -> None:
    """podlog.example.yaml loads and mentions every setting."""
    from podlog.cli import render_example_config

    example = ROOT / "podlog.example.yaml"
    assert example.read_text() == render_example_config()
    load_settings(example, environ={})
