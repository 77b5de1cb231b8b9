"""Configuration: frozen dataclasses built from YAML plus ``PODLOG_*`` overrides.

Each package declares its settings as a frozen dataclass whose fields are made
with :func:`setting` (a default and a one-sentence doc).  :func:`build` turns a
mapping into such a dataclass, recursing into nested config dataclasses, and
fails with the dotted path of the offending key and the list of valid keys.

Environment overrides use ``PODLOG_<SECTION>__<KEY>[__<KEY>...]``; values are
parsed as YAML scalars, so ``PODLOG_COLLECTOR__READ_FROM=tail`` and
``PODLOG_SHIPPER__SPOOL__MAX_BYTES=1073741824`` both work.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from podlog.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "CommonConfig",
    "apply_env",
    "build",
    "describe",
    "field_default",
    "read_yaml",
    "setting",
]

ENV_PREFIX = "PODLOG_"

T = TypeVar("T")


def setting(default: Any, doc: str, *, secret: bool = False) -> Any:
    """A config field with its default and a one-sentence doc.

    Mutable defaults (lists, dicts) are copied per instance.  ``secret`` fields
    are never printed by ``podlog config show``.
    """
    meta = {"doc": doc, "secret": secret}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, slots=True)
class CommonConfig:
    """Settings every podlog process shares."""

    cluster: str = setting("default", "Cluster name; part of every event.id, so keep it stable.")
    node_name: str = setting(
        "", "Node this agent runs on; empty means $NODE_NAME, then the host name."
    )
    state_dir: str = setting(
        "/var/lib/podlog", "Directory for checkpoints, the spool and metadata snapshots."
    )
    log_level: str = setting("info", "Self-log level: debug, info, warning or error.")
    log_format: str = setting("auto", "Self-log format: json, console, or auto (console on a TTY).")
    http_listen: str = setting(
        "0.0.0.0:9090",
        "Address of the agent's and the indexer's /metrics, /healthz and /readyz; empty disables "
        "(search serves its own on search.ops_listen).",
    )
    shutdown_grace_seconds: float = setting(
        25.0, "Time allowed for an ordered shutdown before remaining tasks are cancelled."
    )
    malloc_trim_threshold_bytes: int = setting(
        64 << 20,
        "Freed memory glibc keeps for reuse instead of returning it to the kernel at once "
        "(faulting it back in costs more than the records it holds); 0 leaves glibc's "
        "adaptive default alone.",
    )
    malloc_mmap_threshold_bytes: int = setting(
        32 << 20,
        "Allocations at least this large get their own mapping; smaller ones reuse the heap "
        "(applies only when malloc_trim_threshold_bytes is set).",
    )
    heap_trim_idle_seconds: float = setting(
        10.0,
        "Interval of the idle check: the first interval with under 5% CPU after a busy one "
        "returns the kept memory to the kernel; 0 never trims.",
    )

    def resolved_node_name(self) -> str:
        """The node name: the setting, else $NODE_NAME, else the host name."""
        return self.node_name or os.environ.get("NODE_NAME") or os.uname().nodename


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; an empty file is an empty mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, not {type(data).__name__}")
    return data


def apply_env(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return ``data`` with ``PODLOG_A__B=value`` overrides merged in."""
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = _deep_copy(data)
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if any(not p for p in parts):
            raise ConfigError(f"environment variable {name}: empty path segment")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: invalid value: {exc}") from exc
        node = merged
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return merged


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def build(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build config dataclass ``cls`` from ``data``, validating every key and type."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls), cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown setting {where}{unknown[0]}; valid keys here: {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{path}.{key}" if path else key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or '<root>'}: {exc}") from exc


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is typing.Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{path}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}"
            )
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item,) = get_args(hint)[:1] or (Any,)
        items = [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        _, val_hint = get_args(hint) or (Any, Any)
        return {str(k): _coerce(val_hint, v, f"{path}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    raise ConfigError(f"{path}: unsupported setting type {hint!r}")


def field_default(f: dataclasses.Field[Any]) -> Any:
    """The default value of a config field (a fresh one for factories), or None."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def describe(cls: type[Any], prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``(dotted key, type, default, doc)`` for every setting, recursing into sections.

    ``docs/configuration.md`` and the example config are generated from this.
    """
    rows: list[tuple[str, str, Any, str]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            rows.extend(describe(hint, key + "."))
            continue
        default = field_default(f)
        type_name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        rows.append((key, type_name, default, str(f.metadata.get("doc", ""))))
    return rows
