"""``podlog config check OVERLAY``: what a kustomize overlay would deploy, checked offline.

The overlay is rendered with ``kubectl kustomize`` (no cluster needed), then:

- the podlog config each workload reads (its ``--config`` file, on a ConfigMap
  volume) validates as ``podlog config check FILE`` would, with the
  container's own ``PODLOG_*`` variables applied (a Secret-backed one gets a
  placeholder value: only its presence matters here);
- when the monitoring component is enabled (ServiceMonitor, PodMonitor or
  PrometheusRule objects in the output), each monitor has a namespace, a
  non-empty label selector that matches a rendered Service (ServiceMonitor) or
  workload's pod template (PodMonitor) inside the namespaces it watches, and
  endpoints whose port name a selected target exposes; a Service a
  ServiceMonitor scrapes selects pods whose containers have its target port;
  each PrometheusRule has a namespace.

Every problem is one line naming the object and what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from podlog.config import apply_env, build
from podlog.errors import ConfigError
from podlog.settings import Settings

__all__ = [
    "KUSTOMIZATION_FILES",
    "OverlayReport",
    "check_objects",
    "check_overlay",
    "find_kubectl",
    "is_overlay",
    "render_overlay",
]

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
"""The file names kustomize accepts for a kustomization, in the order it looks."""

RENDER_TIMEOUT_SECONDS = 120.0
MONITOR_KINDS = ("ServiceMonitor", "PodMonitor")
RULE_KIND = "PrometheusRule"
POD_TEMPLATE_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
SECRET_PLACEHOLDER = "placeholder"  # noqa: S105 - a stand-in, never a credential
"""The value given to a ``PODLOG_*`` variable that a Secret or field reference sets."""


@dataclasses.dataclass(frozen=True, slots=True)
class OverlayReport:
    """What a check found in one rendered overlay."""

    problems: tuple[str, ...]
    """One line per problem: ``<Kind> <name>: <what is missing>``."""
    summary: tuple[str, ...]
    """One line per thing that checked out, for the success message."""
    objects: int
    """How many objects the overlay rendered."""


def is_overlay(path: Path) -> bool:
    """Whether ``path`` is a directory kustomize can build."""
    return path.is_dir() and any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def find_kubectl() -> str | None:
    """kubectl on PATH, else one a Python package installed beside this interpreter."""
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else None


def render_overlay(path: Path) -> list[Obj]:
    """``kubectl kustomize path`` parsed into its objects; ConfigError when it cannot."""
    kubectl = find_kubectl()
    if kubectl is None:
        raise ConfigError(
            f"{path}: checking an overlay renders it with `kubectl kustomize`, and kubectl is not on PATH; "
            "install kubectl, or check the config file alone: podlog config check FILE"
        )
    try:
        result = subprocess.run(
            [kubectl, "kustomize", str(path)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
            check=False,
            # Rendering needs no cluster: never read the user's kubeconfig.
            env={**os.environ, "KUBECONFIG": os.devnull},
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"{path}: kubectl kustomize did not finish in {RENDER_TIMEOUT_SECONDS:.0f} s") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot run {kubectl}: {exc.strerror}") from exc
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit status {result.returncode}"
        raise ConfigError(f"{path}: kubectl kustomize failed: {detail}")
    try:
        return [doc for doc in yaml.safe_load_all(result.stdout) if isinstance(doc, dict)]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: kubectl kustomize printed invalid YAML: {exc}") from exc


def check_overlay(path: Path) -> OverlayReport:
    """Render the overlay at ``path`` and check what it would deploy."""
    return check_objects(render_overlay(path))


def check_objects(objects: list[Obj]) -> OverlayReport:
    """Check rendered objects: the podlog configs, then the monitoring objects if any."""
    problems, summary = _check_configs(objects)
    monitors = [o for o in objects if o.get("kind") in MONITOR_KINDS]
    rules = [o for o in objects if o.get("kind") == RULE_KIND]
    if not monitors and not rules:
        summary.append("monitoring: no ServiceMonitor, PodMonitor or PrometheusRule (component not enabled)")
    for monitor in monitors:
        line = _check_monitor(monitor, objects, problems)
        if line:
            summary.append(line)
    for rule in rules:
        line = _check_rule(rule, problems)
        if line:
            summary.append(line)
    return OverlayReport(tuple(dict.fromkeys(problems)), tuple(summary), len(objects))


# The podlog config files.


def _check_configs(objects: list[Obj]) -> tuple[list[str], list[str]]:
    """(problems, summary lines) of the podlog config files the workloads read."""
    problems: list[str] = []
    summary: list[str] = []
    readers: dict[tuple[str, str], list[str]] = {}
    failures: dict[tuple[str, str, str], list[str]] = {}
    for workload in _workloads(objects):
        for container in _containers(workload):
            path = _config_arg(container)
            if path is None:
                continue
            found = _config_source(objects, workload, container, path, problems)
            if found is None:
                continue
            configmap, key = found
            who = _describe(workload)
            problem = _validate_config(configmap["data"][key], _podlog_env(container))
            if problem:
                failures.setdefault((_name(configmap), key, problem), []).append(who)
            readers.setdefault((_name(configmap), key), []).append(who)
    # One line per distinct failure: the workloads reading one ConfigMap usually fail alike.
    for (configmap_name, key, problem), names in failures.items():
        problems.append(f"ConfigMap {configmap_name}, key {key} (read by {', '.join(dict.fromkeys(names))}): {problem}")
    if not readers and not problems:
        # No workload names its config file: check every podlog.yaml a ConfigMap carries.
        for configmap in _of_kind(objects, "ConfigMap"):
            text = (configmap.get("data") or {}).get("podlog.yaml")
            if text is None:
                continue
            problem = _validate_config(text, {})
            if problem:
                problems.append(f"ConfigMap {_name(configmap)}: podlog.yaml: {problem}")
            readers[(_name(configmap), "podlog.yaml")] = []
    if not readers and not problems:
        problems.append("no podlog config: no workload passes --config and no ConfigMap has a podlog.yaml")
    for (configmap_name, key), names in readers.items():
        read_by = f", read by {', '.join(dict.fromkeys(names))}" if names else ""
        summary.append(f"podlog config: ConfigMap {configmap_name}, key {key}{read_by}")
    return problems, summary


def _config_arg(container: Obj) -> str | None:
    args = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--config="):
            return arg.removeprefix("--config=")
    return None


def _config_source(
    objects: list[Obj], workload: Obj, container: Obj, path: str, problems: list[str]
) -> tuple[Obj, str] | None:
    """The (ConfigMap, key) the file at ``path`` comes from; None when it is on another kind of volume."""
    volumes = {v.get("name"): v for v in _pod_spec(workload).get("volumes") or []}
    who = _describe(workload)
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: -len(str(m.get("mountPath", ""))))
    for mount in mounts:
        relative = _relative_to_mount(path, mount)
        if relative is None:
            continue
        volume = volumes.get(mount.get("name"))
        if volume is None:
            problems.append(f"{who}: {path} is on volume {mount.get('name')}, which the pod does not declare")
            return None
        if "configMap" not in volume:
            return None  # a Secret or another volume: nothing here to read
        name = volume["configMap"].get("name")
        items = volume["configMap"].get("items")
        key = {str(i.get("path")): str(i.get("key")) for i in items}.get(relative) if items else relative
        if key is None:
            problems.append(f"{who}: {path}: the volume {mount.get('name')} projects no key of ConfigMap {name} there")
            return None
        matches = [c for c in _of_kind(objects, "ConfigMap") if _name(c) == name and _same_namespace(c, workload)]
        if not matches:
            problems.append(f"{who}: {path} is on ConfigMap {name}, which the overlay does not render")
            return None
        if key not in (matches[0].get("data") or {}):
            problems.append(f"{who}: {path}: ConfigMap {name} has no key {key}")
            return None
        return matches[0], key
    problems.append(f"{who}: {path} (--config) is on no volume the container mounts")
    return None


def _relative_to_mount(path: str, mount: Obj) -> str | None:
    """Where ``path`` lies inside the volume a mount shows (its subPath included); None if outside."""
    mount_path = str(mount.get("mountPath", "")).rstrip("/")
    sub_path = str(mount.get("subPath") or "").strip("/")
    if path == mount_path and sub_path:
        return sub_path
    if not path.startswith(mount_path + "/"):
        return None
    rest = path[len(mount_path) + 1 :]
    return f"{sub_path}/{rest}" if sub_path else rest


def _podlog_env(container: Obj) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if name.startswith("PODLOG_"):
            env[name] = str(item["value"]) if "value" in item else SECRET_PLACEHOLDER
    return env


def _validate_config(text: str, env: Mapping[str, str]) -> str | None:
    """The ConfigError message for a podlog config file's text, or None when it is valid."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"invalid YAML: {exc}"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return f"top level must be a mapping, not {type(data).__name__}"
    try:
        build(Settings, apply_env(data, env))
    except ConfigError as exc:
        return str(exc)
    return None


