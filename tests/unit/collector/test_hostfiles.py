"""Which files are node files, and the settings that describe them."""

from __future__ import annotations

from datetime import UTC

import pytest

from collector.config import CollectorConfig
from collector.hostfiles import DEFAULT_HOST_FILES, HostFiles, zone


def test_default_globs_match_the_node_logs_and_not_rotated_or_container_files() -> None:
    """syslog and the control-plane logs match; syslog.1, .gz and container logs do not."""
    files = HostFiles(DEFAULT_HOST_FILES)
    assert files.matches("/var/log/syslog")
    assert files.matches("/var/log/kube-apiserver.log")
    assert not files.matches("/var/log/syslog.1")
    assert not files.matches("/var/log/syslog.2.gz")
    assert not files.matches("/var/log/containers/web-1_shop_app-0123.log")


def test_config_defaults_are_the_module_defaults() -> None:
    """The documented default globs are the ones the config carries; both inputs start off."""
    config = CollectorConfig()
    assert config.host_files == DEFAULT_HOST_FILES
    assert not config.host_files_enabled and not config.journal_enabled


def test_an_unknown_time_zone_is_refused_naming_the_setting() -> None:
    """A bad host_files_timezone fails at load, with the setting's name."""
    with pytest.raises(ValueError, match="host_files_timezone"):
        CollectorConfig(host_files_timezone="Mars/Olympus")
    assert zone("UTC") is UTC
    assert str(zone("Europe/Berlin")) == "Europe/Berlin"
