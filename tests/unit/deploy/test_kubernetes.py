"""Policy tests over the rendered Kubernetes manifests (base and example overlay).

Besides schema validity: every pod is denied all traffic but what its
component needs (NetworkPolicies), each namespace enforces the least Pod
Security level its pods meet (checked field by field against the Pod Security
Standards), and no Service reaches the ops port (``/metrics``, ``/healthz``,
``/readyz``).
"""

from __future__ import annotations

import re
import urllib.parse
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
OPS_PORT_NAME = "metrics"
"""The container port of /metrics, /healthz and /readyz in every workload."""
PSA_LEVELS = ("restricted", "baseline", "privileged")
"""Pod Security Standards levels, strictest first."""
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
MONITORING = {NAMESPACE_LABEL: "monitoring"}
INGRESS_CONTROLLER = {NAMESPACE_LABEL: "ingress-nginx"}
KUBE_DNS = ({NAMESPACE_LABEL: "kube-system"}, {"k8s-app": "kube-dns"})
KAFKA_NAMESPACE = {NAMESPACE_LABEL: "kafka"}
OPENSEARCH_NAMESPACE = {NAMESPACE_LABEL: "opensearch"}
API_SERVER_PORTS = {443, 6443}


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
        ("NetworkPolicy", "podlog-default-deny"),
        ("NetworkPolicy", "podlog-agent"),
        ("NetworkPolicy", "podlog-indexer"),
        ("NetworkPolicy", "podlog-search"),
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


def ops_listen(config: dict[str, Any], command: str) -> str:
    """Where a process serves /metrics, /healthz, /readyz: search.ops_listen or podlog.http_listen."""
    if command == "search":
        return str(config.get("search", {}).get("ops_listen", "0.0.0.0:9090"))
    return str(config.get("podlog", {}).get("http_listen", "0.0.0.0:9090"))


def test_probe_ports_are_where_podlog_listens(objects: list[Obj]) -> None:
    """Probed ports are the metrics port, where podlog.http_listen (agent, indexer) or search.ops_listen points."""
    for workload in workloads(objects):
        for container in containers(workload):
            _, _, text = config_file(objects, workload, container)
            listen = ops_listen(parse_config(text), container["args"][0])
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports[OPS_PORT_NAME] == port_of(listen), container["name"]
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in (OPS_PORT_NAME, ports[OPS_PORT_NAME]), probe


def test_search_api_port_is_where_search_listens_and_apart_from_ops(objects: list[Obj]) -> None:
    """The search container's http port is search.listen, a different port from search.ops_listen."""
    workload = named(objects, "Deployment", "podlog-search")
    (container,) = list(containers(workload))
    _, _, text = config_file(objects, workload, container)
    config = parse_config(text)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port_of(config.get("search", {}).get("listen", "0.0.0.0:8080"))
    assert ports["http"] != ports[OPS_PORT_NAME]
    assert config.get("search", {}).get("openapi", "authenticated") in ("authenticated", "off")


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


def test_every_workload_announces_its_metrics_port_for_scraping(objects: list[Obj]) -> None:
    """Each pod declares the metrics port, and its prometheus.io annotations name it and /metrics."""
    for workload in workloads(objects):
        (container,) = list(containers(workload))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(ports[OPS_PORT_NAME]), workload["metadata"]["name"]
        assert annotations["prometheus.io/path"] == "/metrics"


