"""Policy tests over the rendered Kubernetes manifests (base and example overlay)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from kubernetes_validate.utils import SchemaNotFoundError  # type: ignore[import-untyped]

from podlog.settings import load_settings
from tests.unit.deploy.manifests import (
    Obj,
    config_file,
    containers,
    named,
    of_kind,
    parse_config,
    pod_spec,
    port_of,
    workloads,
)
from tests.unit.deploy.podlog_config import (
    config_check,
    dotted,
    looks_secret,
    pipeline_mismatches,
    secret_settings,
    walk,
)

KUBERNETES_VERSION = "1.33"
STATE_DIR = "/var/lib/podlog"
READ_ONLY_HOST_PATHS = {"/var/log", "/var/lib/docker/containers"}
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def agent(objects: list[Obj]) -> Obj:
    return named(objects, "DaemonSet", "podlog-agent")


def test_renders_every_component(objects: list[Obj]) -> None:
    """The kustomization renders the namespace, RBAC, config and the three workloads."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for expected in [
        ("Namespace", "podlog"),
        ("ServiceAccount", "podlog-agent"),
        ("ClusterRole", "podlog-agent"),
        ("ClusterRoleBinding", "podlog-agent"),
        ("PriorityClass", "podlog-agent"),
        ("DaemonSet", "podlog-agent"),
        ("Deployment", "podlog-indexer"),
        ("PodDisruptionBudget", "podlog-indexer"),
        ("Deployment", "podlog-search"),
        ("Service", "podlog-search"),
    ]:
        assert expected in kinds, f"{expected} missing from the rendered manifests"
    assert len(of_kind(objects, "ConfigMap")) == 1


def test_every_object_validates_against_the_kubernetes_schema(objects: list[Obj]) -> None:
    """Every rendered object passes kubernetes-validate --strict for Kubernetes 1.33."""
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name} is invalid at {path}: {exc.message}")
        except SchemaNotFoundError as exc:
            pytest.fail(f"{name}: {exc.message}")


def test_namespaced_objects_land_in_the_podlog_namespace(objects: list[Obj]) -> None:
    """Every namespaced object is in the podlog namespace, and the binding names it."""
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == "podlog", obj["metadata"]["name"]
    binding = named(objects, "ClusterRoleBinding", "podlog-agent")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "podlog-agent", "namespace": "podlog"}]


def test_rbac_is_read_only_on_pods_and_namespaces(objects: list[Obj]) -> None:
    """The only API permission is get/list/watch on pods and namespaces, for the agent."""
    assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
    (role,) = of_kind(objects, "ClusterRole")
    granted = set()
    for rule in role["rules"]:
        assert rule.get("apiGroups") == [""], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        granted |= {(r, v) for r in rule["resources"] for v in rule["verbs"]}
    expected = {(r, v) for r in ("pods", "namespaces") for v in ("get", "list", "watch")}
    assert granted == expected
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    for workload in workloads(objects):
        spec = pod_spec(workload)
        if workload is agent(objects):
            assert spec["serviceAccountName"] == "podlog-agent"
        else:
            assert spec.get("automountServiceAccountToken") is False, workload["metadata"]["name"]


def test_host_paths_are_read_only_except_the_state_directory(objects: list[Obj]) -> None:
    """Host directories are mounted read-only, except the agent's state directory."""
    for workload in workloads(objects):
        spec = pod_spec(workload)
        host = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
        if workload is not agent(objects):
            assert not host, f"{workload['metadata']['name']} mounts host paths {host}"
            continue
        assert set(host.values()) == READ_ONLY_HOST_PATHS | {STATE_DIR}
        for container in containers(workload):
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in host:
                    continue
                path = host[mount["name"]]
                assert mount["mountPath"] == path, "host paths keep their paths (symlinks resolve)"
                if path == STATE_DIR:
                    assert not mount.get("readOnly", False), "the state directory is writable"
                else:
                    assert mount.get("readOnly") is True, f"{path} must be mounted read-only"
        state = next(v for v in spec["volumes"] if v.get("hostPath", {}).get("path") == STATE_DIR)
        assert state["hostPath"]["type"] == "DirectoryOrCreate"


def test_agent_state_dir_is_the_configured_one(objects: list[Obj]) -> None:
    """The writable host directory is where the agent's config puts its state."""
    workload = agent(objects)
    (container,) = list(containers(workload))
    _, _, text = config_file(objects, workload, container)
    state_dir = parse_config(text).get("podlog", {}).get("state_dir", STATE_DIR)
    assert state_dir == STATE_DIR


