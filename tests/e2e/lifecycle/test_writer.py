"""The writer is faithful and its ground truth is right: formats, rotation layouts, determinism, the disk."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.e2e.lifecycle.checker import Delivered, LostBytes, check
from tests.e2e.lifecycle.formats import MAX_PIECE_BYTES, cri_entries, docker_entries, docker_time, go_json_string
from tests.e2e.lifecycle.truth import LineTruth, Storage
from tests.e2e.lifecycle.writer import NodeWriter, WriterConfig

BASE_NS = 1_800_000_000_123_000_000
CHURN = {
    "restarts_per_minute": 40.0, "exits_per_minute": 10.0, "pod_creations_per_minute": 20.0,
    "pod_deletions_per_minute": 20.0, "long_line_fraction": 0.03,
}  # fmt: skip
"""Lifecycle events and long lines far more often than in a scenario, so a few hundred ticks see every kind."""


def still_writer(root: Path, **overrides: object) -> NodeWriter:
    """:func:`run_writer` without restarts, exits and deletions: each container keeps its first instance."""
    return run_writer(root, restarts_per_minute=0.0, pod_deletions_per_minute=0.0, exits_per_minute=0.0, **overrides)


def run_writer(root: Path, **overrides: object) -> NodeWriter:
    """A writer driven for 300 ticks (``ticks`` overrides), lifecycle events stopping 80 ticks before the end."""
    ticks = int(overrides.pop("ticks", 300))  # type: ignore[call-overload]  # an int when given
    config = WriterConfig(**{"seed": 7, "pods": 6, "lines_per_second": 120.0, "max_size": 16 * 1024,
                             **CHURN, **overrides})  # type: ignore[arg-type]  # keys are WriterConfig fields
    writer = NodeWriter(root, config, BASE_NS)
    for tick in range(ticks):
        writer.step(events=tick < ticks - 80)
    writer.finish()
    return writer


# -- formats --------------------------------------------------------------------------


def test_cri_cuts_at_exact_16384_byte_boundaries_even_inside_a_character() -> None:
    """containerd: P pieces of exactly 16384 message bytes, then F; a cut character joins back from the bytes."""
    message = ("a" * (MAX_PIECE_BYTES - 1) + "日本" + "b" * MAX_PIECE_BYTES).encode()
    entries = cri_entries(message, "stderr", BASE_NS)
    pieces = [line.split(b" ", 3) for line in entries.data]
    assert [p[2] for p in pieces] == [b"P", b"P", b"F"]
    assert [len(p[3]) - 1 for p in pieces] == [MAX_PIECE_BYTES, MAX_PIECE_BYTES, len(message) - 2 * MAX_PIECE_BYTES]
    assert pieces[0][3][-3:] == b"a\xe6\n"  # 日 cut after its first byte
    assert b"".join(p[3][:-1] for p in pieces) == message
    assert pieces[0][0] == b"2027-01-15T08:00:00.123000000Z" and pieces[0][0] < pieces[1][0] < pieces[2][0]
    assert entries.text == message.decode()


@pytest.mark.parametrize(("size", "tags"), [(MAX_PIECE_BYTES, "F"), (MAX_PIECE_BYTES + 1, "PF"),
                                            (2 * MAX_PIECE_BYTES, "PF"), (10, "F")])
def test_cri_piece_count_at_the_boundaries(size: int, tags: str) -> None:
    """Exactly 16384 bytes is one F line, 16385 and 32768 are P + F (containerd's redirectLogs)."""
    entries = cri_entries(b"x" * size, "stdout", BASE_NS)
    assert "".join(line.split(b" ")[2].decode() for line in entries.data) == tags


def test_docker_cuts_like_the_copier_and_writes_ufffd_for_each_cut_byte() -> None:
    """dockerd: 16384-byte partials sharing one timestamp, the rest with its newline; cut bytes become U+FFFD."""
    message = ("a" * (MAX_PIECE_BYTES - 2) + "日" + "b" * 10).encode()  # 日 = 3 bytes across the boundary
    entries = docker_entries(message, "stdout", BASE_NS)
    docs = [json.loads(line) for line in entries.data]
    assert [d["log"][-3:] for d in docs] == ["a\ufffd\ufffd", "bb\n"]
    assert docs[1]["log"].startswith("\ufffdbbb")
    assert {d["time"] for d in docs} == {"2027-01-15T08:00:00.123Z"}
    assert entries.text == "a" * (MAX_PIECE_BYTES - 2) + "\ufffd" * 3 + "b" * 10
    assert all(line.endswith(b'"}\n') and line.count(b"\n") == 1 for line in entries.data)


@pytest.mark.parametrize(("size", "logs"), [(MAX_PIECE_BYTES, [MAX_PIECE_BYTES, 1]), (MAX_PIECE_BYTES - 1,
                                            [MAX_PIECE_BYTES]), (2 * MAX_PIECE_BYTES + 5, [MAX_PIECE_BYTES] * 2 + [6])])
def test_docker_piece_sizes_at_the_boundaries(size: int, logs: list[int]) -> None:
    """A line of exactly 16384 bytes is a partial and then ``{"log":"\\n"}``, as the copier's full buffer makes it."""
    entries = docker_entries(b"x" * size, "stdout", BASE_NS)
    assert [len(json.loads(line)["log"]) for line in entries.data] == logs


def test_go_json_string_escapes_as_dockerd_does() -> None:
    """HTML-safe escapes, \\u00XX for control bytes, \\u2028, and one \\ufffd per invalid byte (Go's DecodeRune)."""
    escaped = b'"a\\u003cb\\u003e\\u0026\\"c\\"\\\\\\u0009\\n\\r\\u2028\xc3\xa9"'
    assert go_json_string('a<b>&"c"\\\t\n\r\u2028é'.encode()) == escaped
    assert go_json_string(b"x\xe6\x97") == b'"x\\ufffd\\ufffd"'
    assert go_json_string(b"\x97y\xff\xc3") == b'"\\ufffdy\\ufffd\\ufffd"'
    assert go_json_string(b"\xed\xa0\x80") == b'"\\ufffd\\ufffd\\ufffd"'  # a surrogate is no character


def test_docker_time_trims_trailing_zeros_like_rfc3339nano() -> None:
    """json-file's ``time`` is Go's RFC3339Nano: no trailing zeros, no fraction at all on a whole second."""
    assert docker_time(1_800_000_000_000_000_000) == "2027-01-15T08:00:00Z"
    assert docker_time(1_800_000_000_120_000_000) == "2027-01-15T08:00:00.12Z"
    assert docker_time(1_800_000_000_000_000_001) == "2027-01-15T08:00:00.000000001Z"


# -- the writer -------------------------------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes and every link's target, by path below ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            out[name] = b"-> " + str(path.readlink()).removeprefix(str(root)).encode()
        elif path.is_file():
            out[name] = path.read_bytes()
    return out


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_same_seed_writes_the_same_bytes(tmp_path: Path, fmt: str) -> None:
    """Two writers with one seed and base time write identical trees and identical ground truth."""
    first = run_writer(tmp_path / "a", ticks=250, format=fmt)
    second = run_writer(tmp_path / "b", ticks=250, format=fmt)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert first.lines == second.lines
    assert first.describe() | {"inode_reused": 0} == second.describe() | {"inode_reused": 0}


_NAME = re.compile(r"^(?P<base>\d+\.log|[0-9a-f]{64}-json\.log)(?:\.(?P<suffix>\d{8}-\d{6}|\d+))?(?P<gz>\.gz)?$")


def _order(path: Path) -> tuple[int, object]:
    match = _NAME.match(path.name)
    assert match is not None, path
    suffix = match["suffix"]
    if suffix is None:
        return (2, 0)  # the live file: newest
    if "-" in suffix:
        return (0, suffix)  # kubelet: the stamp sorts oldest first
    return (1, -int(suffix))  # dockerd and logrotate: .1 is the newest


def read_disk(writer: NodeWriter) -> list[Delivered]:
    """A reference reader: every file left on disk, oldest first per container run, pieces joined across files."""
    runs: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for directory in (writer.pods_dir, writer.docker_dir):
        for path in directory.rglob("*") if directory.exists() else ():
            if path.is_file() and not path.is_symlink():
                match = _NAME.match(path.name)
                assert match is not None, f"unexpected file {path}"
                runs[(path.parent, match["base"])].append(path)
    out = []
    for files in runs.values():
        pending: dict[str, bytes] = defaultdict(bytes)
        for path in sorted(files, key=_order):
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            for number, line in enumerate(data.splitlines()):
                if writer.config.format == "cri":
                    _, stream, tag, piece = line.split(b" ", 3)
                    done = tag == b"F"
                else:
                    doc = json.loads(line)
                    stream, piece = doc["stream"].encode(), doc["log"].encode()
                    done = piece.endswith(b"\n")
                    piece = piece.removesuffix(b"\n")
                pending[stream.decode()] += piece
                if done:
                    message = pending.pop(stream.decode()).decode("utf-8", "replace")
                    out.append(Delivered(message, f"{path}:{number}"))
    return out


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_ground_truth_matches_what_a_perfect_reader_finds_on_disk(tmp_path: Path, fmt: str) -> None:
    """Every line whose generations survive is on disk exactly once, as recorded; the rest is gone."""
    writer = run_writer(tmp_path, format=fmt)
    assert writer.verify() == []
    truth = writer.truth([(0, None)])
    report = check(truth, read_disk(writer), LostBytes(0), ordered=False, keyed=False)
    kept = [line for line in truth.lines.values()
            if all(truth.generations[g].storage is not Storage.DELETED for g in line.gens)]
    straddling = [line for line in truth.lines.values() if len(line.gens) > 1
                  and len({truth.generations[g].storage is Storage.DELETED for g in line.gens}) == 2]
    assert (report.missing_plain, report.missing_gz) == (0, 0)
    assert report.delivered_unique == len(kept)
    assert report.garbage == 0
    assert report.partial_after_loss == len(straddling)  # the surviving share of a line partly deleted
    assert (report.raw_duplicates, report.dedup_duplicates, report.fffd) == (0, 0, 0)
    stats = writer.describe()
    for event in ("restarts", "exits", "pods_created", "pods_deleted", "rotations", "compressions", "copytruncates",
                  "long_lines", "cut_characters", "files_deleted"):
        assert stats.get(event, 0) > 0, f"the run never exercised {event}: {stats}"


def test_kubelet_keeps_the_newest_rotation_plain_and_the_older_ones_gzipped(tmp_path: Path) -> None:
    """CRI: at most max_files - 1 rotated files, names unique and in order, only the newest uncompressed."""
    writer = still_writer(tmp_path, format="cri", copytruncate_fraction=0.0)
    rotated_dirs = 0
    for container in writer.containers:
        assert container.current is not None
        rotated = container.current.rotated
        names = [gen.path.name for gen in rotated]
        assert len(rotated) <= writer.config.max_files - 1
        assert names == sorted(names) and len(set(names)) == len(names)
        assert [gen.compressed for gen in rotated] == [True] * (len(rotated) - 1) + [False] * bool(rotated)
        rotated_dirs += len(rotated) == writer.config.max_files - 1
    assert rotated_dirs > 0
    assert not list(tmp_path.rglob("*.tmp"))
    assert writer.stats["lines_written_after_rename"] > 0


@pytest.mark.parametrize("compress", [True, False])
def test_dockerd_shifts_numbered_files_and_compresses_them_when_told(tmp_path: Path, compress: bool) -> None:
    """Docker: ``-json.log.1`` .. ``.4`` (``.gz`` with compression), numbered without gaps, max-file honoured."""
    writer = still_writer(tmp_path, format="docker", copytruncate_fraction=0.0, docker_compress=compress)
    full = 0
    for container in writer.containers:
        assert container.current is not None
        instance = container.current
        expected = [f"{instance.live_path.name}.{n}{'.gz' if compress else ''}"
                    for n in range(1, len(instance.rotated) + 1)]
        assert [gen.path.name for gen in instance.rotated] == expected
        full += len(instance.rotated) == writer.config.max_files - 1
    assert full > 0


def test_copytruncate_copies_to_dot_one_and_gzips_the_older_copies(tmp_path: Path) -> None:
    """logrotate copytruncate: the live inode stays, ``.1`` is the plain newest copy, ``.2.gz`` on are older."""
    writer = still_writer(tmp_path, format="cri", copytruncate_fraction=1.0)
    for container in writer.containers:
        assert container.current is not None
        instance = container.current
        names = [gen.path.name for gen in instance.rotated]
        assert names == [f"{instance.live_path.name}.1", *(f"{instance.live_path.name}.{n}.gz"
                                                            for n in range(2, len(names) + 1))][: len(names)]
        assert all(gen.copied for gen in instance.rotated)
        assert instance.live.inode == instance.live_path.stat().st_ino
    assert writer.stats["copytruncates"] > 0


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_restarts_and_deleted_pods_leave_links_and_files_as_kubelet_does(tmp_path: Path, fmt: str) -> None:
    """One containers/ link per live instance; removed instances and pods leave no link, file or directory."""
    writer = run_writer(tmp_path, format=fmt)
    links = {path.name for path in writer.containers_dir.iterdir()}
    for pod in writer.pods:
        assert pod.directory.exists() != pod.removed
        for container in pod.containers:
            for instance in container.instances:
                assert (instance.link.name in links) != instance.removed
                assert instance.live_path.exists() != instance.removed
                if instance.link.name in links:
                    assert instance.link.resolve() == instance.live_path.resolve()
    assert all(path.resolve().exists() for path in writer.containers_dir.iterdir())


def test_a_line_is_seen_when_its_file_could_be_found_and_the_line_read_in_time(tmp_path: Path) -> None:
    """Up from the start: surely seen once its file had its included name for the grace, and the line the grace."""
    writer = run_writer(tmp_path, format="cri")
    always, never = writer.truth([(0, None)], 10, 10), writer.truth([], 10, 10)
    assert not any(never.possibly_seen(line) for line in never.lines.values())

    def expected(line: LineTruth) -> bool:
        for gen in (writer.generations[g] for g in line.gens):
            named = writer.tick if gen.named_until_tick is None else gen.named_until_tick
            end = writer.tick if gen.end_tick is None else gen.end_tick
            readable_until = end if gen.copied else writer.tick
            if named - gen.born_tick < 10 or readable_until - line.tick < 10:
                return False
        return True

    assert all(always.surely_seen(line) == expected(line) for line in always.lines.values())
    assert any(not always.surely_seen(line) for line in always.lines.values())


def test_surely_seen_lines_are_possibly_seen_whatever_the_kills(tmp_path: Path) -> None:
    """The lower bound of the lost-bytes comparison never exceeds the upper one."""
    writer = run_writer(tmp_path, format="docker")
    for up in ([(0, 40), (90, 150), (160, None)], [(30, 31), (200, None)], [(0, 299)]):
        truth = writer.truth(up, 10, 20)
        assert all(truth.possibly_seen(line) for line in truth.lines.values() if truth.surely_seen(line))
