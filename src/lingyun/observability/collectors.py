"""Live state read at scrape time: in flight per deployment, replicas, engine signals.

Nothing here is written per request: the relay already keeps ``Replica.inflight`` and the
supervisor each replica's state and restarts; a scrape reads them.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from lingyun.observability.replica_signals import ReplicaScraper
from lingyun.serving.replica import Replica
from lingyun.serving.supervisor import DeploymentStatus, ReplicaState


class ServingCollector:
    """Deployment and replica state from the supervisor, engine signals from the scraper."""

    def __init__(
        self,
        status: Callable[[], list[DeploymentStatus]],
        replicas: Callable[[str], Sequence[Replica]],
        scraper: ReplicaScraper | None = None,
    ) -> None:
        self.status = status
        self.replicas = replicas
        self.scraper = scraper

    def collect(self) -> Iterator[Metric]:
        inflight = GaugeMetricFamily(
            "lingyun_requests_in_flight",
            "Requests sent to a deployment's replicas and not finished yet.",
            labels=["deployment"],
        )
        states = GaugeMetricFamily(
            "lingyun_replicas", "Replicas by deployment and state.", labels=["deployment", "state"]
        )
        up = GaugeMetricFamily(
            "lingyun_replica_up",
            "1 when the replica passes its health checks and takes traffic.",
            labels=["deployment", "replica"],
        )
        restarts = CounterMetricFamily(
            "lingyun_replica_restarts",
            "Times the supervisor restarted the replica after it exited.",
            labels=["deployment", "replica"],
        )
        for dep in self.status():
            inflight.add_metric([dep.name], sum(r.inflight for r in self.replicas(dep.name)))
            tally = Tally(r.state for r in dep.replicas)
            for state in ReplicaState:
                states.add_metric([dep.name, state.value], tally.get(state, 0))
            for r in dep.replicas:
                up.add_metric([dep.name, r.replica_id], 1.0 if r.healthy else 0.0)
                restarts.add_metric([dep.name, r.replica_id], r.restarts)
        yield from (inflight, states, up, restarts)
        if self.scraper is not None:
            yield from _signals(self.scraper)


def _signals(scraper: ReplicaScraper) -> Iterator[Metric]:
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "waiting": GaugeMetricFamily(
            "lingyun_replica_requests_waiting",
            "Requests waiting inside the engine (vllm:num_requests_waiting).",
            labels=["deployment", "replica"],
        ),
        "running": GaugeMetricFamily(
            "lingyun_replica_requests_running",
            "Requests the engine is running (vllm:num_requests_running).",
            labels=["deployment", "replica"],
        ),
        "kv_cache_usage": GaugeMetricFamily(
            "lingyun_replica_kv_cache_usage_ratio",
            "KV-cache use, 0 to 1 (vllm:kv_cache_usage_perc).",
            labels=["deployment", "replica"],
        ),
        "prefix_cache_hits": CounterMetricFamily(
            "lingyun_replica_prefix_cache_hits",
            "Prefix-cache hits in tokens (vllm:prefix_cache_hits).",
            labels=["deployment", "replica"],
        ),
        "prefix_cache_queries": CounterMetricFamily(
            "lingyun_replica_prefix_cache_queries",
            "Prefix-cache queries in tokens (vllm:prefix_cache_queries).",
            labels=["deployment", "replica"],
        ),
    }
    for sig in scraper.latest.values():
        for name, value in sig.values.items():
            families[name].add_metric([sig.deployment, sig.replica], value)
    yield from families.values()