def service_targets(objects: list[Obj], service: Obj) -> list[tuple[Obj, Obj]]:
    """(Service port, container port) pairs: each Service port resolved in every pod it selects."""
    pairs: list[tuple[Obj, Obj]] = []
    for workload in workloads(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if not service["spec"]["selector"].items() <= labels.items():
            continue
        declared = [p for c in containers(workload) for p in c.get("ports", [])]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            matches = [p for p in declared if target in (p.get("name"), p["containerPort"])]
            assert matches, f"Service {service['metadata']['name']} port {target} matches no container port"
            pairs.extend((port, match) for match in matches)
    return pairs


def ingress_services(objects: list[Obj]) -> set[str]:
    """Names of the Services some Ingress routes to."""
    return {
        path["backend"]["service"]["name"]
        for ingress in of_kind(objects, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }


def test_no_routable_service_targets_the_metrics_port(objects: list[Obj]) -> None:
    """The search Service exposes no metrics port; a Service that does (for a ServiceMonitor) is headless
    and behind no Ingress, so /metrics, /healthz and /readyz are never on a routed address."""
    services = of_kind(objects, "Service")
    assert services
    public = ingress_services(objects) | {"podlog-search"}
    for service in services:
        name = service["metadata"]["name"]
        for port, container_port in service_targets(objects, service):
            if container_port["name"] != OPS_PORT_NAME:
                continue
            assert name not in public, f"Service {name} port {port['port']} reaches the metrics port"
            assert service["spec"].get("clusterIP") == "None", f"Service {name} gives the metrics port an address"


def test_ingress_backends_reach_only_the_search_api_port(objects: list[Obj]) -> None:
    """Every Ingress path goes to a Service port whose pods' port is search.listen, never search.ops_listen."""
    search = named(objects, "Deployment", "podlog-search")
    (container,) = list(containers(search))
    _, _, text = config_file(objects, search, container)
    api_port = port_of(parse_config(text).get("search", {}).get("listen", "0.0.0.0:8080"))
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = named(objects, "Service", backend["name"])
                ports = [
                    p for p in service["spec"]["ports"] if backend["port"].get("name", p["name"]) == p["name"]
                    and backend["port"].get("number", p["port"]) == p["port"]
                ]
                assert len(ports) == 1, f"Ingress backend {backend} names no single Service port"
                reached = [c for s, c in service_targets(objects, service) if s is ports[0]]
                assert reached and all(c["containerPort"] == api_port for c in reached), reached


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


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def test_images_are_pinned(objects: list[Obj]) -> None:
    """Every container image has an explicit tag other than latest (and may add a digest)."""
    for workload in workloads(objects):
        for container in containers(workload):
            image = DIGEST.sub("", container["image"])
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag and tag not in ("", "latest"), image
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_example_overlay_pins_the_image_by_digest(rendered_targets: dict[str, list[Obj]]) -> None:
    """The example overlay's `images:` sets a digest, so every pod runs the bytes a release built."""
    for workload in workloads(rendered_targets["example-overlay"]):
        for container in containers(workload):
            assert DIGEST.search(container["image"]), (
                f"{container['image']}: set the release's digest in the overlay's kustomization `images:`"
            )


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


def component(workload: Obj) -> str:
    """agent, indexer or search: the workload's app.kubernetes.io/component label."""
    return str(workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def policy_for(objects: list[Obj], workload: Obj) -> Obj:
    """The one NetworkPolicy that names this workload's pods (the namespace-wide one aside)."""
    labels = workload["spec"]["template"]["metadata"]["labels"]
    namespace = workload["metadata"]["namespace"]
    selecting = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["metadata"]["namespace"] == namespace
        and p["spec"]["podSelector"].get("matchLabels")
        and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(selecting) == 1, f"{workload['metadata']['name']}: {len(selecting)} policies select its pods"
    return selecting[0]


def test_every_pod_is_denied_all_traffic_by_default(objects: list[Obj]) -> None:
    """Each namespace with pods has a policy selecting all of them, both directions, allowing nothing."""
    for namespace in {w["metadata"]["namespace"] for w in workloads(objects)}:
        deny = [
            p
            for p in of_kind(objects, "NetworkPolicy")
            if p["metadata"]["namespace"] == namespace and p["spec"]["podSelector"] == {}
        ]
        assert len(deny) == 1, f"namespace {namespace} has no default-deny policy"
        spec = deny[0]["spec"]
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
        assert not spec.get("ingress") and not spec.get("egress"), "the default-deny policy allows something"


def test_component_policies_govern_both_directions(objects: list[Obj]) -> None:
    """Each workload's own policy lists Ingress and Egress, so what it does not allow stays denied."""
    for workload in workloads(objects):
        assert set(policy_for(objects, workload)["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_ingress_comes_only_from_the_ingress_controller_and_monitoring(objects: list[Obj]) -> None:
    """metrics from the monitoring namespace for all; http from the ingress controller's, for search only."""
    expected = {
        "agent": {OPS_PORT_NAME: MONITORING},
        "indexer": {OPS_PORT_NAME: MONITORING},
        "search": {"http": INGRESS_CONTROLLER, OPS_PORT_NAME: MONITORING},
    }
    for workload in workloads(objects):
        rules = policy_for(objects, workload)["spec"].get("ingress", [])
        admitted: dict[str, dict[str, str]] = {}
        for rule in rules:
            peers = rule.get("from")
            assert peers, f"{component(workload)}: an ingress rule open to every source"
            for peer in peers:
                assert set(peer) == {"namespaceSelector"}, f"{component(workload)}: peer {peer} is not a namespace"
                for port in rule["ports"]:
                    assert port["protocol"] == "TCP"
                    admitted[port["port"]] = peer["namespaceSelector"]["matchLabels"]
        assert admitted == expected[component(workload)], component(workload)
        declared = {p["name"] for c in containers(workload) for p in c.get("ports", [])}
        assert set(admitted) == declared, "every declared port is reachable by someone, and nothing else"


def kafka_ports(bootstrap_servers: str) -> set[int]:
    return {port_of(address.strip()) for address in bootstrap_servers.split(",") if address.strip()}


def url_ports(urls: list[str]) -> set[int]:
    ports = set()
    for url in urls:
        parsed = urllib.parse.urlsplit(url)
        ports.add(parsed.port or (443 if parsed.scheme == "https" else 80))
    return ports


def egress_by_destination(policy: Obj) -> dict[str, set[tuple[str, int]]]:
    """The policy's egress rules keyed by what they reach: dns, kafka, opensearch, api-server."""
    found: dict[str, set[tuple[str, int]]] = {}
    for rule in policy["spec"].get("egress", []):
        peers = rule.get("to")
        assert peers, "an egress rule open to every destination"
        ports = {(p["protocol"], int(p["port"])) for p in rule["ports"]}
        if all(set(peer) == {"ipBlock"} for peer in peers):
            assert {port for _, port in ports} <= API_SERVER_PORTS, f"ipBlock egress on {ports}"
            kind = "api-server"
        else:
            (peer,) = peers
            namespace = peer["namespaceSelector"]["matchLabels"]
            pods = peer.get("podSelector", {}).get("matchLabels")
            kind = {
                (str(KUBE_DNS[0]), str(KUBE_DNS[1])): "dns",
                (str(KAFKA_NAMESPACE), "None"): "kafka",
                (str(OPENSEARCH_NAMESPACE), "None"): "opensearch",
            }.get((str(namespace), str(pods)), f"unexpected {namespace} {pods}")
        assert kind not in found, f"two egress rules reach {kind}"
        found[kind] = ports
    return found


def test_egress_reaches_only_dns_kafka_opensearch_and_the_api_server(objects: list[Obj], tmp_path: Path) -> None:
    """agent: DNS, Kafka, API server; indexer: DNS, Kafka, OpenSearch; search: DNS, OpenSearch.

    The Kafka and OpenSearch ports are the ones each process's podlog.yaml names.
    """
    for workload in workloads(objects):
        (container,) = list(containers(workload))
        _, key, text = config_file(objects, workload, container)
        path = tmp_path / f"{container['name']}-{key}"
        path.write_text(text)
        settings = load_settings(path, environ=podlog_env(container))
        dns = {("UDP", 53), ("TCP", 53)}
        expected = {
            "agent": {
                "dns": dns,
                "kafka": {("TCP", p) for p in kafka_ports(settings.shipper.kafka.bootstrap_servers)},
                "api-server": {("TCP", p) for p in API_SERVER_PORTS},
            },
            "indexer": {
                "dns": dns,
                "kafka": {("TCP", p) for p in kafka_ports(settings.indexer.kafka.bootstrap_servers)},
                "opensearch": {("TCP", p) for p in url_ports(settings.indexer.opensearch.hosts)},
            },
            "search": {
                "dns": dns,
                "opensearch": {("TCP", p) for p in url_ports(settings.search.opensearch_hosts)},
            },
        }[component(workload)]
        assert egress_by_destination(policy_for(objects, workload)) == expected, component(workload)


def test_only_the_agent_may_reach_the_api_server(objects: list[Obj]) -> None:
    """The agent has the only service-account token, and the only egress to the API server's ports."""
    for workload in workloads(objects):
        reaches = "api-server" in egress_by_destination(policy_for(objects, workload))
        assert reaches == (workload is agent(objects)), component(workload)
        has_token = pod_spec(workload).get("automountServiceAccountToken", True) is not False
        assert has_token == reaches, component(workload)


BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip


def pod_security_violations(workload: Obj) -> dict[str, list[str]]:
    """What keeps the pod template from each Pod Security Standards level (v1.33), control by control."""
    spec = pod_spec(workload)
    pod = spec.get("securityContext", {})
    every = list(containers(workload))
    contexts = [c.get("securityContext", {}) for c in every]
    baseline: list[str] = []
    restricted: list[str] = []
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        baseline.append("host namespaces")
    for context in [pod, *contexts]:
        if context.get("windowsOptions", {}).get("hostProcess"):
            baseline.append("hostProcess")
        if context.get("seccompProfile", {}).get("type") == "Unconfined":
            baseline.append("seccomp Unconfined")
        if context.get("appArmorProfile", {}).get("type") == "Unconfined":
            baseline.append("AppArmor Unconfined")
        selinux = context.get("seLinuxOptions", {})
        if selinux.get("user") or selinux.get("role") or selinux.get("type", "container_t") not in (
            "container_t", "container_init_t", "container_kvm_t", "container_engine_t",
        ):  # fmt: skip
            baseline.append("SELinux options")
        if context.get("runAsUser") == 0:
            restricted.append("runAsUser 0")
    if any(c.get("privileged") for c in contexts):
        baseline.append("privileged container")
    if any(c.get("procMount", "Default") != "Default" for c in contexts):
        baseline.append("procMount")
    for context in contexts:
        added = set(context.get("capabilities", {}).get("add", []))
        if added - BASELINE_CAPABILITIES:
            baseline.append(f"capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        if added - {"NET_BIND_SERVICE"}:
            restricted.append("capabilities added")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            restricted.append("capabilities not dropped")
        if context.get("allowPrivilegeEscalation") is not False:
            restricted.append("allowPrivilegeEscalation")
    if any(p.get("hostPort") for c in every for p in c.get("ports", [])):
        baseline.append("host ports")
    if {s["name"] for s in pod.get("sysctls", [])} - SAFE_SYSCTLS:
        baseline.append("unsafe sysctls")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            baseline.append(f"hostPath volume {volume['name']}")
        if kinds - RESTRICTED_VOLUMES:
            restricted.append(f"volume type {sorted(kinds)}")
    pod_non_root = pod.get("runAsNonRoot") is True
    if not all(c.get("runAsNonRoot", pod_non_root) is True for c in contexts):
        restricted.append("runAsNonRoot")
    pod_seccomp = pod.get("seccompProfile", {}).get("type")
    for context in contexts:
        if context.get("seccompProfile", {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            restricted.append("seccomp profile")
    return {"baseline": baseline, "restricted": baseline + restricted}


def least_level(workload: Obj) -> str:
    """The strictest Pod Security level the workload's pods meet."""
    violations = pod_security_violations(workload)
    return next((level for level in PSA_LEVELS[:2] if not violations[level]), "privileged")


def test_indexer_and_search_pods_meet_restricted(objects: list[Obj]) -> None:
    """Non-root, no privilege escalation, every capability dropped, RuntimeDefault seccomp, allowed volumes."""
    for workload in workloads(objects):
        if workload is agent(objects):
            continue
        assert not pod_security_violations(workload)["restricted"], workload["metadata"]["name"]


def test_agent_falls_short_of_baseline_only_for_its_host_paths(objects: list[Obj]) -> None:
    """baseline forbids hostPath volumes, the agent's only reason to need privileged; nothing else is above baseline."""
    violations = pod_security_violations(agent(objects))["baseline"]
    assert violations, "the agent meets baseline: lower its namespace's enforce level"
    assert all(v.startswith("hostPath volume") for v in violations), violations


def test_each_namespace_enforces_the_least_level_its_pods_allow(objects: list[Obj]) -> None:
    """enforce is the strictest level every pod in the namespace meets; audit is restricted; versions pinned."""
    for namespace in of_kind(objects, "Namespace"):
        labels = namespace["metadata"].get("labels", {})
        name = namespace["metadata"]["name"]
        members = [w for w in workloads(objects) if w["metadata"]["namespace"] == name]
        needed = max((least_level(w) for w in members), key=PSA_LEVELS.index, default="restricted")
        assert labels.get("pod-security.kubernetes.io/enforce") == needed, name
        assert labels.get("pod-security.kubernetes.io/audit") == "restricted", name
        for mode in ("enforce", "audit", "warn"):
            if f"pod-security.kubernetes.io/{mode}" in labels:
                assert labels.get(f"pod-security.kubernetes.io/{mode}-version") == f"v{KUBERNETES_VERSION}", mode


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
