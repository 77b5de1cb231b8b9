"""One spool directory, one process: a second opener fails fast and names the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipper.config import SpoolConfig
from shipper.spool import Spool, SpoolLockedError

REPO = Path(__file__).resolve().parents[3]

# Opens the spool, says so, then holds it until stdin closes.
HOLDER = """
import asyncio, sys
from pathlib import Path
from shipper.config import SpoolConfig
from shipper.spool import Spool, SpoolLockedError
try:
    spool = Spool(SpoolConfig(), Path(sys.argv[1]))
except SpoolLockedError as exc:
    print("locked", exc, flush=True)
    sys.exit(3)
print("opened", flush=True)
sys.stdin.read()
asyncio.run(spool.close())
"""


def _start(directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # log lines first, then ours
        if line.strip() == "opened":
            return proc
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"the holder exited with {proc.returncode} before opening the spool")


def _finish(proc: subprocess.Popen[str]) -> int:
    """Close the holder's pipes (it closes the spool and exits) and wait for it."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    code = proc.wait(10)
    proc.stdout.close()
    return code


def _reopen_within(directory: Path, seconds: float) -> Spool:
    """Open the spool, retrying while the previous holder is still exiting."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return Spool(SpoolConfig(), directory)
        except SpoolLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


async def test_second_process_fails_fast_naming_directory_and_pid(tmp_path: Path) -> None:
    """While another process holds the spool, opening it fails at once with its directory and PID."""
    directory = tmp_path / "spool"
    holder = _start(directory)
    try:
        started = time.monotonic()
        with pytest.raises(SpoolLockedError) as raised:
            Spool(SpoolConfig(), directory)
        assert time.monotonic() - started < 1.0
        assert str(directory) in str(raised.value)
        assert f"process {holder.pid}" in str(raised.value)
        assert raised.value.retriable is False
    finally:
        assert _finish(holder) == 0
    # Closed by its holder, the spool opens again.
    again = _reopen_within(directory, 5)
    await again.close()


async def test_a_spool_held_here_refuses_another_process(tmp_path: Path) -> None:
    """A spool open in this process makes a second process exit with the lock error."""
    directory = tmp_path / "spool"
    spool = Spool(SpoolConfig(), directory)
    try:
        out = subprocess.run(
            [sys.executable, "-c", HOLDER, str(directory)],
            input="",
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
            check=False,
        )
        assert out.returncode == 3
        assert f"locked spool directory {directory} is in use by process {os.getpid()}" in out.stdout
    finally:
        await spool.close()


async def test_lock_of_a_killed_holder_is_released(tmp_path: Path) -> None:
    """kill -9 of the holder frees the directory: the next agent starts without manual cleanup."""
    directory = tmp_path / "spool"
    holder = _start(directory)
    holder.send_signal(signal.SIGKILL)
    assert _finish(holder) == -signal.SIGKILL
    again = _reopen_within(directory, 5)
    await again.close()
