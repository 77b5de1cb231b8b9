"""The self-monitoring component: scrape targets, alert rules (promtool), runbook, dashboard."""

from __future__ import annotations

import copy
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from podlog import metrics
from tests.unit.deploy.conftest import KUBERNETES, REPO, render
from tests.unit.deploy.manifests import Obj, containers, named, of_kind, workloads

MONITORING = KUBERNETES / "components" / "monitoring"
RULES = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "tests" / "prometheusrule.test.yaml"
DASHBOARD = MONITORING / "podlog-dashboard.json"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/podlog/podlog/blob/main/docs/runbook.md#"
RULES_FILE = "podlog-rules.yaml"
"""The name the rule-test file's ``rule_files`` gives the extracted groups."""
KUBERNETES_VERSION = "1.33"
PACKAGES = ("podlog", "collector", "shipper", "indexer", "search")
EXTERNAL_METRICS = {"up", "kube_pod_info"}
"""Metrics the rules read from Prometheus itself and from kube-state-metrics."""
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$namespace": ".*",
    "$node": ".*",
}
"""What each dashboard variable stands for when its queries are checked."""
CONFIGMAP_LIMIT = 262144
"""kubectl apply keeps the whole object in an annotation of at most 256 KiB."""

DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


# The Prometheus Operator's CRD schemas (monitoring.coreos.com/v1, operator
# 0.8x), reduced to the fields these manifests use; every other field fails,
# as kubernetes-validate --strict fails unknown fields of core kinds.  Add a
# field here, from the operator's CRD, when a manifest starts using it.
def _string(**extra: Any) -> dict[str, Any]:
    return {"type": "string", **extra}


_DURATION = _string(pattern=DURATION.pattern)
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": _string(),
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": _string()},
                },
            },
        },
    },
}
_RELABEL_ACTIONS = ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep"]
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {"enum": _RELABEL_ACTIONS + [a.capitalize() for a in _RELABEL_ACTIONS]},
        "sourceLabels": {"type": "array", "items": _string(pattern="^[a-zA-Z_][a-zA-Z0-9_]*$")},
        "separator": _string(),
        "regex": _string(),
        "modulus": {"type": "integer"},
        "targetLabel": _string(),
        "replacement": _string(),
    },
}
_ENDPOINT = {
    "port": _string(),
    "path": _string(),
    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": _DURATION,
    "scrapeTimeout": _DURATION,
    "honorLabels": {"type": "boolean"},
    "relabelings": {"type": "array", "items": _RELABEL},
    "metricRelabelings": {"type": "array", "items": _RELABEL},
}
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {
        "alert": _string(),
        "record": _string(),
        "expr": {"type": ["string", "integer"]},
        "for": _DURATION,
        "keep_firing_for": _string(minLength=1, pattern=DURATION.pattern),
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}


def _crd(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP},
            },
            "spec": {"type": "object", "additionalProperties": False, **spec},
        },
    }


CRD_SCHEMAS = {
    "ServiceMonitor": _crd(
        "ServiceMonitor",
        {
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "jobLabel": _string(),
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "additionalProperties": False, "properties": _ENDPOINT},
                },
            },
        },
    ),
    # The operator does not require podMetricsEndpoints, but without one a
    # PodMonitor scrapes nothing.
    "PodMonitor": _crd(
        "PodMonitor",
        {
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "jobLabel": _string(),
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "additionalProperties": False, "properties": _ENDPOINT},
                },
            },
        },
    ),
    "PrometheusRule": _crd(
        "PrometheusRule",
        {
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": _string(minLength=1),
                            "interval": _DURATION,
                            "limit": {"type": "integer"},
                            "rules": {"type": "array", "minItems": 1, "items": _RULE},
                        },
                    },
                },
            },
        },
    ),
}


