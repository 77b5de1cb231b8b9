"""The podlog command: subcommands, help, and config errors as clear exits."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlog.cli import main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`podlog --help` names the process commands and the admin commands."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("agent", "indexer", "search", "run", "config", "dlq", "retention"):
        assert f"  {command} " in out


@pytest.mark.parametrize("command", ["agent", "indexer", "search", "run"])
def test_each_process_command_takes_a_config_file(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every long-running command has --help and --config."""
    assert main([command, "--help"]) == 0
    assert "--config" in capsys.readouterr().out


def test_config_check_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`podlog config check` exits 1 with the dotted path of an unknown key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("collector:\n  includes: [x]\n")
    assert main(["config", "check", str(bad)]) == 1
    assert "unknown setting collector.includes" in capsys.readouterr().err


def test_config_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped example config passes the check."""
    example = Path(__file__).resolve().parents[3] / "podlog.example.yaml"
    assert main(["config", "check", str(example)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")
