"""Command-line pieces every ``podlog`` command shares (the CLI and components' admin commands)."""

from __future__ import annotations

from pathlib import Path

import click

from podlog.errors import ConfigError
from podlog.settings import Settings, load_settings

__all__ = ["config_option", "settings_or_exit"]

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML config file; PODLOG_<SECTION>__<KEY> variables override it.",
)


def settings_or_exit(config_path: Path | None) -> Settings:
    """Load and validate settings; a bad setting ends the command with its message."""
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
