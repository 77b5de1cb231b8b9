"""Node log files (syslog, control-plane logs) through the container files' machinery, on real files."""

from __future__ import annotations

import os
from pathlib import Path

from podlog.metrics import sample
from podlog.wire import batch_from_records, decode, encode, to_records
from tests.integration.collector.harness import AckingSink, running
from tests.unit.collector.helpers import container_path, cri_line, wait_until


def _syslog(i: int, text: str | None = None) -> bytes:
    return f"Dec  6 05:{i // 60 % 60:02d}:{i % 60:02d} node-a kubelet[812]: {text or f'sys {i}'}\n".encode()


def _host(tmp_path: Path) -> Path:
    directory = tmp_path / "var" / "log"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _settings(tmp_path: Path) -> dict[str, object]:
    host = _host(tmp_path)
    return {"host_files_enabled": True,
            "host_files": [str(host / "syslog"), str(host / "kube-apiserver.log")],
            "use_inotify": False}


async def _messages(sink: AckingSink, count: int) -> list[str]:
    await wait_until(lambda: len(sink.records) >= count, 15, what=f"{count} records")
    return [r["message"] for r in sink.records]


async def test_syslog_lines_get_source_host_and_the_prefix_time_without_pod_fields(tmp_path: Path) -> None:
    """A syslog file beside a container file: node records, its prefix's time; containers unchanged."""
    syslog = _host(tmp_path) / "syslog"
    syslog.write_bytes(_syslog(1) + _syslog(2))
    (tmp_path / "containers").mkdir()
    container_path(tmp_path / "containers").write_bytes(cri_line(1))
    unattributed = sample("podlog_collector_unattributed_records_total")
    async with running(tmp_path, **_settings(tmp_path)) as (_, sink):
        await _messages(sink, 3)
    node = [r for r in sink.records if r["log"].get("source") == "file"]
    assert [r["message"] for r in node] == [_syslog(1).decode().rstrip(), _syslog(2).decode().rstrip()]
    first = node[0]
    assert first["host"] == {"name": "node-1"}
    assert first["kubernetes"] == {}
    assert first["@timestamp"].endswith("-12-06T05:00:01.000000000Z")
    assert sample("podlog_collector_unattributed_records_total") == unattributed
    container = next(r for r in sink.records if r["log"].get("source") is None)
    assert container["kubernetes"]["pod"]["name"] == "web-1"
    # On the wire: the node file's resource names its source; the container's reads as container.
    (decoded_node,) = to_records(decode(encode(batch_from_records(node[:1]))))
    assert decoded_node["log"]["source"] == "file" and decoded_node["host"] == {"name": "node-1"}
    (decoded_container,) = to_records(decode(encode(batch_from_records([container]))))
    assert decoded_container["log"]["source"] == "container"


async def test_rotation_by_rename_reads_every_line_once(tmp_path: Path) -> None:
    """logrotate's rename (syslog -> syslog.1, a new syslog): the old file drains, the new is read."""
    syslog = _host(tmp_path) / "syslog"
    syslog.write_bytes(b"".join(_syslog(i) for i in range(5)))
    async with running(tmp_path, **_settings(tmp_path)) as (_, sink):
        await _messages(sink, 5)
        with syslog.open("ab") as out:
            out.write(b"".join(_syslog(i) for i in range(5, 8)))
        os.rename(syslog, syslog.with_name("syslog.1"))
        syslog.write_bytes(b"".join(_syslog(i) for i in range(8, 12)))
        messages = await _messages(sink, 12)
    assert sorted(messages) == sorted(_syslog(i).decode().rstrip() for i in range(12))
    assert len(messages) == 12