def test_every_container_has_probes_on_healthz_and_readyz(objects: list[Obj]) -> None:
    """Liveness probes /healthz and readiness probes /readyz on a declared container port."""
    for workload in workloads(objects):
        for container in containers(workload):
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                http = container[probe]["httpGet"]
                assert http["path"] == path, f"{container['name']} {probe}"
                assert http["port"] in ports or http["port"] in ports.values()


def test_probe_ports_are_where_podlog_listens(objects: list[Obj]) -> None:
    """Probed ports match podlog.http_listen (agent, indexer) and search.listen (search)."""
    for workload in workloads(objects):
        for container in containers(workload):
            _, _, text = config_file(objects, workload, container)
            config = parse_config(text)
            command = container["args"][0]
            if command == "search":
                listen = config.get("search", {}).get("listen", "0.0.0.0:8080")
            else:
                listen = config.get("podlog", {}).get("http_listen", "0.0.0.0:9090")
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            probe_port = container["readinessProbe"]["httpGet"]["port"]
            assert ports.get(probe_port, probe_port) == port_of(listen), container["name"]


def test_every_container_has_requests_and_limits(objects: list[Obj]) -> None:
    """CPU and memory requests and limits are set, and requests do not exceed limits."""
    for workload in workloads(objects):
        for container in containers(workload):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert 0 < request <= limit, f"{container['name']} {resource}"


def test_every_container_is_locked_down(objects: list[Obj]) -> None:
    """No privilege escalation, read-only root, all capabilities dropped, seccomp on."""
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context.get("privileged", False) is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert not context["capabilities"].get("add"), "the agent reads logs as uid 0 owner"


def test_only_the_agent_runs_as_root(objects: list[Obj]) -> None:
    """Indexer and search run as a non-root user; the agent as uid 0 to read root-owned logs."""
    for workload in workloads(objects):
        context = pod_spec(workload)["securityContext"]
        if workload is agent(objects):
            assert context["runAsUser"] == 0
        else:
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] > 0


