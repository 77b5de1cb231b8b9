"""Records of one file share only read-only maps; later stages copy before they write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.kube.cache import PodCache
from collector.kube.config import KubernetesConfig
from collector.kube.enrich import ApiState, KubeEnricher
from collector.kube.metadata import KeyFilter, pod_from_api
from collector.paths import kubernetes_fields, parse_path
from collector.tailer import TailerSettings
from indexer.documents import salvage
from podlog.record import Record, SharedMap
from shipper.kafka import encode_messages
from tests.fixtures.kube_api import make_pod
from tests.unit.collector.helpers import HEX64, container_path, open_tailer


def _docker(message: str, i: int) -> bytes:
    stamp = f"2026-11-27T00:00:{i:02d}.123456789Z"
    return orjson.dumps({"log": message + "\n", "stream": "stdout", "time": stamp}) + b"\n"


def _read_enriched(tmp_path: Path) -> list[Record]:
    """Two reads of one pod's file, enriched and handed back as the pipeline does."""
    cache = PodCache(grace_seconds=300, max_pods=10)
    api = ApiState()
    api.synced = api.connected = True
    listed = make_pod("web-1", namespace="shop", labels={"app": "web"}, annotations={"team": "a"})
    listed["status"]["containerStatuses"][0]["containerID"] = f"containerd://{HEX64}"  # the file's
    pod = pod_from_api(
        listed,
        annotations=KeyFilter(["*"], []), labels=KeyFilter(["*"], []),
        max_annotation_value_bytes=4096,
    )
    assert pod is not None
    cache.upsert(pod)
    enricher = KubeEnricher(KubernetesConfig(), "node-a", cache, api)
    path = container_path(tmp_path)
    path.write_bytes(_docker('{"level":"info","user":{"id":1}}', 1) + _docker("plain", 2))
    meta = parse_path(str(path))
    assert meta is not None
    settings = TailerSettings(cluster="c", node="node-a", chunk_bytes=1 << 16, max_line_bytes=1 << 16,
                              multiline_flush_seconds=1.0, multiline_max_lines=100)
    tailer = open_tailer(path, settings, identity="1:2:ff", kubernetes=kubernetes_fields(meta, "node-a"))
    records: list[Record] = []
    for lines in ([], [_docker('{"level":"warn"}', 3), _docker("more", 4)]):
        with path.open("ab") as f:
            f.write(b"".join(lines))
        batch = tailer.read(1 << 20)
        enricher.enrich(meta, batch)
        tailer.adopt(batch[-1])
        records.extend(batch)
    tailer.close()
    assert [r["message"] for r in records] == [
        '{"level":"info","user":{"id":1}}', "plain", '{"level":"warn"}', "more",
    ]
    return records


def _containers(value: Any, found: dict[int, Any]) -> dict[int, Any]:
    """Every dict and list reachable from ``value``, by id."""
    if isinstance(value, dict | list) and id(value) not in found:
        found[id(value)] = value
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, found)
    return found


def test_records_of_a_file_share_no_writable_state(tmp_path: Path) -> None:
    """Whatever two records of one file both reach is a read-only SharedMap; writing raises."""
    records = _read_enriched(tmp_path)
    reach = [_containers(record, {}) for record in records]
    for i, mine in enumerate(reach):
        for theirs in reach[i + 1 :]:
            shared = [mine[key] for key in mine.keys() & theirs.keys()]
            assert shared, "records of one file share their per-file maps"
            assert all(type(obj) is SharedMap for obj in shared), [type(o) for o in shared]
    first = records[0]
    assert first["kubernetes"]["labels"] == {"app": "web"}
    for obj in (first["kubernetes"], first["kubernetes"]["labels"], first["podlog"],
                first["log"]["file"]):
        with pytest.raises(TypeError, match="read-only"):
            obj["extra"] = 1
        with pytest.raises(TypeError, match="read-only"):
            obj.update(extra=1)


def test_later_stages_copy_before_they_change_a_record(tmp_path: Path) -> None:
    """Kafka truncation and the indexer's salvage leave every collector record as it was."""
    records = _read_enriched(tmp_path)
    records[1] = {**records[1], "message": "x" * 5000}  # too big for the limit below: truncated
    before = [orjson.dumps(record) for record in records]
    messages = encode_messages(records, topic="logs", default_retention="standard",
                               max_message_bytes=3000)
    assert any(r["log"]["truncated"] for m in messages for r in orjson.loads(m.value)["records"])
    moved = salvage(records[0], "failed to parse field [kubernetes.labels.app]")
    assert moved is not None
    assert "app" not in moved[0]["kubernetes"]["labels"]
    assert [orjson.dumps(record) for record in records] == before
