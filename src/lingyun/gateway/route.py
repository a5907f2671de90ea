"""Stage 5: pick a replica. Filters drop replicas with a reason; a scorer ranks survivors.
When nothing survives, the reasons reach the client in the 503."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lingyun.errors import ServiceUnavailableError
from lingyun.serving.replica import Replica


class ReplicaFilter(Protocol):
    reason: str

    def keep(self, replica: Replica) -> bool: ...


class HealthyFilter:
    reason = "no healthy replica"

    def keep(self, replica: Replica) -> bool:
        return replica.healthy


class CapacityFilter:
    reason = "all replicas at capacity"

    def keep(self, replica: Replica) -> bool:
        return replica.max_inflight is None or replica.inflight < replica.max_inflight


class LeastInflightScorer:
    def score(self, replica: Replica) -> float:
        return float(replica.inflight)


class RouterChain:
    def __init__(
        self,
        filters: Sequence[ReplicaFilter] | None = None,
        scorer: LeastInflightScorer | None = None,
    ) -> None:
        self.filters: list[ReplicaFilter] = (
            list(filters) if filters is not None else [HealthyFilter(), CapacityFilter()]
        )
        self.scorer = scorer or LeastInflightScorer()

    def pick(self, model: str, replicas: Sequence[Replica]) -> Replica:
        survivors = list(replicas)
        reason = "no replica is running"
        for f in self.filters:
            if not survivors:
                break
            kept = [r for r in survivors if f.keep(r)]
            if not kept:
                reason = f.reason
            survivors = kept
        if not survivors:
            raise ServiceUnavailableError(
                f"Model `{model}` is temporarily unavailable ({reason}); retry shortly.",
                headers={"Retry-After": "1"},
            )
        return min(survivors, key=self.scorer.score)
