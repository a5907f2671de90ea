"""Provider mix: how many tokens and how much spend were served where — on our own
replicas or by each public cloud — summed from the ledger's usage entries, as invoices are.

Where a request was served is read from its model's deployment: a ``provider:`` (or the one
provider all its channels share) names a cloud; several providers across channels count as
"upstream (mixed)"; a model no longer deployed counts as "unknown"; anything else ran on
self-hosted replicas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from lingyun.config import DeploymentConfig
from lingyun.metering.money import ZERO
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry

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
    """Every place in :data:`PLACES` (zeros included) and any other seen, with shares.

    One GROUP BY over the ledger's usage entries (the rows invoices sum), so the view costs
    one aggregate however many tenants there are; amounts add exactly as integers in SQL."""
    where = {d.name: served_by(d) for d in deployments}
    lo = datetime.combine(start, datetime.min.time(), UTC)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
    query = (
        select(LedgerEntry.model, func.count(), func.sum(LedgerEntry.prompt_tokens),
               func.sum(LedgerEntry.completion_tokens), func.sum(LedgerEntry.amount))
        .where(LedgerEntry.kind == "usage", LedgerEntry.tenant_id.in_(list(tenant_ids)),
               LedgerEntry.created_at >= lo, LedgerEntry.created_at < hi)
        .group_by(LedgerEntry.model)
    )  # fmt: skip
    requests: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    amount: dict[str, Decimal] = defaultdict(lambda: ZERO)
    async with db.session() as s:
        for model, n, prompt, completion, charged in (await s.execute(query)).all():
            place = where.get(model or "", UNKNOWN)
            requests[place] += int(n)
            tokens[place] += int(prompt or 0) + int(completion or 0)
            amount[place] += -(charged or ZERO)  # usage entries are negative
    places = list(PLACES) + sorted(set(requests) - set(PLACES))
    all_tokens, all_amount = sum(tokens.values()), sum(amount.values(), ZERO)
    return [
        MixRow(p, requests[p], tokens[p], amount[p],
               tokens[p] / all_tokens if all_tokens else 0.0,
               float(amount[p] / all_amount) if all_amount else 0.0)
        for p in places
    ]  # fmt: skip
