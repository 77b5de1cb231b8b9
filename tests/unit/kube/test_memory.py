"""The pod cache's memory budget, for 10,000 pods with realistic metadata."""

from __future__ import annotations

import gc
import tracemalloc

import orjson
import pytest

from collector.kube.cache import BUDGET_BYTES_PER_POD
from collector.kube.config import KubernetesConfig
from tests.fixtures.kube_api import filled_pod_cache, realistic_pods

PODS = 10_000


@pytest.mark.slow
def test_ten_thousand_pods_fit_the_documented_budget() -> None:
    """10,000 cached pods, each enriched once, stay within BUDGET_BYTES_PER_POD each."""
    config = KubernetesConfig()
    wire = [orjson.dumps(p) for p in realistic_pods(PODS)]
    gc.collect()
    tracemalloc.start()
    try:
        cache = filled_pod_cache(wire, config)
        gc.collect()
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == PODS
    per_pod = used / PODS
    assert per_pod <= BUDGET_BYTES_PER_POD, f"{per_pod:.0f} B/pod over the budget"
