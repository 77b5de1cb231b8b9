"""prepare_run: the settings of one `podlog run` process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from podlog.settings import Settings
from podlog.single_node import SearchPageAnnouncer, log_patterns, prepare_run, run_extras


def test_defaults_put_everything_under_dot_podlog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without flags: ./.podlog, /var/log/containers, embedded parts, loopback search, no ops port."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config: no API access
    settings = prepare_run(Settings(), logs=None, data_dir=None, listen=None, demo=False)
    assert settings.podlog.state_dir == str(tmp_path / ".podlog")
    assert settings.collector.include == ["/var/log/containers/*.log"]
    assert settings.kubernetes.enabled is False
    assert settings.shipper.transport == "embedded"
    assert settings.search.backend == "embedded"
    assert settings.search.listen == "127.0.0.1:8080"
    assert settings.podlog.http_listen == ""
    assert settings.search.ops_listen == "127.0.0.1:0"
    assert settings.search.auth.mode == "none"
    assert settings.embedded.demo_logs == ""


def test_flags_choose_logs_data_and_listen(tmp_path: Path) -> None:
    """--logs reads that tree at three depths; --data-dir and --listen are taken as given."""
    settings = prepare_run(
        Settings(), logs=tmp_path / "logs", data_dir=tmp_path / "data", listen="0.0.0.0:9999", demo=False
    )
    assert settings.collector.include == log_patterns(tmp_path / "logs")
    assert settings.collector.include[0] == f"{tmp_path}/logs/*.log"
    assert settings.podlog.state_dir == str(tmp_path / "data")
    assert settings.search.listen == "0.0.0.0:9999"
    assert settings.search.auth.mode == "token"  # not loopback: authentication stays on


def test_configured_listen_is_kept_and_bad_listen_is_refused(tmp_path: Path) -> None:
    """A listen address from the config file wins over the default; garbage fails early."""
    configured = dataclasses.replace(Settings(), search=dataclasses.replace(Settings().search, listen="127.0.0.1:7000"))
    settings = prepare_run(configured, logs=None, data_dir=tmp_path, listen=None, demo=False)
    assert settings.search.listen == "127.0.0.1:7000"
    with pytest.raises(ValueError, match="not host:port"):
        prepare_run(Settings(), logs=None, data_dir=tmp_path, listen="nonsense", demo=False)


def test_ops_address_is_loopback_unless_configured(tmp_path: Path) -> None:
    """/metrics of `podlog run` goes to a free loopback port; a configured address or "" (off) is kept."""
    for configured, expected in (("127.0.0.1:9191", "127.0.0.1:9191"), ("", "")):
        search = dataclasses.replace(Settings().search, ops_listen=configured)
        settings = prepare_run(
            dataclasses.replace(Settings(), search=search), logs=None, data_dir=tmp_path, listen=None, demo=False
        )
        assert settings.search.ops_listen == expected
    bad = dataclasses.replace(Settings(), search=dataclasses.replace(Settings().search, ops_listen="9191"))
    with pytest.raises(ValueError, match="not host:port"):
        prepare_run(bad, logs=None, data_dir=tmp_path, listen=None, demo=False)


def test_demo_reads_its_own_directory_and_joins_stack_traces(tmp_path: Path) -> None:
    """--demo writes to and reads from <data>/demo-logs, with the Java multiline rule."""
    settings = prepare_run(Settings(), logs=None, data_dir=tmp_path, listen=None, demo=True)
    assert settings.embedded.demo_logs == str(tmp_path / "demo-logs")
    assert settings.collector.include[0] == f"{tmp_path}/demo-logs/*.log"
    assert settings.collector.multiline == "java"
    names = [service.name for service in run_extras(settings)]
    assert names == ["search-page-url", "demo-logs"]


async def test_announcer_prints_the_url_of_the_bound_port(capsys: pytest.CaptureFixture[str]) -> None:
    """The URL line names the port the server really bound (port 0 resolved)."""

    class Server:
        port = 43210

    announcer = SearchPageAnnouncer("0.0.0.0:0", Server())
    await announcer.start()
    await announcer.stop()
    await announcer.run()
    assert "podlog: search page at http://127.0.0.1:43210/" in capsys.readouterr().out.splitlines()


async def test_announcer_prints_the_metrics_url_of_the_ops_port(capsys: pytest.CaptureFixture[str]) -> None:
    """With an ops address, a second line names /metrics on the port the ops server bound."""

    class Server:
        port = 43210
        ops_port = 43211

    announcer = SearchPageAnnouncer("127.0.0.1:0", Server(), "127.0.0.1:0")
    await announcer.start()
    await announcer.stop()
    assert "podlog: metrics at http://127.0.0.1:43211/metrics" in capsys.readouterr().out.splitlines()
