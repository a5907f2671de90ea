"""The provider mix: tokens and spend by where they were served, summed exactly in SQL from
the ledger's usage entries (top-ups, other tenants and other days left out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert

from lingyun.config import DeploymentConfig
from lingyun.metering.mix import PLACES, provider_mix, served_by
from lingyun.store.db import Database
from lingyun.store.ledger import LedgerEntry
from lingyun.store.models import new_id

pytestmark = pytest.mark.anyio

DEPLOYMENTS = [
    DeploymentConfig(name="sim", engine="simulator"),
    DeploymentConfig(name="qwen", engine="openai-compatible", provider="dashscope", model="q"),
    DeploymentConfig(
        name="either",
        engine="openai-compatible",
        model="m",
        channels=[{"provider": "ark"}, {"provider": "qianfan"}],
    ),
]


def test_where_a_deployment_serves() -> None:
    assert [served_by(d) for d in DEPLOYMENTS] == ["self-hosted", "dashscope", "upstream (mixed)"]


async def test_tokens_and_spend_by_place_are_exact(db: Database) -> None:
    mine, other = new_id("ten"), new_id("ten")
    now = datetime.now(UTC)

    def entry(tenant: str, model: str, tokens: int, amount: str, **kw: object) -> dict[str, object]:
        return {"entry_key": new_id("usage"), "kind": "usage", "created_at": now,
                "tenant_id": tenant, "model": model, "prompt_tokens": tokens,
                "completion_tokens": tokens, "amount": -Decimal(amount), **kw}  # fmt: skip

    async with db.session() as s:
        await s.execute(insert(LedgerEntry), [
            entry(mine, "sim", 10, "0.000000001"),
            entry(mine, "sim", 10, "0.000000002"),
            entry(mine, "qwen", 30, "0.1"),
            entry(mine, "retired", 5, "0.5"),
            entry(mine, "qwen", 99, "9", created_at=now - timedelta(days=40)),
            entry(other, "qwen", 99, "9"),
            {**entry(mine, "", 0, "0"), "kind": "topup", "amount": Decimal(100)},
        ])  # fmt: skip
        await s.commit()
    rows = {r.place: r for r in await provider_mix(
        db, [mine], DEPLOYMENTS, (now - timedelta(days=29)).date(), now.date())}  # fmt: skip
    assert list(rows)[: len(PLACES)] == list(PLACES)
    assert (rows["self-hosted"].requests, rows["self-hosted"].tokens) == (2, 40)
    assert rows["self-hosted"].amount == Decimal("0.000000003")
    assert (rows["dashscope"].tokens, rows["dashscope"].amount) == (60, Decimal("0.1"))
    assert (rows["unknown"].tokens, rows["unknown"].amount) == (10, Decimal("0.5"))
    assert rows["ark"].tokens == 0 and rows["ark"].spend_share == 0
    assert sum(r.token_share for r in rows.values()) == pytest.approx(1)
    assert rows["dashscope"].token_share == pytest.approx(60 / 110)
