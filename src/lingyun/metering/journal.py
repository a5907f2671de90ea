"""The metering journal: durable reservations and settlements, group-committed.

Requests call ``reserve`` (and wait: a request reaches an engine only once its reservation
is committed) and ``settle`` (and do not wait: the response is already on its way; if the
process dies first, reconciliation settles the reservation). One task commits whatever has
queued up since its last commit, so under load many requests share one transaction and one
fsync. A second task checkpoints the usage of streams in flight, renews this gateway's
lease, and reconciles reservations left open by gateways whose lease has lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lingyun.errors import ServiceUnavailableError
from lingyun.metering.batch import BillingScopes, apply_reserves, apply_settles
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.reconcile import open_reservations_of, renew_lease
from lingyun.store.db import Database
from lingyun.store.ledger import GatewayLease, Reservation
from lingyun.store.models import utcnow

logger = logging.getLogger(__name__)

Progress = Callable[[], tuple[int, int]]


class Journal:
    def __init__(
        self,
        db: Database,
        owner: str,
        *,
        checkpoint_s: float = 1.0,
        lease_s: float = 15.0,
    ) -> None:
        self.db = db
        self.owner = owner
        self.checkpoint_s = checkpoint_s
        self.lease_s = lease_s
        self._reserves: list[Hold] = []
        self._settles: list[Settlement] = []
        self._wake = asyncio.Event()
        self._live: dict[str, Progress] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        # Who has budgets and quotas, so batches skip those reads for everyone else.
        self.scopes = BillingScopes()

    # --- the request path -------------------------------------------------------------

    async def reserve(self, hold: Hold) -> None:
        """Durably reserve ``hold``; raises ``InsufficientQuotaError`` when refused."""
        hold.decided = asyncio.get_running_loop().create_future()
        self._reserves.append(hold)
        self._kick()
        await asyncio.shield(hold.decided)

    def track(self, request_id: str, progress: Progress) -> None:
        """Checkpoint this request's (prompt, completion) tokens while it runs."""
        self._live[request_id] = progress

    def settle(self, settlement: Settlement) -> None:
        self._live.pop(settlement.hold.request_id, None)
        self._settles.append(settlement)
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_scopes()
        await renew_lease(self.db, self.owner)
        await self.reconcile(owners=[self.owner])  # our previous life's orphans
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="journal-commit"),
            asyncio.create_task(self._housekeeping(), name="journal-housekeeping"),
        ]

    async def drain(self) -> None:
        """Wait until everything queued so far is committed."""
        while self._reserves or self._settles or not self._idle.is_set():
            self._kick()
            await self._idle.wait()

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # --- the two background tasks ------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            reserves, self._reserves = self._reserves, []
            settles, self._settles = self._settles, []
            if reserves or settles:
                await self._commit(reserves, settles)
            if not (self._reserves or self._settles):
                self._idle.set()

    async def _commit(self, reserves: list[Hold], settles: list[Settlement]) -> None:
        try:

            def batch(s: Session) -> list[Exception | None]:
                if settles:
                    apply_settles(s, settles)
                return apply_reserves(s, reserves, self.owner, self.scopes) if reserves else []

            outcomes = await self.db.transaction(batch)
        except Exception:
            logger.exception(
                "metering commit failed (%d reserves, %d settles)", len(reserves), len(settles)
            )
            refusal = ServiceUnavailableError(
                "Billing is temporarily unavailable; the request was not started.",
                headers={"Retry-After": "1"},
            )
            for hold in reserves:
                _resolve(hold, refusal)
            self._settles[:0] = settles  # keep them; try again shortly
            await asyncio.sleep(0.5)
            self._wake.set()
            return
        for hold, outcome in zip(reserves, outcomes, strict=True):
            _resolve(hold, outcome)

    async def _housekeeping(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.checkpoint_s)
            try:
                await self._load_scopes()
                await self._checkpoint()
                beats += 1
                if beats * self.checkpoint_s >= self.lease_s / 3:
                    beats = 0
                    await renew_lease(self.db, self.owner)
                    await self.reconcile(owners=await self._dead_owners())
            except Exception:
                logger.exception("metering housekeeping failed; retrying")

    async def _load_scopes(self) -> None:
        await self.db.transaction(self.scopes.load)

    async def _checkpoint(self) -> None:
        if not self._live:
            return
        rows = []
        for request_id, progress in list(self._live.items()):
            prompt, completion = progress()
            rows.append({"rid": request_id, "p": prompt, "c": completion})
        async with self.db.session() as s, s.begin():
            for row in rows:
                await s.execute(
                    update(Reservation)
                    .where(Reservation.request_id == row["rid"], Reservation.state == "open")
                    .values(prompt_tokens=row["p"], completion_tokens=row["c"])
                )

    async def _dead_owners(self) -> list[str]:
        cutoff = utcnow() - timedelta(seconds=self.lease_s * 2)
        async with self.db.session() as s:
            owners = set(
                await s.scalars(
                    select(Reservation.owner).where(Reservation.state == "open").distinct()
                )
            )
            alive = set(
                await s.scalars(
                    select(GatewayLease.owner).where(GatewayLease.heartbeat_at >= cutoff)
                )
            )
        return sorted(owners - alive - {self.owner})

    async def reconcile(self, owners: list[str]) -> int:
        """Settle the open reservations of dead gateways with the usage known at the crash."""
        if not owners:
            return 0
        settlements = await open_reservations_of(self.db, owners)
        if not settlements:
            return 0
        settled = await self.db.transaction(lambda s: apply_settles(s, settlements))
        logger.warning("reconciled %d reservation(s) left open by %s", settled, owners)
        return settled


def _resolve(hold: Hold, outcome: Exception | None) -> None:
    if hold.decided is None or hold.decided.done():
        return
    if outcome is None:
        hold.decided.set_result(None)
    else:
        hold.decided.set_exception(outcome)
