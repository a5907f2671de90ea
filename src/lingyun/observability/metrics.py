"""The gateway's Prometheus metrics: what every finished request adds, and how /metrics reads.

Counters and histograms are module-level objects in ``REGISTRY``; they are written on the
request path (``hooks.py``) and nowhere else. Live state (in flight per deployment, replica
states, engine signals) is read at scrape time by collectors (``collectors.py``), so it costs
nothing per request.

Several worker processes: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the
server starts (prometheus-client picks its storage when it is imported); counters and
histograms are then summed over every process, the queued gauge over live processes.

Names follow Prometheus conventions: base units (``_seconds``), counters end in ``_total``,
labels are bounded (``labels.py``): no per-key, per-tenant or per-request label.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lingyun import __version__

__all__ = ["CONTENT_TYPE_LATEST", "render"]

REGISTRY = CollectorRegistry()

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "lingyun_requests",
    "Requests finished, by model (deployment), endpoint, HTTP status and error code.",
    ["model", "endpoint", "status", "code"],
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter(
    "lingyun_prompt_tokens",
    "Prompt tokens of finished requests (engine-reported, else estimated).",
    ["model"],
    registry=REGISTRY,
)
COMPLETION_TOKENS = Counter(
    "lingyun_completion_tokens",
    "Completion tokens delivered (engine-reported, else counted as streamed).",
    ["model"],
    registry=REGISTRY,
)
CACHED_TOKENS = Counter(
    "lingyun_cached_tokens",
    "Prompt tokens the engine served from its prefix cache.",
    ["model"],
    registry=REGISTRY,
)
TTFT = Histogram(
    "lingyun_time_to_first_token_seconds",
    "Time from the request's arrival to its first streamed event (streams only).",
    ["model"],
    buckets=TTFT_BUCKETS,
    registry=REGISTRY,
)
ITL = Histogram(
    "lingyun_inter_token_latency_seconds",
    "Time between consecutive streamed content events.",
    ["model"],
    buckets=ITL_BUCKETS,
    registry=REGISTRY,
)
DURATION = Histogram(
    "lingyun_request_duration_seconds",
    "End-to-end time of a request at the gateway, until its last byte or its error.",
    ["model", "endpoint"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "lingyun_queue_wait_seconds",
    "Time a request waited in its deployment's capacity queue (0 when a slot was free).",
    ["deployment"],
    buckets=QUEUE_BUCKETS,
    registry=REGISTRY,
)
QUEUED = Gauge(
    "lingyun_requests_queued",
    "Requests waiting in a deployment's capacity queue now.",
    ["deployment"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
REFUSALS = Counter(
    "lingyun_refusals",
    "Requests refused before any engine work, by reason "
    "(rate_limit, quota, access, auth, capacity).",
    ["reason"],
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "lingyun_upstream_errors",
    "Errors answered by a replica or cloud (or the connection to it), by provider and code.",
    ["provider", "code"],
    registry=REGISTRY,
)
JOURNAL_COMMIT = Histogram(
    "lingyun_journal_commit_seconds",
    "Time of each metering journal batch commit (one transaction for many requests).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
BUILD = Gauge(
    "lingyun_build_info",
    "Always 1; the version label says which Lingyun answers.",
    ["version"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
BUILD.labels(__version__).set(1)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _Fixed:
    """The module's own metrics, from this process or summed over all workers."""

    def collect(self) -> Iterator[Metric]:
        if multiprocess_dir():
            from prometheus_client import multiprocess

            scratch = CollectorRegistry()
            multiprocess.MultiProcessCollector(scratch)  # type: ignore[no-untyped-call]
            yield from scratch.collect()
        else:
            yield from REGISTRY.collect()


def render(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition of every metric, plus what ``extra`` collectors read now."""
    registry = CollectorRegistry()
    registry.register(_Fixed())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
