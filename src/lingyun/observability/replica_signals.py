"""Engine signals: each self-hosted replica's own /metrics, scraped and kept per replica.

vLLM exports ``vllm:num_requests_waiting``, ``vllm:num_requests_running``,
``vllm:kv_cache_usage_perc`` and prefix-cache counters; llama.cpp's server its
``llamacpp:*`` equivalents; our worker the vLLM names where they mean the same. A background
task reads every healthy replica of a process engine (clouds have no such endpoint) every few
seconds; ``latest`` is what the gateway re-exports as ``lingyun_replica_*`` and what the
router and autoscaler may read.

An idle replica's queue and cache do not move, so a replica with nothing in flight and no
request since its last reading keeps that reading and is read again only every
``idle_interval_s``: an idle gateway parses no expositions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from lingyun.lifecycle import supervised
from lingyun.serving.replica import Replica

logger = logging.getLogger(__name__)

# Engine metric family -> our signal name (families as the parser names them, no _total).
SOURCES: dict[str, str] = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # vLLM before 0.10
    "vllm:prefix_cache_hits": "prefix_cache_hits",
    "vllm:prefix_cache_queries": "prefix_cache_queries",
    "llamacpp:requests_deferred": "waiting",
    "llamacpp:requests_processing": "running",
    "llamacpp:kv_cache_usage_ratio": "kv_cache_usage",
}
SIGNALS = ("waiting", "running", "kv_cache_usage", "prefix_cache_hits", "prefix_cache_queries")


@dataclass
class Signals:
    deployment: str
    replica: str
    values: dict[str, float] = field(default_factory=dict)
    scraped_at: float = 0.0


def parse(text: str) -> dict[str, float]:
    """The signals in one exposition, summed over an engine's own labels (model, engine)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = SOURCES.get(family.name)
        if name is None:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            out[name] = out.get(name, 0.0) + float(sample.value)
    return out


def metrics_url(replica: Replica) -> str:
    base = replica.base_url.rstrip("/")
    return (base[: -len("/v1")] if base.endswith("/v1") else base) + "/metrics"


SCRAPE_TIMEOUT_S = 2.0


class ReplicaScraper:
    """Reads ``targets()`` (the replicas to scrape) every ``interval_s`` seconds, the idle
    ones every ``idle_interval_s`` (default 12 x ``interval_s``)."""

    def __init__(
        self,
        targets: Callable[[], Iterable[Replica]],
        interval_s: float = 5.0,
        idle_interval_s: float | None = None,
    ) -> None:
        self.targets = targets
        self.interval_s = interval_s
        self.idle_interval_s = idle_interval_s if idle_interval_s is not None else 12 * interval_s
        self.latest: dict[tuple[str, str], Signals] = {}
        self._read_at: dict[tuple[str, str], float] = {}  # monotonic, per replica
        self._task: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None

    def start(self) -> None:
        # The relay's HTTP stack; proxy variables ignored (replicas are ours, not the web's).
        self._client = aiohttp.ClientSession(
            trust_env=False, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        )
        self._task = supervised("replica-metrics", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                await self.scrape_once()
            except Exception:
                logger.exception("replica metrics scrape failed")
            await asyncio.sleep(self.interval_s)

    def signals(self) -> dict[tuple[str, str], Signals]:
        """The latest reading of every replica that answered (the router's source)."""
        return self.latest

    def of(self, deployment: str) -> list[dict[str, float]]:
        """The latest readings of ``deployment``'s replicas (the autoscaler's source)."""
        return [s.values for (dep, _), s in self.latest.items() if dep == deployment]

    async def scrape_once(self) -> None:
        now = time.monotonic()
        replicas = [r for r in self.targets() if r.healthy]
        kept: dict[tuple[str, str], Signals] = {}
        due: list[Replica] = []
        for r in replicas:
            key = (r.deployment, r.replica_id)
            read_at = self._read_at.get(key)
            idle = r.inflight == 0 and read_at is not None and r.last_used < read_at
            if idle and read_at is not None and now - read_at < self.idle_interval_s:
                if key in self.latest:
                    kept[key] = self.latest[key]
                continue
            due.append(r)
        results = await asyncio.gather(*(self._one(r) for r in due))
        fresh = {(s.deployment, s.replica): s for s in results if s is not None}
        # One that did not answer is asked again at the next beat.
        self._read_at = {k: v for k, v in self._read_at.items() if k in kept}
        self._read_at.update((key, now) for key in fresh)
        self.latest = {**kept, **fresh}

    async def _one(self, replica: Replica) -> Signals | None:
        assert self._client is not None
        try:
            async with self._client.get(
                metrics_url(replica), headers=replica.headers, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    return None
                values = parse(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.debug("no metrics from %s: %s", replica.replica_id, exc)
            return None
        return Signals(replica.deployment, replica.replica_id, values, time.time())
