"""Helpers to walk rendered Kubernetes objects in the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

WORKLOAD_KINDS = ("DaemonSet", "Deployment", "StatefulSet", "Job", "CronJob")

Obj = dict[str, Any]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    """Objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of ``kind`` called ``name``; fails the test if absent."""
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects: list[Obj]) -> list[Obj]:
    """Every object that runs pods."""
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: Obj) -> Obj:
    """The pod spec of a workload."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def containers(workload: Obj) -> Iterator[Obj]:
    """Init and regular containers of a workload."""
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def config_file(objects: list[Obj], workload: Obj, container: Obj) -> tuple[Obj, str, str]:
    """(ConfigMap, key, text) of the file the container's ``--config`` names."""
    args = container.get("args", [])
    assert "--config" in args, f"{container['name']}: no --config argument"
    path = args[args.index("--config") + 1]
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes[mount["name"]]
        assert "configMap" in volume, f"{path} is not on a ConfigMap volume"
        configmap = named(objects, "ConfigMap", volume["configMap"]["name"])
        key = path[len(prefix) :]
        assert key in configmap.get("data", {}), f"ConfigMap has no key {key}"
        return configmap, key, configmap["data"][key]
    raise AssertionError(f"{container['name']}: {path} is not on any mounted volume")


def parse_config(text: str) -> dict[str, Any]:
    """A podlog config file's YAML."""
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict)
    return data


def port_of(address: str) -> int:
    """The port of a ``host:port`` listen address."""
    return int(address.rpartition(":")[2])
