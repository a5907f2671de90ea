"""The metering journal: durable reservations and settlements, group-committed.

Requests call ``reserve_ahead`` or ``reserve``, then ``settle`` (which does not wait: the
response is already on its way; if the process dies first, reconciliation settles the
reservation). When this gateway's last view of the account covers the request's worst case
(``Headroom``), ``reserve_ahead`` queues the reservation and the request goes on to its engine
while it is written; its first byte waits for the decision, so nothing reaches a client
unreserved. Otherwise (first sight of an account, little money left, budgets or free quotas)
``reserve`` waits for the decision before the engine. One task commits whatever has queued up
since its last commit, so under load many requests share one transaction and one fsync. A
second task checkpoints the usage of streams in flight, renews this gateway's lease, and
reconciles reservations left open by gateways whose lease has lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lingyun.errors import ServiceUnavailableError
from lingyun.lifecycle import supervised
from lingyun.metering.batch import BillingScopes, apply_reserves, apply_settles
from lingyun.metering.deliveries import DeliveryLog
from lingyun.metering.headroom import Headroom
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.reconcile import open_reservations_of, renew_lease, touch_lease
from lingyun.store.db import Database
from lingyun.store.ledger import GatewayLease, Reservation
from lingyun.store.models import utcnow
from lingyun.store.outage import RETRY_AFTER_S, unreachable

logger = logging.getLogger(__name__)

Progress = Callable[[], tuple[int, int]]
# How long a settled reservation is kept (for an operator's look) before it is purged.
SETTLED_RETENTION = timedelta(minutes=10)


class Journal:
    def __init__(
        self,
        db: Database,
        owner: str,
        *,
        checkpoint_s: float = 1.0,
        lease_s: float = 15.0,
        deliveries: DeliveryLog | None = None,
    ) -> None:
        self.db = db
        self.deliveries = deliveries
        # Commit batches taken and finished, and the count the rotated delivery file waits
        # for: its lines may be dropped once every settlement queued before it committed.
        self._taken = 0
        self._committed = 0
        self._rotation_target: int | None = None
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
        self.headroom = Headroom()
        # When our lease was last renewed, and the commits made by then.
        self._renewed = float("-inf")
        self._committed_at_renewal = 0
        self._synced = 0  # commits made durable against a power loss by the last sync
        self.commit_seconds: Callable[[float], None] = _ignore  # each commit's time (metrics)

    # --- the request path -------------------------------------------------------------

    async def reserve(self, hold: Hold) -> None:
        """Durably reserve ``hold``; raises ``InsufficientQuotaError`` when refused."""
        decided = self._queue(hold, ahead=False)
        try:
            await asyncio.shield(decided)
        except asyncio.CancelledError:
            # The client left while its reservation was being written: once the decision
            # lands, give back what it reserved (nothing reached an engine).
            self.settle(Settlement(hold, 0, 0, 0, 0, "cancelled", reached_engine=False))
            raise

    def reserve_ahead(self, hold: Hold) -> asyncio.Future[None] | None:
        """Queue ``hold`` without waiting if the headroom covers it, and answer its pending
        decision, which must be awaited before the request's first byte reaches the client
        (a refusal raises there). None: the headroom does not cover it; call ``reserve``."""
        if not self.headroom.covers(hold, self.scopes):
            return None
        return self._queue(hold, ahead=True)

    def _queue(self, hold: Hold, *, ahead: bool) -> asyncio.Future[None]:
        decided = hold.decided = asyncio.get_running_loop().create_future()
        decided.add_done_callback(_retrieved)
        if ahead:
            self.headroom.take(hold)
        self._reserves.append(hold)
        self._kick()
        return decided

    def track(self, request_id: str, progress: Progress) -> None:
        """Checkpoint this request's (prompt, completion) tokens while it runs."""
        self._live[request_id] = progress

    def delivered(self, request_id: str, counts: tuple[int, int]) -> None:
        """What reached this request's client so far, handed to the OS before it is sent."""
        if self.deliveries is not None:
            self.deliveries.record(request_id, counts)

    def settle(self, settlement: Settlement) -> None:
        """Settle once the hold's reservation is decided (it may end before); a refused one
        has nothing to settle."""
        self._live.pop(settlement.hold.request_id, None)
        decided = settlement.hold.decided
        if decided is not None and not decided.done():
            decided.add_done_callback(lambda _: self.settle(settlement))
            return
        if decided is not None and (decided.cancelled() or decided.exception() is not None):
            return
        self._settles.append(settlement)
        self._kick()

    def backlog(self) -> tuple[int, int]:
        """Reservations and settlements queued, not yet committed: the journal's lag."""
        return len(self._reserves), len(self._settles)

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_scopes()
        await renew_lease(self.db, self.owner)
        self._renewed = time.monotonic()
        # our previous life's orphans, charged what its delivery log says reached clients
        delivered = self.deliveries.replay() if self.deliveries is not None else {}
        await self.reconcile(owners=[self.owner], delivered=delivered)
        self._tasks = [
            supervised("journal-commit", self._commit_loop),
            supervised("journal-housekeeping", self._housekeeping),
        ]
        if self.deliveries is not None:
            self.deliveries.clear()
            self._tasks.append(supervised("journal-fsync", self.deliveries.sync_forever))

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
        if self.deliveries is not None:
            self.deliveries.close()

    # --- the two background tasks ------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            reserves, self._reserves = self._reserves, []
            settles, self._settles = self._settles, []
            if reserves or settles:
                self._taken += 1
                started = time.perf_counter()
                await self._commit(reserves, settles)
                self._committed += 1
                self.commit_seconds(time.perf_counter() - started)
            if not (self._reserves or self._settles):
                self._idle.set()

    async def _commit(self, reserves: list[Hold], settles: list[Settlement]) -> None:
        try:
            outcomes = await self._transaction(reserves, settles)
        except Exception as exc:
            if unreachable(exc) or len(reserves) + len(settles) == 1:
                await self._failed(reserves, settles, exc)
                return
            # One bad row must not stop billing for everyone: commit each alone, so only
            # the one the database refuses is refused.
            logger.warning("metering batch refused (%s); committing its rows one by one", exc)
            for settlement in settles:
                await self._commit_alone([], [settlement])
            for hold in reserves:
                await self._commit_alone([hold], [])
            return
        for hold, outcome in zip(reserves, outcomes, strict=True):
            _resolve(hold, outcome)

    async def _transaction(
        self, reserves: list[Hold], settles: list[Settlement]
    ) -> list[Exception | None]:
        available: dict[str, Decimal] = {}

        renew = bool(reserves) and self._lease_stale()

        def batch(s: Session) -> list[Exception | None]:
            if settles:
                apply_settles(s, settles)
            if not reserves:
                return []
            if renew:  # after an idle spell: our heartbeat lands with the reservations
                touch_lease(s, self.owner)
            return apply_reserves(s, reserves, self.owner, self.scopes, available)

        # fast commits: a crash of this process loses none; _housekeeping syncs each second
        outcomes = await self.db.transaction(batch, durable=False)
        if renew:
            self._renewed = time.monotonic()
        self.headroom.seen(available)  # before the holds it decided leave ``ahead``
        return outcomes

    def _lease_stale(self) -> bool:
        return time.monotonic() - self._renewed >= self.lease_s / 3

    def _holding(self) -> bool:
        """May this gateway hold open reservations (its lease must stay fresh)? Idle: no."""
        busy = self._live or self._reserves or self._settles or not self._idle.is_set()
        return bool(busy) or self._committed != self._committed_at_renewal

    async def _commit_alone(self, reserves: list[Hold], settles: list[Settlement]) -> None:
        try:
            outcomes = await self._transaction(reserves, settles)
        except Exception as exc:
            await self._failed(reserves, settles, exc)
            return
        for hold, outcome in zip(reserves, outcomes, strict=True):
            _resolve(hold, outcome)

    async def _failed(
        self, reserves: list[Hold], settles: list[Settlement], exc: Exception
    ) -> None:
        """Refuse the reserves; keep settlements to retry while the database is away, but
        drop one it refuses on its own (its reservation stays open: the next start's
        reconciliation charges it from its last checkpoint, at most its hold)."""
        refusal = ServiceUnavailableError(
            "Billing is temporarily unavailable; the request was not started.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        self.headroom.forget()  # until the database answers again, every request waits
        for hold in reserves:
            _resolve(hold, refusal)
        if not unreachable(exc):
            for s in settles:
                logger.error(
                    "settlement of %s refused by the database (%s); left to reconciliation",
                    s.hold.request_id,
                    exc,
                )
            return
        logger.error("metering commit failed (%d reserves, %d settles): %s",
                     len(reserves), len(settles), exc)  # fmt: skip
        # A commit cut off by the outage may have landed anyway: release its holds later.
        voids = [Settlement(h, 0, 0, 0, 0, "failed", reached_engine=False) for h in reserves]
        self._settles[:0] = [*settles, *voids]  # keep them; try again shortly
        await asyncio.sleep(0.5)
        self._wake.set()

    async def _housekeeping(self) -> None:
        """Each beat's steps fail alone: a refused checkpoint must not stop the lease."""
        beats = 0
        while True:
            await asyncio.sleep(self.checkpoint_s)
            beats += 1
            steps = [self._load_scopes, self._checkpoint, self._sync]
            if beats * self.checkpoint_s >= self.lease_s / 3:
                beats = 0
                steps.append(self._keep_lease)
            for step in steps:
                try:
                    await step()
                except Exception:
                    logger.exception("metering housekeeping (%s) failed; retrying", step.__name__)

    async def _sync(self) -> None:
        """What a power loss can take: the commits since the last beat."""
        committed = self._committed
        if committed != self._synced:
            await self.db.sync()
            self._synced = committed

    async def _keep_lease(self) -> None:
        if self._holding():
            self._committed_at_renewal = self._committed
            await renew_lease(self.db, self.owner)
            self._renewed = time.monotonic()
        await self.reconcile(owners=await self._dead_owners())
        await self.purge(older_than=SETTLED_RETENTION)

    async def _load_scopes(self) -> None:
        await self.db.transaction(self.scopes.load)

    async def _checkpoint(self) -> None:
        log = self.deliveries
        target = self._rotation_target
        if log is not None and target is not None and self._committed >= target:
            log.checkpointed()  # the last checkpoint and every settle before it are in
            self._rotation_target = None
        if not self._live:
            return
        covers: int | None = None
        if log is not None and self._rotation_target is None:
            # (no new file while a failed round's rotated one is left: this round covers it)
            log.rotate()
            pending = bool(self._reserves or self._settles) or not self._idle.is_set()
            covers = self._taken + (1 if pending else 0)
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
        if covers is not None:  # committed: the rotated lines may go once settles do
            self._rotation_target = covers

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

    async def purge(self, older_than: timedelta) -> int:
        """Delete reservations settled or released longer ago than ``older_than``: the
        ledger keeps each request's record, and a late settle finds no open row to charge."""
        cutoff = utcnow() - older_than
        async with self.db.session() as s, s.begin():
            result = await s.execute(
                delete(Reservation).where(
                    Reservation.state != "open", Reservation.created_at <= cutoff
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def reconcile(
        self, owners: list[str], delivered: dict[str, tuple[int, int]] | None = None
    ) -> int:
        """Settle the open reservations of dead gateways with the usage known at the crash:
        the last checkpoint, or what ``delivered`` (a delivery log's replay) says, if more."""
        if not owners:
            return 0
        settlements = await open_reservations_of(self.db, owners, delivered or {})
        if not settlements:
            return 0
        settled = await self.db.transaction(lambda s: apply_settles(s, settlements))
        logger.warning("reconciled %d reservation(s) left open by %s", settled, owners)
        return settled


def _retrieved(decided: asyncio.Future[None]) -> None:
    """Mark a refusal as seen: a request that ended before its gate never awaits it."""
    if not decided.cancelled():
        decided.exception()


def _resolve(hold: Hold, outcome: Exception | None) -> None:
    if hold.decided is None or hold.decided.done():
        return
    if outcome is None:
        hold.decided.set_result(None)
    else:
        hold.decided.set_exception(outcome)


def _ignore(_seconds: float) -> None:
    pass
