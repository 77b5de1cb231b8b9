"""Real journal files for tests, written by systemd's own ``systemd-journal-remote``.

Entries are given as field maps and fed to ``systemd-journal-remote`` in the
journal export format on stdin; a value that is ``bytes`` is written in the
export format's binary form (any bytes, invalid UTF-8 included).  Calling
:func:`append_journal` again on the same file appends to it, as journald does.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

__all__ = ["BOOT_ID", "JOURNAL_REMOTE", "append_journal", "entry", "require_journal_tools"]

BOOT_ID = "0123456789abcdef0123456789abcdef"
_CANDIDATES = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
JOURNAL_REMOTE = next((c for c in _CANDIDATES if Path(c).exists()), None)


def require_journal_tools() -> None:
    """Skip the test when systemd-journal-remote or journalctl is not installed."""
    if JOURNAL_REMOTE is None or shutil.which("journalctl") is None:
        pytest.skip("systemd-journal-remote and journalctl are needed (Debian: systemd-journal-remote)")


_clock = [1_795_737_600_000_000]


def entry(message: str | bytes, *, unit: str = "kubelet.service", pid: int = 42, priority: int = 6,
          identifier: str | None = None, transport: str = "journal") -> dict[str, str | bytes]:
    """The fields of one entry, with a realtime timestamp one microsecond after the last one."""
    _clock[0] += 1
    fields: dict[str, str | bytes] = {
        "__REALTIME_TIMESTAMP": str(_clock[0]),
        "__MONOTONIC_TIMESTAMP": str(_clock[0] - 1_795_737_000_000_000),
        "_BOOT_ID": BOOT_ID,
        "_TRANSPORT": transport,
        "PRIORITY": str(priority),
        "MESSAGE": message,
    }
    if transport != "kernel":
        fields["_SYSTEMD_UNIT"] = unit
        fields["_PID"] = str(pid)
        fields["SYSLOG_IDENTIFIER"] = identifier or unit.removesuffix(".service")
    return fields


def _export(entries: Sequence[Mapping[str, str | bytes]]) -> bytes:
    out = bytearray()
    for fields in entries:
        for key, value in fields.items():
            if isinstance(value, bytes):
                out += key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
            else:
                out += f"{key}={value}\n".encode()
        out += b"\n"
    return bytes(out)


def append_journal(path: Path, entries: Sequence[Mapping[str, str | bytes]]) -> None:
    """Write ``entries`` into the journal file ``path`` (created, or appended to)."""
    assert JOURNAL_REMOTE is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={path}", "-"], input=_export(entries), check=True,
        capture_output=True, timeout=60,
    )
