"""Stage 5: pick a replica. Filters drop replicas with a reason; the deployment's routing
policy (``gateway/routing/``) chooses among the survivors. When nothing survives, the
reasons reach the client in the 503."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from lingyun.errors import ServiceUnavailableError
from lingyun.gateway.routing.policies import POLICIES, Load, Policy, RoutingRequest, inflight
from lingyun.gateway.routing.prompt import (
    BlockHash,
    block_hashes,
    canonical_prompt,
    head_bytes,
    seed_of,
)
from lingyun.serving.replica import Replica

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.gateway.context import RequestContext

logger = logging.getLogger(__name__)


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


class RouterChain:
    def __init__(
        self,
        filters: Sequence[ReplicaFilter] | None = None,
        load: Load = inflight,
    ) -> None:
        self.filters: list[ReplicaFilter] = (
            list(filters) if filters is not None else [HealthyFilter(), CapacityFilter()]
        )
        # How loaded a replica is: in flight, or its engine's signals (``routing/load.py``).
        self.load = load
        # Per deployment: its policy, rebuilt when its routing settings change.
        self._policies: dict[str, tuple[tuple[object, ...], Policy]] = {}

    def policy(self, dep: DeploymentConfig) -> Policy:
        settings = (dep.routing, dep.routing_options, dep.share_prefix_cache)
        held = self._policies.get(dep.name)
        if held is None or held[0] != settings:
            held = (settings, POLICIES[dep.routing](dep.routing_options, self.load))
            self._policies[dep.name] = held
        return held[1]

    def route(self, ctx: RequestContext, replicas: Sequence[Replica]) -> Replica:
        """The replica for this request under its deployment's policy."""
        survivors = self._survivors(ctx.model, replicas)
        dep = ctx.deployment
        if dep is None or dep.routing == "least-inflight" or len(survivors) == 1:
            return min(survivors, key=self.load)
        choice = self.policy(dep).choose(routing_request(ctx, dep), survivors)
        logger.debug("%s -> %s: %s", ctx.request_id, choice.replica.replica_id, choice.reason)
        return choice.replica

    def pick(self, model: str, replicas: Sequence[Replica]) -> Replica:
        return min(self._survivors(model, replicas), key=self.load)

    def _survivors(self, model: str, replicas: Sequence[Replica]) -> list[Replica]:
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
        return survivors


def routing_request(ctx: RequestContext, dep: DeploymentConfig) -> RoutingRequest:
    tenant = ctx.key.tenant_id if ctx.key is not None else None
    session = ctx.session_id or ctx.body.get("user")
    session_key = f"{tenant}\x00{session}" if isinstance(session, str) and session else None
    seed = seed_of(dep.name, tenant, dep.share_prefix_cache)
    size = dep.routing_options.block_bytes

    def prompt() -> tuple[list[BlockHash], int]:
        text = canonical_prompt(ctx.endpoint, ctx.body)
        return block_hashes(text, size, seed), head_bytes(ctx.endpoint, ctx.body, text) // size

    return RoutingRequest(session_key, prompt)
