"""A real Prometheus for tests (Debian's ``prometheus``), and the series podlog's /metrics exports."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.fixtures.servers import ManagedProcess, free_port, get_json, wait_for

__all__ = ["PROMETHEUS", "Series", "alerts", "exported_series", "query", "start_prometheus", "total"]

PROMETHEUS = shutil.which("prometheus")

Series = dict[str, list[Sample]]
"""Sample name (``_total``, ``_bucket``... included) -> its samples, one per label set."""


def exported_series(url: str, timeout: float = 5.0) -> Series:
    """Every sample a ``/metrics`` endpoint serves now, by sample name."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    found: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def total(series: Series, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the samples named ``name`` that carry ``labels``."""
    wanted = (labels or {}).items()
    return sum(s.value for s in series.get(name, []) if wanted <= s.labels.items())


def start_prometheus(
    directory: Path, job: str, target: str, groups: list[dict[str, Any]], labels: dict[str, str] | None = None
) -> ManagedProcess:
    """Prometheus on a free loopback port: scrapes ``target`` as ``job`` (with the target
    ``labels`` a Kubernetes service discovery would add) and evaluates ``groups``, both every second."""
    assert PROMETHEUS is not None
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (directory / "prometheus.yaml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(directory / "rules.yaml")],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target], "labels": labels or {}}]}],
    }))  # fmt: skip
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [PROMETHEUS, f"--config.file={directory / 'prometheus.yaml'}",
             f"--storage.tsdb.path={directory / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    process = ManagedProcess(name="prometheus", popen=popen, log_path=log_path, url=f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if popen.poll() is not None:
            raise RuntimeError(f"prometheus exited with {popen.returncode}: {process.tail()}")
        with urllib.request.urlopen(f"{process.url}/-/ready", timeout=2) as response:  # 503 while starting
            return bool(response.status == 200)

    try:
        wait_for(ready, 30, "Prometheus to be ready", interval=0.1)
    except BaseException:
        process.kill()
        raise
    return process


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The result of an instant query (a vector, or a matrix for a range selector)."""
    reply = get_json(f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert reply["status"] == "success", reply
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


def alerts(prometheus: str, name: str) -> list[dict[str, Any]]:
    """The active (pending or firing) alerts named ``name``."""
    active = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    return [a for a in active if a["labels"].get("alertname") == name]