def promtool() -> str:
    """promtool on PATH; the test fails (never skips) without it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: Debian's `prometheus` package provides it "
            "(apt-get install prometheus); ./dev test and .ci/run install it"
        )
    return found


def run_promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def seconds(duration: str) -> float:
    """A Prometheus duration (``1h30m``, ``90s``) in seconds."""
    assert DURATION.match(duration) and duration, duration
    return sum(float(n) * UNITS[unit] for n, unit in re.findall(r"([0-9]+)(ms|[smhdwy])", duration))


def rule_groups() -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule: a Prometheus rule file's groups."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    assert isinstance(groups, list)
    return groups


def alerting_rules(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def rule_tests() -> dict[str, Any]:
    data = yaml.safe_load(RULE_TESTS.read_text())
    assert isinstance(data, dict)
    return data


def write_rule_files(directory: Path, groups: list[dict[str, Any]], tests: dict[str, Any]) -> Path:
    """The groups as a rule file beside the rule tests that load it; the tests' path."""
    assert tests["rule_files"] == [RULES_FILE]
    (directory / RULES_FILE).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    path = directory / "prometheusrule.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return path


def rule_tests_for(tests: dict[str, Any], alert: str) -> dict[str, Any]:
    """The rule-test file reduced to the test groups that check ``alert``."""
    chosen = [t for t in tests["tests"] if any(c["alertname"] == alert for c in t.get("alert_rule_test", []))]
    return {**tests, "tests": chosen}


def with_for(groups: list[dict[str, Any]], alert: str, duration: float) -> list[dict[str, Any]]:
    """A copy of the groups with ``alert``'s ``for:`` set to ``duration`` seconds."""
    changed = copy.deepcopy(groups)
    alerting_rules(changed)[alert]["for"] = f"{int(duration)}s"
    return changed


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor -> text of each ``##`` section of docs/runbook.md."""
    sections: dict[str, str] = {}
    anchor = None
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("## "):
            anchor = github_anchor(line[3:])
            sections[anchor] = ""
        elif anchor is not None:
            sections[anchor] += line + "\n"
    return sections


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
LABEL_VALUES = re.compile(r"\s*label_values\((.*),\s*\w+\s*\)\s*", re.DOTALL)


