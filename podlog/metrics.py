"""Prometheus metrics: one registry per process, names ``podlog_<component>_...``.

Components declare their metrics at module level in their ``events.py`` with
the helpers here, so every metric lands in :data:`REGISTRY` and tests can
read values back with :func:`sample`.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "counter",
    "gauge",
    "histogram",
    "render",
    "sample",
]

REGISTRY = CollectorRegistry(auto_describe=True)
"""The process-wide registry that ``/metrics`` serves."""


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """A counter in :data:`REGISTRY`; ``name`` ends in ``_total``."""
    if not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    return Counter(name.removesuffix("_total"), doc, labels, registry=REGISTRY)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    """A gauge in :data:`REGISTRY`."""
    return Gauge(name, doc, labels, registry=REGISTRY)


def histogram(
    name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] | None = None
) -> Histogram:
    """A histogram in :data:`REGISTRY` (seconds unless the name says otherwise)."""
    if buckets is None:
        return Histogram(name, doc, labels, registry=REGISTRY)
    return Histogram(name, doc, labels, registry=REGISTRY, buckets=buckets)


def render() -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(REGISTRY)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one sample (0.0 when absent); for tests and benchmarks."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
