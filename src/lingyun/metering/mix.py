"""Provider mix: how many tokens and how much spend were served where — on our own
replicas or by each public cloud — summed from the same usage lines invoices use.

Where a request was served is read from its model's deployment: a ``provider:`` (or the one
provider all its channels share) names a cloud; several providers across channels count as
"upstream (mixed)"; a model no longer deployed counts as "unknown"; anything else ran on
self-hosted replicas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from lingyun.config import DeploymentConfig
from lingyun.metering import reports
from lingyun.metering.money import ZERO
from lingyun.store.db import Database

SELF_HOSTED = "self-hosted"
MIXED = "upstream (mixed)"
UNKNOWN = "unknown"
# The order a page lists them in: ours first, then the clouds by preset name.
PLACES = (SELF_HOSTED, "dashscope", "ark", "modelarts", "hunyuan", "qianfan", "openai")


@dataclass(frozen=True)
class MixRow:
    place: str
    requests: int
    tokens: int
    amount: Decimal
    token_share: float
    spend_share: float


def served_by(dep: DeploymentConfig) -> str:
    providers = {c.provider or dep.provider for c in dep.channels} or {dep.provider}
    providers.discard(None)
    if len(providers) > 1:
        return MIXED
    if providers:
        return str(next(iter(providers)))
    return "upstream" if dep.engine == "openai-compatible" else SELF_HOSTED


async def provider_mix(
    db: Database,
    tenant_ids: Iterable[str],
    deployments: Iterable[DeploymentConfig],
    start: date,
    end: date,
) -> list[MixRow]:
    """Every place in :data:`PLACES` (zeros included) and any other seen, with shares."""
    where = {d.name: served_by(d) for d in deployments}
    requests: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    amount: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for tenant_id in tenant_ids:
        for line in await reports.usage(db, tenant_id, start, end):
            place = where.get(line.model, UNKNOWN)
            requests[place] += line.requests
            tokens[place] += line.prompt_tokens + line.completion_tokens
            amount[place] += line.amount
    places = list(PLACES) + sorted(set(requests) - set(PLACES))
    all_tokens, all_amount = sum(tokens.values()), sum(amount.values(), ZERO)
    return [
        MixRow(p, requests[p], tokens[p], amount[p],
               tokens[p] / all_tokens if all_tokens else 0.0,
               float(amount[p] / all_amount) if all_amount else 0.0)
        for p in places
    ]  # fmt: skip
