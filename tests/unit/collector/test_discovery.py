"""Discovery: globs, excludes, symlinks, and what inotify watches."""

from __future__ import annotations

import os
from pathlib import Path

from collector.discovery import Discovery
from tests.unit.collector.helpers import container_path


def test_scan_follows_symlinks_and_applies_excludes(tmp_path: Path) -> None:
    """A symlink is found under its own name with its target's identity; excludes drop files."""
    target_dir = tmp_path / "pods" / "ns_pod_uid" / "app"
    target_dir.mkdir(parents=True)
    target = target_dir / "0.log"
    target.write_bytes(b"x\n")
    logs = tmp_path / "containers"
    logs.mkdir()
    link = container_path(logs)
    link.symlink_to(target)
    skipped = container_path(logs, pod="skip-me")
    skipped.write_bytes(b"y\n")
    (logs / "dir.log").mkdir()
    discovery = Discovery([str(logs / "*.log")], [str(logs / "skip-me_*")], exclude_self=True)
    found = discovery.scan()
    assert set(found) == {str(link)}
    item = found[str(link)]
    assert item.real_path == str(target)
    assert (item.dev, item.ino) == (os.stat(target).st_dev, os.stat(target).st_ino)


def test_dangling_symlink_is_skipped(tmp_path: Path) -> None:
    """A link whose target is gone is not an error and not a file."""
    (tmp_path / "gone.log").symlink_to(tmp_path / "nowhere")
    assert Discovery([str(tmp_path / "*.log")], [], exclude_self=False).scan() == {}


def test_watch_roots_are_the_static_prefixes(tmp_path: Path) -> None:
    """Flat globs watch their directory; globs with wildcard directories watch recursively."""
    discovery = Discovery(["/var/log/containers/*.log", "/var/log/pods/*/*/*.log"], [],
                          exclude_self=False)
    assert discovery.watch_roots() == [("/var/log/containers", False), ("/var/log/pods", True)]


def test_self_identity_comes_from_the_downward_api(monkeypatch: object) -> None:
    """POD_NAMESPACE and POD_NAME together name the agent's own pod; either alone does not."""
    import pytest

    from collector.enrichment import PathMeta

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("POD_NAMESPACE", "podlog")
    monkeypatch.delenv("POD_NAME", raising=False)
    assert not Discovery([], [], exclude_self=True).is_self(PathMeta("podlog", "agent-1", "a"))
    monkeypatch.setenv("POD_NAME", "agent-1")
    discovery = Discovery([], [], exclude_self=True)
    assert discovery.is_self(PathMeta("podlog", "agent-1", "agent"))
    assert not discovery.is_self(PathMeta("podlog", "agent-2", "agent"))
    assert not Discovery([], [], exclude_self=False).is_self(PathMeta("podlog", "agent-1", "a"))
