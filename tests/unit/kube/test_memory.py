"""The pod cache's memory budget, for 10,000 pods with realistic metadata."""

from __future__ import annotations

import gc
import tracemalloc

import orjson
import pytest

from collector.enrichment import PathMeta
from collector.kube.cache import BUDGET_BYTES_PER_POD, PodCache
from collector.kube.config import KubernetesConfig
from collector.kube.enrich import ApiState, KubeEnricher
from collector.kube.metadata import KeyFilter, pod_from_api
from podlog.record import SourcePosition, make_record
from tests.fixtures.kube_api import realistic_pods

PODS = 10_000


@pytest.mark.slow
def test_ten_thousand_pods_fit_the_documented_budget() -> None:
    """10,000 cached pods, each enriched once, stay within BUDGET_BYTES_PER_POD each."""
    config = KubernetesConfig()
    annotations = KeyFilter(config.annotations_allow, config.annotations_deny)
    labels = KeyFilter(["*"], config.labels_deny)
    wire = [orjson.dumps(p) for p in realistic_pods(PODS)]
    gc.collect()
    tracemalloc.start()
    try:
        cache = PodCache(grace_seconds=300, max_pods=PODS)
        for data in wire:
            pod = pod_from_api(
                orjson.loads(data),
                annotations=annotations,
                labels=labels,
                max_annotation_value_bytes=config.max_annotation_value_bytes,
            )
            assert pod is not None
            cache.upsert(pod)
        api = ApiState()
        api.synced = api.connected = True
        enricher = KubeEnricher(config, "node-a", cache, api)
        for entry in list(cache.entries()):
            record = make_record(
                position=SourcePosition("c", "n", "i", 0, 0),
                timestamp="t",
                timestamp_ns=0,
                message="x",
                stream="stdout",
                path="p",
            )
            meta = PathMeta(entry.pod.namespace, entry.pod.name, "app", pod_uid=entry.pod.uid)
            enricher.enrich(meta, [record])
            enricher.policy(meta)
        del record
        gc.collect()
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == PODS
    per_pod = used / PODS
    assert per_pod <= BUDGET_BYTES_PER_POD, f"{per_pod:.0f} B/pod over the budget"
