"""The metering journal: every request's reservation and settlement, group-committed.

An interactive request is decided in memory against this gateway's credit lease on its
account (``LeaseBook``): no commit on its path unless the lease must grow. Its hold goes to
the delivery log before its engine is asked and its final usage when it settles; settlements
are folded into the ledger in batches every ``fold_s`` (a crash before the fold is replayed
from the log at the next start). A Batch API line, a request while a free quota applies to
it, or a journal without a delivery log reserves per request instead: a durable reservation
row, decided before its engine is asked, settled after (reconciliation settles it if the
process dies first). One task commits whatever has queued up since its last commit, so many
requests share one transaction; another (``upkeep``) checkpoints, renews the heartbeat,
returns idle leases and reconciles dead gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from lingyun.errors import ServiceUnavailableError
from lingyun.lifecycle import supervised
from lingyun.metering import lease_rows, upkeep
from lingyun.metering.batch import BillingScopes, apply_reserves, apply_settles
from lingyun.metering.commits import Commit, resolve, retrieved
from lingyun.metering.deliveries import DeliveryLog, Replay
from lingyun.metering.folds import fold
from lingyun.metering.holds import Hold, Settlement
from lingyun.metering.leases import IDLE_S, LeaseBook
from lingyun.metering.reconcile import renew_lease, touch_lease
from lingyun.store.db import Database
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
        fold_s: float = 0.2,
        lease_idle_s: float = IDLE_S,
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
        self.fold_s = fold_s
        self._queued = Commit()
        self._fold_timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._live: dict[str, Progress] = {}
        self._begun: dict[str, bytes] = {}  # leased requests running: their hold lines
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        # Who has budgets and quotas, so batches skip those reads for everyone else.
        self.scopes = BillingScopes()
        self.leases = LeaseBook(db, owner, self.scopes, lease_idle_s)
        self._quota_spent = False  # reload the scopes: a quota may be used up
        # When our heartbeat was last renewed, and the commits made by then.
        self._renewed = float("-inf")
        self._committed_at_renewal = 0
        self._synced = 0  # commits made durable against a power loss by the last sync
        self.commit_seconds: Callable[[float], None] = _ignore  # each commit's time (metrics)

    # --- the request path -------------------------------------------------------------

    async def reserve(self, hold: Hold) -> None:
        """Reserve ``hold``'s worst case; raises ``InsufficientQuotaError`` when refused."""
        if self._leasable(hold):
            assert self.deliveries is not None
            await self.leases.take(hold)
            try:
                self._begun[hold.request_id] = self.deliveries.begin(hold)
            except ServiceUnavailableError:  # the disk is full: not started, nothing held
                self.leases.settle(Settlement(hold, 0, 0, 0, 0, "failed", reached_engine=False))
                raise
            return
        decided = hold.decided = asyncio.get_running_loop().create_future()
        decided.add_done_callback(retrieved)
        self._queued.reserves.append(hold)
        self._kick()
        try:
            await asyncio.shield(decided)
        except asyncio.CancelledError:
            # The client left while its reservation was being written: once the decision
            # lands, give back what it reserved (nothing reached an engine).
            self.settle(Settlement(hold, 0, 0, 0, 0, "cancelled", reached_engine=False))
            raise

    def _leasable(self, hold: Hold) -> bool:
        """Per request instead: a free quota's tokens, batch lines (their resume reads
        reservation rows), and any request of a journal with no delivery log."""
        return (
            self.deliveries is not None
            and hold.lane == "interactive"
            and (hold.tenant_id, hold.model) not in self.scopes.quota_models
        )

    def track(self, request_id: str, progress: Progress) -> None:
        self._live[request_id] = progress  # checkpointed (or carried) while it runs

    def delivered(self, request_id: str, counts: tuple[int, int]) -> None:
        """What reached this request's client so far, handed to the OS before it is sent."""
        if self.deliveries is not None:
            self.deliveries.record(request_id, counts)

    def settle(self, settlement: Settlement) -> None:
        """Settle once the hold's reservation is decided (it may end before); a refused one
        has nothing to settle. A leased one is folded within ``fold_s``."""
        hold = settlement.hold
        self._live.pop(hold.request_id, None)
        if hold.leased:
            self._begun.pop(hold.request_id, None)
            if self.leases.settle(settlement):
                self._record_final(settlement)
                self._queued.folds.append(settlement)
                self._fold_soon()
            return
        decided = hold.decided
        if decided is not None and not decided.done():
            decided.add_done_callback(lambda _: self.settle(settlement))
            return
        if decided is not None and (decided.cancelled() or decided.exception() is not None):
            return
        self._queued.settles.append(settlement)
        self._kick()

    def _record_final(self, settlement: Settlement) -> None:
        if self.deliveries is None:
            return
        # (a full disk is logged there; a crash now charges the last counts instead)
        with contextlib.suppress(ServiceUnavailableError):
            self.deliveries.settled(settlement)

    def _fold_soon(self) -> None:
        self._idle.clear()
        if self._fold_timer is None:
            self._fold_timer = asyncio.get_running_loop().call_later(self.fold_s, self._kick)

    def backlog(self) -> tuple[int, int]:
        """Reservations and settlements queued, not yet committed: the journal's lag."""
        q = self._queued
        return len(q.reserves), len(q.settles) + len(q.folds)

    def _kick(self) -> None:
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        self._idle.clear()
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.load_scopes()
        await renew_lease(self.db, self.owner)
        self._renewed = time.monotonic()
        # our previous life's orphans, charged what its delivery log says reached clients
        replay = self.deliveries.replay() if self.deliveries is not None else Replay()
        await upkeep.recover(self.db, self.owner, replay)
        self._tasks = [
            supervised("journal-commit", self._commit_loop),
            supervised("journal-housekeeping", self._housekeeping),
        ]
        if self.deliveries is not None:
            self.deliveries.clear()
            self._tasks.append(supervised("journal-fsync", self.deliveries.sync_forever))

    async def drain(self) -> None:
        """Wait until everything queued so far is committed."""
        while self._queued or not self._idle.is_set():
            self._kick()
            await self._idle.wait()

    async def stop(self) -> None:
        await self.drain()
        self._queued.returns += self.leases.idle(everything=True)
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
            batch, self._queued = self._queued, Commit()
            if batch:
                self._taken += 1
                started = time.perf_counter()
                await self._commit(batch)
                self._committed += 1
                self.commit_seconds(time.perf_counter() - started)
            if not self._queued:
                self._idle.set()

    async def _commit(self, batch: Commit) -> None:
        try:
            outcomes = await self._transaction(batch)
        except Exception as exc:
            if unreachable(exc) or batch.size() == 1:
                await self._failed(batch, exc)
                return
            # One bad row must not stop billing for everyone: commit each alone, so only
            # the one the database refuses is refused.
            logger.warning("metering batch refused (%s); committing its rows one by one", exc)
            for single in batch.singles():
                try:
                    alone = await self._transaction(single)
                except Exception as exc_alone:
                    await self._failed(single, exc_alone)
                    continue
                self._done(single, alone)
            return
        self._done(batch, outcomes)

    def _done(self, batch: Commit, outcomes: list[Exception | None]) -> None:
        self.leases.folded(batch.folds)
        # free tokens were spent: a quota may be used up (the feed does not say so)
        self._quota_spent |= any(s.hold.quota_id is not None for s in batch.settles)
        for hold, outcome in zip(batch.reserves, outcomes, strict=True):
            resolve(hold, outcome)

    async def _transaction(self, batch: Commit) -> list[Exception | None]:
        renew = bool(batch.reserves) and self._lease_stale()

        def run(s: Session) -> list[Exception | None]:
            lease_rows.lock_accounts(s, batch.tenants())
            if batch.settles:
                apply_settles(s, batch.settles)
            if batch.folds:
                fold(s, batch.folds)
            if batch.returns:
                lease_rows.give_back(s, batch.returns)
            if not batch.reserves:
                return []
            if renew:  # after an idle spell: our heartbeat lands with the reservations
                touch_lease(s, self.owner)
            return apply_reserves(s, batch.reserves, self.owner, self.scopes)

        # fast commits: a crash of this process loses none; _housekeeping syncs each second
        outcomes = await self.db.transaction(run, durable=False)
        if renew:
            self._renewed = time.monotonic()
        return outcomes

    def _lease_stale(self) -> bool:
        return time.monotonic() - self._renewed >= self.lease_s / 3

    def _holding(self) -> bool:
        """May this gateway hold open reservations or leases (its heartbeat must stay
        fresh)? Idle, with every lease given back: no."""
        busy = self._live or self._queued or not self._idle.is_set() or self.leases.holding()
        return bool(busy) or self._committed != self._committed_at_renewal

    async def _failed(self, batch: Commit, exc: Exception) -> None:
        """Refuse the reserves; keep the rest to retry while the database is away, but
        drop a row it refuses on its own (a per-request reservation then stays open: the
        next start's reconciliation charges it from its last checkpoint, at most its hold)."""
        refusal = ServiceUnavailableError(
            "Billing is temporarily unavailable; the request was not started.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        for hold in batch.reserves:
            resolve(hold, refusal)
        if not unreachable(exc):
            for s in [*batch.settles, *batch.folds]:
                logger.error(
                    "settlement of %s refused by the database (%s); left to reconciliation",
                    s.hold.request_id,
                    exc,
                )
            self.leases.folded(batch.folds)
            return
        logger.error("metering commit failed (%d rows): %s", batch.size(), exc)
        # A commit cut off by the outage may have landed anyway: release its holds later.
        voids = [Settlement(h, 0, 0, 0, 0, "failed", reached_engine=False) for h in batch.reserves]
        self._queued.prepend(Commit([], [*batch.settles, *voids], batch.folds, batch.returns))
        await asyncio.sleep(0.5)
        self._wake.set()

    async def _housekeeping(self) -> None:
        """Each beat's steps fail alone: a refused checkpoint must not stop the lease."""
        beats = 0
        while True:
            await asyncio.sleep(self.checkpoint_s)
            beats += 1
            steps = [self._scopes_expired, self._checkpoint, self._sync, self._return_idle]
            if beats * self.checkpoint_s >= self.lease_s / 3:
                beats = 0
                steps.append(self._keep_lease)
            for step in steps:
                try:
                    await step()
                except Exception:
                    logger.exception("metering housekeeping (%s) failed; retrying", step.__name__)

    async def _return_idle(self) -> None:
        if idle := self.leases.idle():
            self._queued.returns += idle
            self._kick()

    async def _sync(self) -> None:
        """What a power loss can take: the commits since the last beat."""
        committed = self._committed
        if committed != self._synced:
            await self.db.sync()
            self._synced = committed

    async def _keep_lease(self) -> None:
        """While this gateway holds anything: its heartbeat, and the holdings of gateways
        whose heartbeat lapsed (an idle one does nothing; its next request makes it busy)."""
        if not self._holding():
            return
        self._committed_at_renewal = self._committed
        await renew_lease(self.db, self.owner)
        self._renewed = time.monotonic()
        dead = await upkeep.dead_owners(self.db, self.owner, self.lease_s)
        await upkeep.reconcile(self.db, dead)
        await upkeep.reclaim(self.db, dead)
        await self.purge(older_than=SETTLED_RETENTION)

    async def load_scopes(self) -> None:
        """Who has budgets and free quotas: at start, on the change feed's
        ``billing-scopes``, and when the soonest quota expires."""
        await self.db.transaction(self.scopes.load)

    async def _scopes_expired(self) -> None:
        expiry = self.scopes.next_expiry
        if self._quota_spent or (expiry is not None and utcnow() >= expiry):
            self._quota_spent = False
            await self.load_scopes()

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
            log.rotate(self._carried())
            pending = bool(self._queued) or not self._idle.is_set()
            covers = self._taken + (1 if pending else 0)
        # a leased request's record is its log; a reserved one's, its row
        await upkeep.checkpoint(
            self.db, {rid: p() for rid, p in list(self._live.items()) if rid not in self._begun}
        )
        if covers is not None:  # committed: the rotated lines may go once settles do
            self._rotation_target = covers

    def _carried(self) -> list[bytes]:
        """The lines of leased requests still running, for the head of the next file."""
        lines = []
        for rid, line in self._begun.items():
            lines.append(line)
            progress = self._live.get(rid)
            counts = progress() if progress is not None else (0, 0)
            if counts != (0, 0):
                lines.append(f"{rid} {counts[0]} {counts[1]}\n".encode())
        return lines

    async def purge(self, older_than: timedelta) -> int:
        return await upkeep.purge(self.db, older_than)


def _ignore(_seconds: float) -> None:
    pass
