"""A replica's load as the router scores it: its engine's own signals where it exports them.

The gateway's in-flight count only sees this gateway's requests, and says nothing about a
request that waits inside the engine for a batch slot or about a KV cache close to full
(where new sequences preempt running ones). Engines that export vLLM's gauges
(``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``;
our worker, llama.cpp's equivalents; ``observability/replica_signals.py`` scrapes them) are
scored by what the engine says:

    load = max(in flight from here, engine running + waiting) + KV_WEIGHT x KV-cache usage

``max`` because the two overlap (the engine's count includes ours, but lags by up to one
scrape; ours misses other gateways'). ``KV_WEIGHT`` makes a full cache weigh like that many
more requests. Signals older than ``max_age_s`` are ignored, so a replica whose scrape fails
falls back to in-flight counting instead of being judged by an old reading. The load guard
and every policy read this one function, so "load" means the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from lingyun.observability.replica_signals import Signals
from lingyun.serving.replica import Replica

KV_WEIGHT = 4.0

SignalSource = Callable[[], Mapping[tuple[str, str], Signals]]


def _none() -> Mapping[tuple[str, str], Signals]:
    return {}


class EngineLoad:
    """``load(replica)`` per the module docstring; ``attach`` the scraper once it runs."""

    def __init__(self, source: SignalSource = _none, max_age_s: float = 15.0) -> None:
        self.source = source
        self.max_age_s = max_age_s

    def attach(self, source: SignalSource) -> None:
        self.source = source

    def signals(self, replica: Replica) -> Mapping[str, float]:
        sig = self.source().get((replica.deployment, replica.replica_id))
        if sig is None or time.time() - sig.scraped_at > self.max_age_s:
            return {}
        return sig.values

    def __call__(self, replica: Replica) -> float:
        values = self.signals(replica)
        engine = values.get("running", 0.0) + values.get("waiting", 0.0)
        return max(float(replica.inflight), engine) + KV_WEIGHT * values.get("kv_cache_usage", 0)
