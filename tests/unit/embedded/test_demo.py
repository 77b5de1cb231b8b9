"""The demo generator writes container logs the collector decodes, and rotates them."""

from __future__ import annotations

from pathlib import Path

from collector.decode import LineDecoder
from collector.parsers.entry import Entry
from collector.paths import parse_path
from podlog.demo import DEMO_PODS, DemoWriter, render_line


def test_rendered_lines_decode_in_both_runtime_formats() -> None:
    """CRI and Docker json-file lines decode back to the stream, time and message."""
    for runtime in ("cri", "docker"):
        line = render_line(runtime, "stderr", 1_795_737_600_123_456_789, 'say "hi"\tthere')
        assert line.endswith(b"\n")
        decoder = LineDecoder(f"/x/{runtime}.log")
        (entry,) = decoder.decode([line.rstrip(b"\n")], [0])
        assert decoder.format == runtime
        assert isinstance(entry, Entry), entry
        assert (entry.stream, entry.time_ns, entry.message, entry.partial) == (
            "stderr",
            1_795_737_600_123_456_789,
            'say "hi"\tthere',
            False,
        )


async def test_writer_fills_one_file_per_container_and_rotates(tmp_path: Path) -> None:
    """History lines land in files whose names carry namespace, pod and container; rotation renames."""
    writer = DemoWriter(tmp_path, lines_per_second=50, history_seconds=60, seed=7)
    await writer.start()
    try:
        files = sorted(tmp_path.glob("*.log"))
        assert len(files) == len(DEMO_PODS)
        namespaces = {meta.namespace for f in files if (meta := parse_path(str(f))) is not None}
        assert namespaces == {pod.namespace for pod in DEMO_PODS}
        assert writer.lines_written >= 300
        total = sum(len(f.read_bytes().splitlines()) for f in files)
        assert total == writer.lines_written
        writer.rotate(DEMO_PODS[0])
        assert (tmp_path / (DEMO_PODS[0].file_name + ".1")).stat().st_size > 0
        assert (tmp_path / DEMO_PODS[0].file_name).stat().st_size == 0
    finally:
        await writer.stop()
        await writer.stop()
