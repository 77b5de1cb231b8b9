"""`podlog run` with a kubeconfig: the podlog.io/retention annotation chooses the class.

Precedence: the pod's annotation, else its namespace's, else the first
``retention.namespaces`` glob, else ``default_class``; an annotation naming no
configured class counts as absent.  The Kubernetes API is a fake over real
HTTP, reached through ``$KUBECONFIG`` (no in-cluster credentials).
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from podlog.demo import render_line
from tests.fixtures.kube_api import FakeKubeApi, make_namespace, make_pod
from tests.fixtures.servers import free_port, wait_for
from tests.integration.single_node.runner import RunProcess, start_run

HOUR_NS = 3_600_000_000_000
AGES_H = (1, 30, 24 * 8, 24 * 20)
CONFIG = {
    "retention": {
        "classes": {"day": 1, "week": 7, "fortnight": 14},
        "default_class": "week",
        "namespaces": {"ns-b": "fortnight"},
    },
    "kubernetes": {"start_wait_seconds": 20},
}
PODS = {
    # pod: (namespace, pod annotation, the class it must get)
    "pinned": ("ns-a", "fortnight", "fortnight"),  # pod > namespace ("day")
    "plain": ("ns-a", None, "day"),  # namespace annotation > glob and default
    "globbed": ("ns-b", None, "fortnight"),  # config glob
    "other": ("ns-c", None, "week"),  # default
    "bogus": ("ns-c", "no-such-class", "week"),  # unknown class: as if absent
}
DAYS = {"day": 1, "week": 7, "fortnight": 14}


def test_podlog_run_with_a_kubeconfig_applies_pod_then_namespace_annotations(tmp_path: Path) -> None:
    """Each pod's lines are searchable exactly while within the class its annotations (pod, then
    namespace), the config's globs or the default give it, and carry API metadata."""
    now_ns = time.time_ns()
    logs = tmp_path / "logs"
    expected: set[str] = set()
    with FakeKubeApi() as api:
        api.add_namespace(make_namespace("ns-a", annotations={"podlog.io/retention": "day"}))
        api.add_namespace(make_namespace("ns-b"))
        api.add_namespace(make_namespace("ns-c"))
        for name, (namespace, annotation, klass) in PODS.items():
            annotations = {"podlog.io/retention": annotation} if annotation else {}
            pod = api.add_pod(make_pod(name, namespace=namespace, annotations=annotations))
            md = pod["metadata"]
            directory = logs / f"{md['namespace']}_{md['name']}_{md['uid']}" / "app"
            directory.mkdir(parents=True)
            with (directory / "0.log").open("wb") as out:
                for age in sorted(AGES_H, reverse=True):
                    message = f"annotated {name} {age}h"
                    out.write(render_line("cri", "stdout", now_ns - age * HOUR_NS, message))
                    if age < DAYS[klass] * 24:
                        expected.add(message)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        config = tmp_path / "podlog.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        env = {
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(tmp_path),
            "KUBERNETES_SERVICE_HOST": "",
            "PODLOG_PODLOG__NODE_NAME": "node-a",
        }
        args = ["--config", str(config), "--logs", str(logs), "--data-dir", str(tmp_path / "data")]
        run: RunProcess = start_run(args, free_port(), tmp_path / "out", env)
        try:
            wait_for(lambda: "search page at" in run.output(), 30, "podlog run to listen")

            def searchable() -> list[dict[str, object]]:
                page = run.get("/api/search?q=annotated&start=now-30d&size=500")
                hits: list[dict[str, object]] = page["hits"]
                return hits

            wait_for(lambda: {h["message"] for h in searchable()} == expected, 60, "the lines within retention")
            hits = searchable()
            assert {h["message"] for h in hits} == expected, run.tail()
            assert {h["podlog"]["metadata"] for h in hits} == {"api"}  # type: ignore[index]
            assert api.requests_of("pods", watch=False), "the pod list was never asked for"
            assert run.stop() == 0, run.tail()
        finally:
            run.kill()
