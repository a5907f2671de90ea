"""Reservations whose gateway died: rebuild their settlements from the last checkpoint.

A reservation that was never settled is charged for the usage last checkpointed (nothing
until its first byte reached the client, then what the engine had reported while
streaming), and the rest of its hold is released; one that never reached a client is
released without a charge. Its request id is the ledger entry's unique key, so this can never
charge a request twice even if the dead gateway's settle landed after all.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.pricing import UnitPrices
from lingyun.store.db import Database
from lingyun.store.ledger import GatewayLease, Reservation
from lingyun.store.models import utcnow


async def open_reservations_of(
    db: Database, owners: list[str], delivered: dict[str, tuple[int, int]]
) -> list[Settlement]:
    async with db.session() as s:
        rows = (
            await s.scalars(
                select(Reservation).where(
                    Reservation.owner.in_(owners), Reservation.state == "open"
                )
            )
        ).all()
    out: list[Settlement] = []
    for r in rows:
        logged = delivered.get(r.request_id, (0, 0))
        prompt, completion = max(r.prompt_tokens, logged[0]), max(r.completion_tokens, logged[1])
        hold = Hold(
            request_id=r.request_id, tenant_id=r.tenant_id, project_id=r.project_id,
            key_id=r.key_id, model=r.model, period=r.period,
            prices=UnitPrices.from_json(r.prices),
            prompt_upper=prompt, output_upper=completion,
            prompt_estimate=r.prompt_tokens, amount=r.amount, free_tokens=r.free_tokens,
            quota_id=r.quota_id,
            budgets=[(str(s), str(i)) for s, i in r.prices.get("budgets", [])],
            lane=str(r.prices.get("lane", "interactive")),
        )  # fmt: skip
        out.append(
            Settlement(
                hold, prompt, 0, completion, 0, "reconciled",
                reached_engine=bool(prompt or completion),
            )
        )  # fmt: skip
    return out


async def renew_lease(db: Database, owner: str) -> None:
    await db.transaction(lambda s: touch_lease(s, owner))


def touch_lease(session: Session, owner: str) -> None:
    """This gateway is alive (in the caller's transaction: a reservation and the heartbeat
    that keeps others from reconciling it land together)."""
    lease = session.get(GatewayLease, owner)
    if lease is None:
        session.add(GatewayLease(owner=owner, heartbeat_at=utcnow()))
    else:
        lease.heartbeat_at = utcnow()
