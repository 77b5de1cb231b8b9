"""Start ``podlog run`` as a real subprocess, stopped by its own PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunProcess:
    """One ``podlog run`` process, its output files and its search URL."""

    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    url: str

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def tail(self, n: int = 3000) -> str:
        return self.stderr.read_text(errors="replace")[-n:]

    def get(self, path: str) -> Any:
        """GET ``path`` of the search API as JSON."""
        if self.popen.poll() is not None:
            raise RuntimeError(f"podlog run exited with {self.popen.returncode}: {self.tail()}")
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def kill(self) -> None:
        """``kill -9``."""
        self.signal(signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait; SIGKILL if it did not exit in ``timeout``. Returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(10)
            raise

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            self.popen.wait(10)


def start_run(args: list[str], port: int, out_dir: Path, env: dict[str, str] | None = None) -> RunProcess:
    """``python -m podlog run <args> --listen 127.0.0.1:<port>`` with output in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    number = len(list(out_dir.glob("run-*.out")))
    stdout = out_dir / f"run-{number}.out"
    stderr = out_dir / f"run-{number}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", "podlog", "run", *args, "--listen", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PODLOG_PODLOG__LOG_FORMAT": "json", **(env or {})},
        )
    return RunProcess(popen, stdout, stderr, f"http://127.0.0.1:{port}")