def promql(query: str) -> str:
    """The PromQL in a query: of a Grafana ``label_values(selector, label)``, the selector."""
    found = LABEL_VALUES.fullmatch(query)
    return found.group(1) if found else query


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana ``label_values(...)`` query) reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql(query))  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = LABEL_LISTS.sub(" ", text)  # grouping label lists
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def registered_metrics() -> set[str]:
    """Every series name podlog's processes can export, from the metric registry.

    Metrics are declared at import of each package's ``*events`` modules, so
    those are imported first.
    """
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if info.name.rpartition(".")[2].endswith("events"):
                importlib.import_module(info.name)
    names = set()
    for family in metrics.REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
        elif family.type == "summary":
            names |= {f"{family.name}{suffix}" for suffix in ("", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(board: dict[str, Any]) -> dict[str, str]:
    """Where -> PromQL of every panel target and query variable of the dashboard."""
    found = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            found[f"panel {panel['id']} ({panel['title']}) {target['refId']}"] = target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found[f"variable {variable['name']}"] = variable["query"]["query"]
    return found


def substitute_variables(expr: str) -> str:
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    unknown = re.findall(r"\$\w+", expr)
    assert not unknown, f"no test value for the dashboard variables {unknown}"
    return expr


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    """The example overlay with the monitoring component, as a user enables it."""
    overlay = tmp_path_factory.mktemp("overlay")
    example = os.path.relpath(KUBERNETES / "overlays" / "example", overlay)
    component = os.path.relpath(MONITORING, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {example}\n"
        f"components:\n  - {component}\n"
    )
    return render(overlay)


def test_component_adds_its_objects_to_an_overlay(monitored: list[Obj]) -> None:
    """Listed under an overlay's components, it adds the scrape targets, rules and
    dashboard in the podlog namespace, next to everything the overlay had."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in monitored}
    for expected in [
        ("Service", "podlog-indexer-metrics"),
        ("Service", "podlog-search-metrics"),
        ("PodMonitor", "podlog-agent"),
        ("ServiceMonitor", "podlog-indexer"),
        ("ServiceMonitor", "podlog-search"),
        ("PrometheusRule", "podlog"),
        ("ConfigMap", "podlog-grafana-dashboard"),
        ("DaemonSet", "podlog-agent"),
        ("Deployment", "podlog-indexer"),
        ("Deployment", "podlog-search"),
        ("Ingress", "podlog-search"),
    ]:
        assert expected in kinds, f"{expected} missing from the rendered manifests"
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
    for obj in monitored:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == "podlog", f"{obj['kind']}/{obj['metadata']['name']}"


def test_core_kinds_validate_and_operator_kinds_match_the_crd_schema(monitored: list[Obj]) -> None:
    """Core objects pass kubernetes-validate --strict; ServiceMonitor, PodMonitor and
    PrometheusRule pass the operator's CRD schema for the fields they use."""
    operator_kinds = set()
    for obj in monitored:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            assert obj["kind"] in CRD_SCHEMAS, f"{name}: no schema for this Prometheus Operator kind here"
            errors = sorted(jsonschema.Draft7Validator(CRD_SCHEMAS[obj["kind"]]).iter_errors(obj), key=str)
            assert not errors, f"{name}: " + "; ".join(
                f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
            )
            operator_kinds.add(obj["kind"])
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is invalid at {'.'.join(map(str, exc.path))}: {exc.message}")
    assert operator_kinds == set(CRD_SCHEMAS)


def test_crd_schemas_here_reject_what_the_operator_rejects() -> None:
    """The hand-written schemas fail a ServiceMonitor without endpoints, a PodMonitor
    with an unknown field, and a rule that is neither an alert nor a recording."""
    monitor = yaml.safe_load((MONITORING / "indexer-servicemonitor.yaml").read_text())
    del monitor["spec"]["endpoints"]
    pod_monitor = yaml.safe_load((MONITORING / "agent-podmonitor.yaml").read_text())
    pod_monitor["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    rule = yaml.safe_load(RULES.read_text())
    del rule["spec"]["groups"][0]["rules"][0]["alert"]
    for obj in (monitor, pod_monitor, rule):
        assert not jsonschema.Draft7Validator(CRD_SCHEMAS[obj["kind"]]).is_valid(obj), obj["kind"]


@pytest.mark.parametrize(
    ("kind", "name"),
    [("PodMonitor", "podlog-agent"), ("ServiceMonitor", "podlog-indexer"), ("ServiceMonitor", "podlog-search")],
)
def test_scrape_targets_reach_one_workload_on_its_metrics_port(monitored: list[Obj], kind: str, name: str) -> None:
    """Each monitor selects exactly one workload's pods, through a Service of its own
    for a ServiceMonitor, on a container port named metrics; no Service behind the
    Ingress carries that port."""
    monitor = named(monitored, kind, name)
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
    (endpoint,) = endpoints
    port = endpoint["port"]
    assert port == "metrics"
    if kind == "ServiceMonitor":
        services = [
            s
            for s in of_kind(monitored, "Service")
            if selector.items() <= s["metadata"]["labels"].items()
            and any(p["name"] == port for p in s["spec"]["ports"])
        ]
        assert [s["metadata"]["name"] for s in services] == [f"{name}-metrics"]
        (service,) = services
        backends = {
            path["backend"]["service"]["name"]
            for ingress in of_kind(monitored, "Ingress")
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert service["metadata"]["name"] not in backends
        selector = service["spec"]["selector"]
        (service_port,) = [p for p in service["spec"]["ports"] if p["name"] == port]
        port = service_port["targetPort"]
    pods = [w for w in workloads(monitored) if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
    assert len(pods) == 1, f"{kind}/{name} selects {[w['metadata']['name'] for w in pods]}"
    declared = {p["name"]: p["containerPort"] for c in containers(pods[0]) for p in c.get("ports", [])}
    assert port in declared, f"{pods[0]['metadata']['name']} declares no container port {port!r}"
    assert declared[port] == 9090


def test_rules_and_dashboard_name_the_jobs_the_monitors_set(monitored: list[Obj]) -> None:
    """Every ``job`` the rules and dashboard match is one a monitor's relabeling sets,
    and every monitor labels its targets with their node."""
    jobs = set()
    for obj in monitored:
        if obj["kind"] not in ("ServiceMonitor", "PodMonitor"):
            continue
        endpoints = obj["spec"].get("endpoints") or obj["spec"]["podMetricsEndpoints"]
        for endpoint in endpoints:
            relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
            jobs.add(relabel["job"]["replacement"])
            assert relabel["node"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
    assert jobs == {"podlog-agent", "podlog-indexer", "podlog-search"}
    expressions = [r["expr"] for g in rule_groups() for r in g["rules"]] + list(queries(dashboard()).values())
    referenced = set()
    for expr in expressions:
        for value in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', expr):
            referenced |= set(value.split("|"))
    assert referenced and referenced <= jobs


def test_alert_rules_pass_promtool_check(tmp_path: Path) -> None:
    """`promtool check rules` accepts the PrometheusRule's groups."""
    write_rule_files(tmp_path, rule_groups(), rule_tests())
    result = run_promtool("check", "rules", RULES_FILE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len([r for g in rule_groups() for r in g["rules"]])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_every_alert_passes_its_promtool_unit_tests(tmp_path: Path) -> None:
    """`promtool test rules` passes the series-in, alerts-out tests of every alert."""
    path = write_rule_files(tmp_path, rule_groups(), rule_tests())
    result = run_promtool("test", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_tests_where_it_fires_and_where_it_does_not() -> None:
    """Each alert has an evaluation expecting it to fire and one expecting silence,
    and no test names an alert that does not exist."""
    alerts = alerting_rules(rule_groups())
    cases = [c for t in rule_tests()["tests"] for c in t.get("alert_rule_test", [])]
    assert {c["alertname"] for c in cases} <= set(alerts)
    for alert in alerts:
        outcomes = {bool(c.get("exp_alerts")) for c in cases if c["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: tests of firing and of silence are both needed"


def test_rule_tests_pin_every_for_duration(tmp_path: Path) -> None:
    """Each alert's tests fail when its ``for:`` is one evaluation shorter or longer:
    they check it is silent just before ``for:`` ends and firing when it does."""
    groups = rule_groups()
    tests = rule_tests()
    step = seconds(tests["evaluation_interval"])
    for alert, rule in alerting_rules(groups).items():
        duration = seconds(rule["for"])
        own = rule_tests_for(tests, alert)
        path = write_rule_files(tmp_path, groups, own)
        result = run_promtool("test", "rules", path.name, cwd=tmp_path)
        assert result.returncode == 0, f"{alert}: {result.stdout}{result.stderr}"
        for changed in (duration - step, duration + step):
            path = write_rule_files(tmp_path, with_for(groups, alert, changed), own)
            result = run_promtool("test", "rules", path.name, cwd=tmp_path)
            assert result.returncode != 0, f"{alert}: its tests still pass with for: {int(changed)}s"
            assert f"alertname: {alert}" in result.stdout + result.stderr


def test_alerts_carry_severity_summary_description_and_runbook() -> None:
    """Each alert waits a ``for:``, has a severity and component, a summary and a
    description, and links its section of docs/runbook.md."""
    sections = runbook_sections()
    for alert, rule in alerting_rules(rule_groups()).items():
        assert seconds(rule["for"]) > 0, alert
        assert rule["labels"]["severity"] in ("warning", "critical"), alert
        assert rule["labels"]["component"] in ("agent", "indexer", "search"), alert
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_URL), alert
        anchor = url.removeprefix(RUNBOOK_URL)
        assert anchor == github_anchor(alert), f"{alert}: runbook anchor {anchor}"
        assert anchor in sections, f"docs/runbook.md has no section {alert}"


def test_runbook_says_what_each_alert_means_how_to_check_and_what_to_do() -> None:
    """Every alert's runbook section has the three parts, and every alert-named section
    belongs to an existing alert."""
    alerts = alerting_rules(rule_groups())
    sections = runbook_sections()
    alert_sections = {a for a in sections if a.startswith("podlog")}
    assert alert_sections == {github_anchor(a) for a in alerts}
    for alert in alerts:
        text = sections[github_anchor(alert)]
        for part in ("**What it means.**", "**How to check.**", "**What to do.**"):
            assert part in text, f"{alert}: no {part}"


def test_spool_alert_reads_the_cap_the_agents_export() -> None:
    """PodlogAgentSpoolFilling divides each agent's spool bytes by the cap it exports,
    so no byte count is written into the rule, the dashboard has no cap variable, and
    docs/deploy.md patches no rule expression for another cap."""
    expr = alerting_rules(rule_groups())["PodlogAgentSpoolFilling"]["expr"]
    assert metric_names(expr) == {"podlog_shipper_spool_bytes", "podlog_shipper_spool_max_bytes"}
    assert not re.search(r"[0-9]{4,}", expr), f"a byte count in the rule: {expr}"
    assert "spool_max_bytes" not in {v["name"] for v in dashboard()["templating"]["list"]}
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert not re.findall(r"path: /spec/groups/\d+/rules/\d+/expr", docs)


def test_metric_name_extraction_reads_promql() -> None:
    """The name reader skips functions, keywords, label names, strings and variables."""
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{endpoint!~"tail|x_y"}[$__rate_interval])))'
        " / on (node) group_left () b_total > 0.8 * 1073741824 unless c"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}
    assert metric_names('label_values(d_total{namespace=~"$namespace"}, node)') == {"d_total"}


def test_every_metric_in_the_rules_and_dashboard_exists() -> None:
    """Each metric the alert rules and the dashboard query is declared in podlog's
    metric registry (or is Prometheus' ``up`` or kube-state-metrics' ``kube_pod_info``)."""
    known = registered_metrics() | EXTERNAL_METRICS
    used = {f"rule {r.get('alert') or r.get('record')}": r["expr"] for g in rule_groups() for r in g["rules"]}
    used.update(queries(dashboard()))
    for where, expr in used.items():
        names = metric_names(expr)
        assert names, f"{where} reads no metric: {expr}"
        assert names <= known, f"{where}: unknown metrics {sorted(names - known)}"


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each panel and variable query, with the variables filled in,
    as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute_variables(promql(expr))}
        for i, expr in enumerate(queries(dashboard()).values())
    ]
    (tmp_path / "dashboard-rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", "dashboard-rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_the_datasource_variable() -> None:
    """The Prometheus data source is a dashboard variable, and every panel and target uses it."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", source) == source, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == source, variable["name"]


def test_dashboard_has_the_pipeline_panels() -> None:
    """Lines in and out per node, end-to-end lag, loss by reason, spool fill, indexer
    throughput and rejections, and search latency percentiles are each a panel on their metrics."""
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    by_title = {p["title"]: p for p in panels(board)}
    required = {
        "Lines in and out per node (/s)": {"podlog_collector_read_lines_total", "podlog_shipper_sent_records_total"},
        "Agent: oldest unshipped batch per node": {"podlog_shipper_spool_oldest_unacked_age_seconds"},
        "Indexer: consumer lag by topic": {"podlog_indexer_consumer_lag_messages"},
        "Loss by reason": {"podlog_collector_lost_bytes_total"},
        "Spool fill per node": {"podlog_shipper_spool_bytes", "podlog_shipper_spool_max_bytes"},
        "Indexer throughput by outcome (/s)": {"podlog_indexer_documents_total"},
        "OpenSearch rejections (/s)": {"podlog_indexer_bulk_requests_total", "podlog_indexer_documents_retried_total"},
        "Search latency percentiles": {"podlog_search_request_seconds_bucket"},
    }
    for title, expected in required.items():
        assert title in by_title, f"no panel {title!r}"
        used = set().union(*(metric_names(t["expr"]) for t in by_title[title]["targets"]))
        assert expected <= used, f"{title}: {sorted(expected - used)} not queried"
    per_node = by_title["Lines in and out per node (/s)"]["targets"]
    assert all("by (node)" in t["expr"] for t in per_node)
    latency = " ".join(t["expr"] for t in by_title["Search latency percentiles"]["targets"])
    assert set(re.findall(r"histogram_quantile\(([0-9.]+),", latency)) == {"0.5", "0.9", "0.99"}


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(monitored: list[Obj]) -> None:
    """The dashboard ships as a ConfigMap with label grafana_dashboard=1, a stable
    name, the JSON file unchanged, and small enough for kubectl apply."""
    configmap = named(monitored, "ConfigMap", "podlog-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["podlog-dashboard.json"]) == dashboard()
    assert len(json.dumps(configmap)) < CONFIGMAP_LIMIT