# The monitoring objects.


def _check_monitor(monitor: Obj, objects: list[Obj], problems: list[str]) -> str | None:
    """Append the monitor's problems; return its summary line when it has none."""
    before = len(problems)
    who = _describe(monitor)
    is_service_monitor = monitor["kind"] == "ServiceMonitor"
    namespace = _namespace(monitor)
    if not namespace:
        problems.append(f"{who}: no namespace (metadata.namespace)")
    spec = monitor.get("spec") or {}
    selector = spec.get("selector") or {}
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        problems.append(f"{who}: no label selector (spec.selector has no matchLabels or matchExpressions)")
        return None
    bad_operators = sorted(
        {str(e.get("operator")) for e in selector.get("matchExpressions") or [] if e.get("operator") not in OPERATORS}
    )
    if bad_operators:
        problems.append(f"{who}: selector operator {', '.join(bad_operators)} is not one of {', '.join(OPERATORS)}")
        return None
    candidates = _of_kind(objects, "Service") if is_service_monitor else _workloads(objects)
    labels_of = _labels if is_service_monitor else _pod_labels
    matched = [o for o in candidates if _selects(selector, labels_of(o))]
    if not matched:
        problems.append(f"{who}: selector matches no {'Service' if is_service_monitor else 'workload pod labels'}")
        return None
    watched = _watched_namespaces(spec.get("namespaceSelector"), namespace)
    targets = [o for o in matched if watched is None or _namespace(o) in watched]
    if not targets:
        where = ", ".join(f"{_describe(o)} in {_namespace(o) or 'no namespace'}" for o in matched)
        scope = ", ".join(sorted(str(n) for n in watched or ()))
        problems.append(f"{who}: selector matches only {where}, outside the namespaces it watches ({scope})")
        return None
    endpoints = spec.get("endpoints" if is_service_monitor else "podMetricsEndpoints") or []
    if not endpoints:
        field = "spec.endpoints" if is_service_monitor else "spec.podMetricsEndpoints"
        problems.append(f"{who}: no endpoints ({field})")
        return None
    reached: list[str] = []
    for index, endpoint in enumerate(endpoints):
        port = endpoint.get("port")
        if not port:
            problems.append(f"{who}: endpoint {index} names no port (port)")
            continue
        ports_of = _service_port_names if is_service_monitor else _container_port_names
        exposing = [o for o in targets if port in ports_of(o)]
        if not exposing:
            selected = ", ".join(_describe(o) for o in targets)
            noun = "Service exposes a port" if is_service_monitor else "workload has a container port"
            problems.append(f"{who}: no selected {noun} named {port} (selected: {selected})")
            continue
        described = []
        for target in exposing:
            backends = _service_backends(target, str(port), objects, who, problems) if is_service_monitor else []
            described.append(f"{_describe(target)} ({', '.join(backends)})" if backends else _describe(target))
        reached.append(f"port {port} of {', '.join(described)}")
    if len(problems) > before:
        return None
    return f"{who}: {'; '.join(reached)}"