def test_agent_daemonset_runs_on_every_node_first(objects: list[Obj]) -> None:
    """Tolerates every taint, has a priority class, updates one node at a time."""
    workload = agent(objects)
    spec = pod_spec(workload)
    assert {"operator": "Exists"} in spec["tolerations"]
    priority = named(objects, "PriorityClass", spec["priorityClassName"])
    assert priority["value"] > 0 and not priority.get("globalDefault", False)
    strategy = workload["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] in (1, "1")


def test_agent_knows_its_node_from_the_downward_api(objects: list[Obj]) -> None:
    """NODE_NAME comes from spec.nodeName (the agent's node scope), and the pod's own name."""
    (container,) = list(containers(agent(objects)))
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # collector.exclude_self recognises the agent's own files by these two.
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    _, _, text = config_file(objects, agent(objects), container)
    assert not parse_config(text).get("podlog", {}).get("node_name"), "node_name would win"


def test_termination_grace_fits_the_ordered_shutdown(objects: list[Obj]) -> None:
    """Each pod's termination grace exceeds podlog.shutdown_grace_seconds by at least 3 s."""
    for workload in workloads(objects):
        for container in containers(workload):
            _, _, text = config_file(objects, workload, container)
            grace = parse_config(text).get("podlog", {}).get("shutdown_grace_seconds", 25.0)
            budget = pod_spec(workload)["terminationGracePeriodSeconds"]
            assert budget >= grace + 3, f"{workload['metadata']['name']}: {budget}s < {grace}s + 3"


def test_agent_exposes_a_metrics_port(objects: list[Obj]) -> None:
    """The agent's /metrics port is declared and announced for scraping."""
    workload = agent(objects)
    (container,) = list(containers(workload))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_disruption_budgets_and_services_select_their_pods(objects: list[Obj]) -> None:
    """The indexer has a PDB; PDB and Service selectors match pod labels; ports resolve."""
    pods = {w["metadata"]["name"]: (w["spec"]["template"]["metadata"]["labels"], w) for w in workloads(objects)}

    def selected(selector: dict[str, str]) -> list[str]:
        return [n for n, (labels, _) in pods.items() if selector.items() <= labels.items()]

    for pdb in of_kind(objects, "PodDisruptionBudget"):
        assert len(selected(pdb["spec"]["selector"]["matchLabels"])) == 1, pdb["metadata"]["name"]
    indexer_pdbs = [
        p
        for p in of_kind(objects, "PodDisruptionBudget")
        if selected(p["spec"]["selector"]["matchLabels"]) == ["podlog-indexer"]
    ]
    assert indexer_pdbs
    service = named(objects, "Service", "podlog-search")
    (target,) = selected(service["spec"]["selector"])
    assert target == "podlog-search"
    container = pod_spec(pods[target][1])["containers"][0]
    names = {p["name"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                named(objects, "Service", backend["name"])


def test_config_passes_podlog_config_check(objects: list[Obj], tmp_path: Path) -> None:
    """The ConfigMap's podlog.yaml passes `podlog config check`, with each pod's env applied."""
    for workload in workloads(objects):
        for container in containers(workload):
            _, key, text = config_file(objects, workload, container)
            path = tmp_path / key
            path.write_text(text)
            env = podlog_env(container)
            result = config_check(path, env)
            assert result.returncode == 0, f"{container['name']}: {result.stderr}"
            assert f"{path}: ok" in result.stdout
            load_settings(path, environ=env)  # the same in-process, for a clear traceback


def test_no_secret_values_in_configmaps(objects: list[Obj]) -> None:
    """ConfigMaps hold no credential: secret settings are unset, nothing looks like a key."""
    secret_keys = set(secret_settings())
    for configmap in of_kind(objects, "ConfigMap"):
        for key, text in configmap.get("data", {}).items():
            assert not PRIVATE_KEY.search(text), f"{key} holds a private key"
            for leaf, value in walk(parse_config(text)):
                if leaf in secret_keys or looks_secret(leaf):
                    assert value in ("", None), f"{key}: {leaf} is a credential, set in a Secret"


def test_credentials_come_from_secrets(objects: list[Obj]) -> None:
    """Env vars carrying secret settings or credential-like names come from Secrets."""
    secret_keys = set(secret_settings())
    for workload in workloads(objects):
        for container in containers(workload):
            for env in container.get("env", []):
                name = env["name"]
                is_secret = looks_secret(name) or (name.startswith("PODLOG_") and dotted(name) in secret_keys)
                if is_secret:
                    assert "value" not in env, f"{name} is set in the manifest"
                    assert "secretKeyRef" in env["valueFrom"], f"{name} not from a Secret"
            assert not container.get("envFrom") or all(
                "secretRef" in source or "configMapRef" in source for source in container["envFrom"]
            )


def podlog_env(container: Obj) -> dict[str, str]:
    """The container's PODLOG_* variables, secret-backed ones given a placeholder value."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if item["name"].startswith("PODLOG_"):
            env[item["name"]] = item.get("value", "placeholder")
    return env


def quantity(value: Any) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores or bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_agent_reads_only_what_is_mounted(objects: list[Obj]) -> None:
    """Every collector.include glob lies under a read-only host mount at its host path."""
    workload = agent(objects)
    (container,) = list(containers(workload))
    _, _, text = config_file(objects, workload, container)
    includes = parse_config(text).get("collector", {}).get("include", ["/var/log/containers/*.log"])
    read_only = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"] if m.get("readOnly")]
    for pattern in includes:
        assert any(pattern.startswith(prefix) for prefix in read_only), pattern


def test_images_are_pinned(objects: list[Obj]) -> None:
    """Every container image has an explicit tag other than latest."""
    for workload in workloads(objects):
        for container in containers(workload):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag and tag not in ("", "latest"), image
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_docs_say_how_to_create_every_referenced_secret(objects: list[Obj]) -> None:
    """Each Secret a pod references has its `kubectl create secret` line in docs/deploy.md."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "deploy.md").read_text()
    referenced = set()
    for workload in workloads(objects):
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
        for container in containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
    assert referenced
    for name in referenced:
        assert f"create secret generic {name}" in docs, name


def test_network_policies_admit_only_declared_ports(objects: list[Obj]) -> None:
    """Each workload's pods are selected by a NetworkPolicy admitting exactly their ports."""
    policies = of_kind(objects, "NetworkPolicy")
    for workload in workloads(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert len(selecting) == 1, workload["metadata"]["name"]
        (policy,) = selecting
        assert "Ingress" in policy["spec"]["policyTypes"]
        admitted = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
        declared = {p["name"] for c in containers(workload) for p in c.get("ports", [])}
        assert admitted == declared, workload["metadata"]["name"]


def test_agent_indexer_and_search_configs_meet(objects: list[Obj], tmp_path: Path) -> None:
    """The topic, brokers, OpenSearch hosts and index prefix agree across the three processes."""
    loaded = {}
    for workload in workloads(objects):
        for container in containers(workload):
            _, key, text = config_file(objects, workload, container)
            path = tmp_path / f"{container['name']}-{key}"
            path.write_text(text)
            loaded[container["args"][0]] = load_settings(path, environ=podlog_env(container))
    assert not pipeline_mismatches(loaded["agent"], loaded["indexer"], loaded["search"])
