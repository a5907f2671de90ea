"""What a journal does besides committing: recover its last life, reclaim dead gateways'
holdings, purge old reservations. Each is one function over the database, so a failing step
fails alone (the housekeeping beat runs them in turn)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lingyun.metering import lease_rows
from lingyun.metering.batch import apply_settles
from lingyun.metering.deliveries import Replay
from lingyun.metering.folds import fold
from lingyun.metering.reconcile import open_reservations_of
from lingyun.store.db import Database
from lingyun.store.ledger import CreditLease, GatewayLease, Reservation
from lingyun.store.models import utcnow

logger = logging.getLogger(__name__)


async def recover(db: Database, owner: str, replay: Replay) -> None:
    """After a crash (or a clean stop: then there is nothing to do): settle this owner's
    open reservations from its checkpoints and delivery log, fold the leased requests the
    log holds (once: a fold that landed before the crash inserts nothing), and give its
    leases back."""
    await reconcile(db, [owner], replay.counts)
    folds = replay.settlements()

    def restore(s: Session) -> tuple[int, int]:
        leases = lease_rows.leases_of(s, [owner])
        lease_rows.lock_accounts(s, {f.hold.tenant_id for f in folds})
        folded = fold(s, folds)
        return folded, lease_rows.give_back(s, leases)

    folded, returned = await db.transaction(restore)
    if folded or returned:
        logger.warning(
            "recovered %d leased request(s) and %d lease(s) of %s", folded, returned, owner
        )


async def reconcile(
    db: Database, owners: list[str], delivered: dict[str, tuple[int, int]] | None = None
) -> int:
    """Settle the open reservations of dead gateways with the usage known at the crash:
    the last checkpoint, or what ``delivered`` (a delivery log's replay) says, if more."""
    if not owners:
        return 0
    settlements = await open_reservations_of(db, owners, delivered or {})
    if not settlements:
        return 0
    settled = await db.transaction(lambda s: apply_settles(s, settlements))
    logger.warning("reconciled %d reservation(s) left open by %s", settled, owners)
    return settled


async def reclaim(db: Database, owners: list[str]) -> int:
    """Give back the leases of gateways whose heartbeat lapsed (their in-flight requests'
    delivery logs are theirs: what those clients received since the last fold is lost)."""
    if not owners:
        return 0
    returned = await db.transaction(
        lambda s: lease_rows.give_back(s, lease_rows.leases_of(s, owners))
    )
    if returned:
        logger.warning("reclaimed %d credit lease(s) of %s", returned, owners)
    return returned


async def dead_owners(db: Database, me: str, lease_s: float) -> list[str]:
    """Owners holding open reservations or leases whose heartbeat is older than 2 leases."""
    cutoff = utcnow() - timedelta(seconds=lease_s * 2)
    async with db.session() as s:
        owners = set(
            await s.scalars(select(Reservation.owner).where(Reservation.state == "open").distinct())
        )
        owners |= set(await s.scalars(select(CreditLease.owner).distinct()))
        if not owners - {me}:
            return []
        alive = set(
            await s.scalars(select(GatewayLease.owner).where(GatewayLease.heartbeat_at >= cutoff))
        )
    return sorted(owners - alive - {me})


async def purge(db: Database, older_than: timedelta) -> int:
    """Delete reservations settled or released longer ago than ``older_than``: the ledger
    keeps each request's record, and a late settle finds no open row to charge."""
    cutoff = utcnow() - older_than
    async with db.session() as s, s.begin():
        result = await s.execute(
            delete(Reservation).where(Reservation.state != "open", Reservation.created_at <= cutoff)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def checkpoint(db: Database, counts: dict[str, tuple[int, int]]) -> None:
    """Each running reserved request's (prompt, completion) so far, on its open row."""
    if not counts:
        return
    async with db.session() as s, s.begin():
        for rid, (prompt, completion) in counts.items():
            await s.execute(
                update(Reservation)
                .where(Reservation.request_id == rid, Reservation.state == "open")
                .values(prompt_tokens=prompt, completion_tokens=completion)
            )
