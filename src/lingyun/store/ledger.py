"""Billing tables: prices, the append-only ledger, reservations, accounts, budgets, quotas.

Invariants (owned by ``lingyun.metering``):
- ``ledger_entries`` is append-only. ``entry_key`` is unique: a usage entry's key is its
  request id, so a retried settle or a reconciliation after a crash can never charge twice.
  Corrections are new entries (``refund``, ``adjustment``), never edits.
- Money is ``Decimal`` in Python and an integer count of billionths in the database
  (``Money``): exact on every backend — SQLite would store a NUMERIC column as a float.
  ``amount`` is always what the entry does to the tenant's balance: top-ups and refunds are
  positive, usage is negative.
- ``accounts.balance`` equals the sum of the tenant's ledger amounts; it is updated in the
  same transaction as every ledger insert (a projection kept for the admission check).
  ``accounts.reserved`` is the sum of the tenant's open reservations.
- A reservation is written (durably) before its request reaches an engine and moves
  ``open -> settled`` exactly once, by the settle batch or by start-up reconciliation.
- Usage entries keep raw ids and name snapshots, no foreign keys: deleting a tenant keeps its
  history.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from lingyun.store.models import Base, UTCDateTime, utcnow


class Money(TypeDecorator[Decimal]):
    """Decimal money kept as integer billionths of the currency unit (9 decimal places).

    Integers add exactly in SQL on SQLite and PostgreSQL alike (balances are updated with
    ``balance - :charge``); a value with more than 9 decimal places is refused, never rounded.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> int | None:
        if value is None:
            return None
        units = Decimal(value).scaleb(9)
        if units != units.to_integral_value():
            raise ValueError(f"{value} has more than 9 decimal places")
        return int(units)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(int(value)).scaleb(-9)


MONEY = Money()


class Price(Base):
    """Current price of a model, per 1M tokens; a row with a tenant id is that tenant's
    negotiated price and wins over the list price (tenant id ""). The ledger snapshots what
    it applied."""

    __tablename__ = "prices"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True, default="")
    currency: Mapped[str] = mapped_column(String(8), default="CNY")
    input_per_m: Mapped[Decimal] = mapped_column(MONEY)
    cached_input_per_m: Mapped[Decimal | None] = mapped_column(MONEY, default=None)
    output_per_m: Mapped[Decimal] = mapped_column(MONEY)
    reasoning_output_per_m: Mapped[Decimal | None] = mapped_column(MONEY, default=None)
    batch_multiplier: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(1))
    # [{"up_to": prompt_tokens | null, "input": "...", "cached_input": "...", "output": "..."}]
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_tenant_time", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entry_key: Mapped[str] = mapped_column(String(96), unique=True)
    # usage | topup | refund | adjustment
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    tenant_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(32), default=None)
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    cached_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    # Tokens paid for by free quota rather than the balance.
    free_tokens: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(8), default="CNY")
    input_per_m: Mapped[Decimal | None] = mapped_column(MONEY, default=None)
    cached_input_per_m: Mapped[Decimal | None] = mapped_column(MONEY, default=None)
    output_per_m: Mapped[Decimal | None] = mapped_column(MONEY, default=None)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    # served | cancelled | failed | reconciled: how the usage figure was obtained
    note: Mapped[str] = mapped_column(String(255), default="")


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_state", "state"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    tenant_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    period: Mapped[str] = mapped_column(String(7))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    free_tokens: Mapped[int] = mapped_column(default=0)
    quota_id: Mapped[int | None] = mapped_column(default=None)
    # Unit prices at admission: the settle charges with these, whatever changes meanwhile.
    prices: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Best knowledge of usage so far, checkpointed while streaming, for crash reconciliation.
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    # The gateway instance that holds the request; its lease says whether it is alive.
    owner: Mapped[str] = mapped_column(String(128), default="")
    # open -> settled (settle batch, or reconciliation of a dead owner's reservations)
    # open -> released (the request never reached an engine: no ledger entry)
    state: Mapped[str] = mapped_column(String(16), default="open")


class CreditLease(Base):
    """A slice of one account's money that one gateway may spend without asking again.

    Taking or growing it reserves its amount on the account (and on the budgets it counts
    against) under the account's lock, so no set of gateways can spend past the balance;
    each charge folded into the ledger lowers it; what is left goes back when the gateway
    returns it, or when another reclaims it after this gateway's heartbeat lapsed.
    """

    __tablename__ = "credit_leases"

    lease_id: Mapped[str] = mapped_column(String(192), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(7))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    # The (scope, id) budgets its amount is reserved against, as [[scope, id], ...].
    budgets: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GatewayLease(Base):
    """A heartbeat per gateway instance, so others can tell its reservations are orphaned."""

    __tablename__ = "gateway_leases"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Account(Base):
    __tablename__ = "accounts"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    balance: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    reserved: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    # Refuse any request that free quota cannot pay for.
    free_only: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Budget(Base):
    """A monthly spending cap on a tenant or a project; spend per period in ``BudgetPeriod``."""

    __tablename__ = "budgets"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # tenant | project
    scope_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    monthly_limit: Mapped[Decimal] = mapped_column(MONEY)


class BudgetPeriod(Base):
    __tablename__ = "budget_periods"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    spent: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    reserved: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))


class FreeQuota(Base):
    """Free tokens for a tenant on one model, spent before the balance, until they expire."""

    __tablename__ = "free_quotas"
    __table_args__ = (UniqueConstraint("tenant_id", "model", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(128))
    granted_tokens: Mapped[int] = mapped_column(BigInteger)
    used_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
