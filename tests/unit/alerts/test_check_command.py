"""`podlog alerts check`: ok for good files, exit 1 naming the rule, key and position otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlog.cli import main


def test_check_accepts_a_directory_of_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory of valid files is ok, with the number of rules."""
    (tmp_path / "a.yaml").write_text("rules:\n  - name: a\n    window: 5m\n    condition: absent\n")
    (tmp_path / "b.yaml").write_text("rules:\n  - name: b\n    window: 5m\n    condition: count >= 2\n")
    assert main(["alerts", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path}: ok (2 rules)"


def test_check_names_the_rule_the_key_and_the_query_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad query fails the check with one line that points at it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: oops\n    query: 'level:error OR /x+/'\n    window: 5m\n    condition: absent\n")
    good = tmp_path / "good.yaml"
    good.write_text("rules: []\n")
    assert main(["alerts", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{good}: ok (0 rules)" in captured.out
    assert f"{bad}: rule oops: query: regular expressions are disabled" in captured.err
    assert "at position 15" in captured.err
    assert "1 of 2 rules file(s) did not load" in captured.err