def _service_backends(service: Obj, port_name: str, objects: list[Obj], who: str, problems: list[str]) -> list[str]:
    """The workloads behind the Service's port; a problem when none has its target port."""
    spec = service.get("spec") or {}
    selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
    if not selector:
        return []  # endpoints managed by hand: no pods to look at here
    pods = [
        w for w in _workloads(objects) if _same_namespace(w, service) and selector.items() <= _pod_labels(w).items()
    ]
    if not pods:
        problems.append(f"{_describe(service)} (scraped by {who}): selects no workload's pods")
        return []
    service_port = next(p for p in spec.get("ports") or [] if p.get("name") == port_name)
    target = service_port.get("targetPort", service_port.get("port"))
    backends = [w for w in pods if _has_container_port(w, target)]
    if not backends:
        problems.append(
            f"{_describe(service)} (scraped by {who}): target port {target} of port {port_name} is no container "
            f"port of {', '.join(_describe(w) for w in pods)}"
        )
    return [_describe(w) for w in backends]


def _check_rule(rule: Obj, problems: list[str]) -> str | None:
    who = _describe(rule)
    before = len(problems)
    if not _namespace(rule):
        problems.append(f"{who}: no namespace (metadata.namespace)")
    groups = (rule.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append(f"{who}: no rule groups (spec.groups)")
    if len(problems) > before:
        return None
    count = sum(len(g.get("rules") or []) for g in groups)
    return f"{who}: {len(groups)} groups, {count} rules, in namespace {_namespace(rule)}"


def _watched_namespaces(namespace_selector: Any, own: str | None) -> set[str | None] | None:
    """The namespaces a monitor discovers targets in; None for all (or unknown: no namespace of its own)."""
    selector = namespace_selector if isinstance(namespace_selector, dict) else {}
    if selector.get("any"):
        return None
    names = selector.get("matchNames") or []
    if names:
        return {str(n) for n in names}
    return {own} if own else None


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key")
        values = {str(v) for v in expression.get("values") or []}
        present = key in labels
        operator = expression.get("operator")
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# Reading rendered objects.


def _of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", "<unnamed>"))


def _namespace(obj: Obj) -> str | None:
    namespace = (obj.get("metadata") or {}).get("namespace")
    return str(namespace) if namespace else None


def _same_namespace(a: Obj, b: Obj) -> bool:
    return _namespace(a) == _namespace(b)


def _describe(obj: Obj) -> str:
    return f"{obj.get('kind')} {_name(obj)}"


def _labels(obj: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()}


def _workloads(objects: list[Obj]) -> list[Obj]:
    """Every object that runs pods: the controllers, CronJobs and bare Pods."""
    return [o for o in objects if o.get("kind") in (*POD_TEMPLATE_KINDS, "CronJob", "Pod")]


def _pod_template(workload: Obj) -> Obj:
    if workload.get("kind") == "Pod":
        return workload
    spec = workload.get("spec") or {}
    if workload.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return spec.get("template") or {}


def _pod_spec(workload: Obj) -> Obj:
    return _pod_template(workload).get("spec") or {}


def _pod_labels(workload: Obj) -> dict[str, str]:
    return _labels(_pod_template(workload))


def _containers(workload: Obj) -> Iterator[Obj]:
    spec = _pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def _container_port_names(workload: Obj) -> set[str]:
    return {str(p["name"]) for c in _containers(workload) for p in c.get("ports") or [] if p.get("name")}


def _has_container_port(workload: Obj, target: Any) -> bool:
    for container in _containers(workload):
        for port in container.get("ports") or []:
            if isinstance(target, int) and port.get("containerPort") == target:
                return True
            if isinstance(target, str) and port.get("name") == target:
                return True
    return False


def _service_port_names(service: Obj) -> set[str]:
    return {str(p["name"]) for p in (service.get("spec") or {}).get("ports") or [] if p.get("name")}
