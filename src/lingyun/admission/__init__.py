"""Admission control: rate limits (RPM, TPM, in flight) and the tenant-fair capacity queue.

    limits.py         rules, limiter protocol, OpenAI's x-ratelimit-* headers
    buckets.py        in-process limiter (one gateway)
    redis_limiter.py  Redis limiter (several gateways; atomic Lua, one round trip)
    shared_limiter.py SQLite-file limiter (the workers of one ``serve --workers N``)
    rules.py          rules in the database and their in-memory cache
    policy.py         the ``Admission`` policy the pipeline calls
    vtc.py            FCFS and Virtual Token Counter schedulers
    capacity.py       per-deployment slots and queue (the pipeline's ``CapacityQueue``)

``AdmissionControl.from_settings`` builds them all for ``app.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lingyun.admission.buckets import LocalLimiter
from lingyun.admission.capacity import FairQueue
from lingyun.admission.limits import Limiter, RuleSet
from lingyun.admission.policy import RateLimitPolicy
from lingyun.admission.rules import LimitService, RuleCache
from lingyun.config import Settings
from lingyun.serving import worker_env
from lingyun.serving.replica import ReplicaSource
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database

__all__ = ["AdmissionControl"]


@dataclass
class AdmissionControl:
    rules: RuleCache
    limiter: Limiter
    policy: RateLimitPolicy
    queue: FairQueue

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        replicas: ReplicaSource,
        feed: ChangeFeed | None = None,
    ) -> AdmissionControl:
        limiter: Limiter
        if settings.redis_url:
            from lingyun.admission.redis_limiter import RedisLimiter

            # A slot in flight is held at most as long as a request may run.
            limiter = RedisLimiter(
                settings.redis_url,
                lease_s=settings.upstream_timeout_s + 60,
                fail_open=settings.rate_limits_without_redis == "open",
            )
        elif (shared := worker_env.shared_limits_path()) is not None:
            from lingyun.admission.shared_limiter import SharedLimiter

            limiter = SharedLimiter(
                shared, owner=settings.instance_owner(), lease_s=settings.upstream_timeout_s + 60
            )
        else:
            limiter = LocalLimiter()

        def forget(rules: RuleSet) -> None:
            limiter.forget(rule.id for rule in rules.rules)

        cache = RuleCache(LimitService(db), feed, on_change=forget)
        policy = RateLimitPolicy(lambda: cache.rules, limiter)
        queue = FairQueue(
            replicas,
            scheduler=settings.scheduler,
            timeout_s=settings.queue_timeout_s,
            input_weight=settings.vtc_input_weight,
            output_weight=settings.vtc_output_weight,
        )
        return cls(cache, limiter, policy, queue)

    async def start(self) -> None:
        await self.rules.start()

    async def stop(self) -> None:
        await self.rules.stop()
        await self.limiter.close()