async def test_copytruncate_rereads_only_the_new_content(tmp_path: Path) -> None:
    """logrotate's copytruncate: the copy is not read again, the lines after the truncation are."""
    syslog = _host(tmp_path) / "syslog"
    syslog.write_bytes(b"".join(_syslog(i) for i in range(4)))
    async with running(tmp_path, **_settings(tmp_path)) as (_, sink):
        await _messages(sink, 4)
        syslog.with_name("syslog.1").write_bytes(syslog.read_bytes())
        with syslog.open("r+b") as out:
            out.truncate(0)
        await wait_until(lambda: syslog.stat().st_size == 0, 5)
        syslog.write_bytes(_syslog(10, "after truncation"))
        messages = await _messages(sink, 5)
    assert messages[-1].endswith("after truncation")
    assert len(messages) == 5


async def test_control_plane_log_without_syslog_prefix_is_plain_text_from_the_node(tmp_path: Path) -> None:
    """kube-apiserver's klog lines have no syslog prefix: read as plain text, log.source file."""
    apiserver = _host(tmp_path) / "kube-apiserver.log"
    apiserver.write_bytes(b"I1206 06:00:00.123456       1 server.go:155] Version: v1.31.0\n")
    async with running(tmp_path, **_settings(tmp_path)) as (_, sink):
        await _messages(sink, 1)
    (record,) = sink.records
    assert record["log"]["source"] == "file"
    assert record["message"].startswith("I1206 06:00:00.123456")


async def test_a_line_without_a_prefix_in_a_syslog_file_is_kept_and_counted(tmp_path: Path) -> None:
    """A continuation line in a syslog file is shipped at the read time, its reason counted."""
    syslog = _host(tmp_path) / "syslog"
    syslog.write_bytes(_syslog(1) + b"  continuation without prefix\n" + _syslog(2))
    rejected = sample("podlog_collector_lines_rejected_total", {"reason": "invalid_syslog"})
    async with running(tmp_path, **_settings(tmp_path)) as (_, sink):
        messages = await _messages(sink, 3)
    assert messages[1] == "  continuation without prefix"
    assert sample("podlog_collector_lines_rejected_total", {"reason": "invalid_syslog"}) == rejected + 1


async def test_a_binary_file_matched_by_a_host_glob_is_skipped_and_counted(tmp_path: Path) -> None:
    """An ELF file where a log was expected is never read as text; the skip is counted."""
    apiserver = _host(tmp_path) / "kube-apiserver.log"
    apiserver.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 8)
    skipped = sample("podlog_collector_files_skipped_total", {"reason": "binary"})
    async with running(tmp_path, **_settings(tmp_path)) as (_, sink):
        await wait_until(lambda: sample("podlog_collector_files_skipped_total", {"reason": "binary"}) > skipped,
                         10, what="the binary file's skip")
    assert sink.records == []


async def test_a_glob_multiline_rule_merges_continuation_lines_of_its_files_only(tmp_path: Path) -> None:
    """host_files_multiline: lines without a syslog start join the event before them, in that glob's files."""
    host = _host(tmp_path)
    syslog = host / "syslog"
    syslog.write_bytes(_syslog(1, "panic:") + b"  frame 1\n  frame 2\n" + _syslog(2, "next"))
    apiserver = host / "kube-apiserver.log"
    apiserver.write_bytes(b"I1206 one\n  not merged\n")
    settings = {**_settings(tmp_path), "multiline_flush_seconds": 0.05,
                "host_files_multiline": {str(syslog): r"^[A-Z][a-z]{2} [ \d]\d "}}
    async with running(tmp_path, **settings) as (_, sink):
        await wait_until(lambda: len([r for r in sink.records if "next" in r["message"]]) == 1
                         and len(sink.records) >= 4, 15, what="the merged event, the next line and the apiserver's")
    by_path: dict[str, list[str]] = {}
    for record in sink.records:
        by_path.setdefault(record["log"]["file"]["path"], []).append(record["message"])
    assert by_path[str(syslog)][0].endswith("panic:\n  frame 1\n  frame 2")
    assert by_path[str(syslog)][1].endswith("next")
    assert by_path[str(apiserver)] == ["I1206 one", "  not merged"]
