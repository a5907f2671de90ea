"""Billing verbs: ``prices``, ``topup``, ``balance``, ``usage``, ``invoice``, ``budgets``,
``quota`` and ``free-only``. Amounts are decimal strings in JSON, never floats."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from lingyun.cli.common import (
    ConfigOpt,
    DatabaseUrlOpt,
    DataDirOpt,
    JsonOpt,
    emit_json,
    fail,
    parse_expiry,
    run_with_db,
    settings_from,
)
from lingyun.metering import accounts, reports
from lingyun.metering.money import parse_money, show
from lingyun.metering.pricing import list_prices, set_price
from lingyun.store.db import Database
from lingyun.tenancy.service import TenancyService

prices = typer.Typer(no_args_is_help=True, help="Model prices per 1M tokens.")
budgets = typer.Typer(no_args_is_help=True, help="Monthly budgets per tenant or project.")
quota = typer.Typer(no_args_is_help=True, help="Free token quotas per tenant and model.")

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant name.")]


def _money(raw: str | None, what: str) -> Decimal | None:
    if raw is None:
        return None
    try:
        return parse_money(raw, what)
    except ValueError as exc:
        fail(str(exc))


def _tier(raw: str) -> dict[str, Any]:
    parts = raw.split(":")
    if len(parts) not in (3, 4):
        fail(f"--tier {raw!r} must be UP_TO:INPUT:OUTPUT[:CACHED_INPUT] (UP_TO may be 'inf')")
    tier: dict[str, Any] = {"up_to": None if parts[0] in ("inf", "") else int(parts[0])}
    tier["input"], tier["output"] = parts[1], parts[2]
    if len(parts) == 4:
        tier["cached_input"] = parts[3]
    return tier


@prices.command("set")
def prices_set(
    model: Annotated[str, typer.Argument(help="Public model name.")],
    input_price: Annotated[str, typer.Option("--input", help="Per 1M input tokens.")],
    output_price: Annotated[str, typer.Option("--output", help="Per 1M output tokens.")],
    cached_input: Annotated[
        str | None, typer.Option("--cached-input", help="Per 1M cached input tokens.")
    ] = None,
    reasoning_output: Annotated[
        str | None, typer.Option("--reasoning-output", help="Per 1M reasoning tokens.")
    ] = None,
    currency: Annotated[str, typer.Option("--currency")] = "CNY",
    batch_multiplier: Annotated[str, typer.Option("--batch-multiplier")] = "0.5",
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="A tenant's own price (else the list price).")
    ] = None,
    tier: Annotated[
        list[str] | None,
        typer.Option("--tier", help="UP_TO:INPUT:OUTPUT[:CACHED] by prompt length (repeatable)."),
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a model's price; requests already admitted keep the price they were admitted at."""
    inp, out = _money(input_price, "--input"), _money(output_price, "--output")
    multiplier = _money(batch_multiplier, "--batch-multiplier")
    assert inp is not None and out is not None and multiplier is not None
    tiers = [_tier(t) for t in tier or []]

    async def work(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant) if tenant else ""
        await set_price(
            db,
            model,
            input_per_m=inp,
            output_per_m=out,
            cached_input_per_m=_money(cached_input, "--cached-input"),
            reasoning_output_per_m=_money(reasoning_output, "--reasoning-output"),
            currency=currency,
            batch_multiplier=multiplier,
            tiers=tiers,
            tenant_id=tenant_id,
        )

    run_with_db(settings_from(config, data_dir, database_url), work)
    typer.echo(f"Price of {model} set: input {inp}, output {out} {currency.upper()} per 1M tokens.")


@prices.command("list")
def prices_list(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List prices."""
    rows = run_with_db(settings_from(config, data_dir, database_url), list_prices)
    data = [
        {
            "model": p.model,
            "currency": p.currency,
            "input": show(p.input_per_m),
            "cached_input": None if p.cached_input_per_m is None else show(p.cached_input_per_m),
            "output": show(p.output_per_m),
            "tiers": p.tiers,
        }
        for p in rows
    ]
    if as_json:
        emit_json(data)
    else:
        for d in data:
            typer.echo(f"{d['model']}  in {d['input']}  out {d['output']}  {d['currency']}/1M")


async def _tenant_id(db: Database, name: str) -> str:
    return (await TenancyService(db).tenant(name)).id


def topup(
    tenant: TenantOpt,
    amount: Annotated[str, typer.Option("--amount", help="Amount to add to the prepaid balance.")],
    note: Annotated[str, typer.Option("--note")] = "",
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Makes a retried top-up count once.")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add to a tenant's prepaid balance (a ledger entry)."""
    value = _money(amount, "--amount")
    assert value is not None

    async def work(db: Database) -> tuple[Any, bool, accounts.BalanceView]:
        tid = await _tenant_id(db, tenant)
        entry, created = await accounts.credit(
            db, tid, value, note=note, idempotency_key=idempotency_key
        )
        return entry, created, await accounts.balance(db, tid)

    entry, created, bal = run_with_db(settings_from(config, data_dir, database_url), work)
    out = {
        "entry": entry.entry_key,
        "created": created,
        "amount": show(entry.amount),
        "balance": show(bal.balance),
        "available": show(bal.available),
    }
    if as_json:
        emit_json(out)
    else:
        verb = "Added" if created else "Already recorded:"
        typer.echo(f"{verb} {entry.amount} to {tenant}; balance {bal.balance}.")


def balance(
    tenant: TenantOpt,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a tenant's balance, what is reserved by requests in flight, and what is available."""

    async def work(db: Database) -> accounts.BalanceView:
        return await accounts.balance(db, await _tenant_id(db, tenant))

    bal = run_with_db(settings_from(config, data_dir, database_url), work)
    out = {
        "tenant": tenant,
        "balance": show(bal.balance),
        "reserved": show(bal.reserved),
        "available": show(bal.available),
        "ledger_sum": show(bal.ledger_sum),
        "free_only": bal.free_only,
    }
    if as_json:
        emit_json(out)
    else:
        typer.echo(
            f"{tenant}: balance {bal.balance}, reserved {bal.reserved}, available {bal.available}"
        )


def _date(raw: str | None, flag: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        fail(f"{flag} must be YYYY-MM-DD, not {raw!r}")


def usage(
    tenant: TenantOpt,
    start: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (inclusive).")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A tenant's usage by day x model x project, with amounts charged."""
    lo, hi = _date(start, "--from"), _date(end, "--to")

    async def work(db: Database) -> list[reports.UsageLine]:
        return await reports.usage(db, await _tenant_id(db, tenant), lo, hi)

    lines = [
        line.to_json() for line in run_with_db(settings_from(config, data_dir, database_url), work)
    ]
    if as_json:
        emit_json(lines)
    elif as_csv:
        _csv(lines, sys.stdout)
    else:
        for line in lines:
            typer.echo(
                f"{line['day']}  {line['model']}  {line['requests']} req  "
                f"{line['prompt_tokens']}+{line['completion_tokens']} tok  {line['amount']}"
            )


def _csv(rows: list[dict[str, Any]], out: Any) -> None:
    if not rows:
        return
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def invoice(
    tenant: TenantOpt,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write invoice JSON and CSV here.")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A month's invoice, summed exactly from the ledger."""
    try:
        reports.month_bounds(month)
    except ValueError as exc:
        fail(str(exc))

    async def work(db: Database) -> dict[str, Any]:
        return await reports.invoice(db, await _tenant_id(db, tenant), tenant, month)

    inv = run_with_db(settings_from(config, data_dir, database_url), work)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"invoice-{tenant}-{month}"
        stem.with_suffix(".json").write_text(json.dumps(inv, indent=2, ensure_ascii=False))
        buf = io.StringIO()
        _csv(inv["lines"], buf)
        stem.with_suffix(".csv").write_text(buf.getvalue())
    if as_json:
        emit_json(inv)
    else:
        for line in inv["lines"]:
            typer.echo(f"{line['model']}  {line['requests']} req  {line['amount']}")
        typer.echo(f"total {inv['total']} {inv['currency']}")


@budgets.command("set")
def budgets_set(
    tenant: TenantOpt,
    project: Annotated[
        str | None, typer.Option("--project", help="Project name (else the tenant).")
    ] = None,
    monthly: Annotated[str | None, typer.Option("--monthly", help="Monthly limit.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the budget.")] = False,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Cap a tenant's or project's spend per calendar month."""
    if clear == (monthly is not None):
        fail("give exactly one of --monthly N or --clear")
    limit = None if clear else _money(monthly, "--monthly")

    async def work(db: Database) -> None:
        svc = TenancyService(db)
        if project is None:
            await accounts.set_budget(db, "tenant", (await svc.tenant(tenant)).id, limit)
        else:
            _, prj = await svc.project(tenant, project)
            await accounts.set_budget(db, "project", prj.id, limit)

    run_with_db(settings_from(config, data_dir, database_url), work)
    typer.echo("Budget removed." if clear else f"Monthly budget set to {limit}.")


@quota.command("grant")
def quota_grant(
    tenant: TenantOpt,
    model: Annotated[str, typer.Option("--model")],
    tokens: Annotated[int, typer.Option("--tokens", help="Free tokens (input and output).")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="ISO 8601 with timezone.")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Grant free tokens on a model, spent before the balance."""
    expires_at = parse_expiry(expires)

    async def work(db: Database) -> None:
        await accounts.grant_quota(db, await _tenant_id(db, tenant), model, tokens, expires_at)

    run_with_db(settings_from(config, data_dir, database_url), work)
    typer.echo(f"Granted {tenant} {tokens} free tokens on {model}.")


def free_only(
    tenant: TenantOpt,
    off: Annotated[bool, typer.Option("--off", help="Allow paid usage again.")] = False,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Refuse any request that free quota cannot pay for (or, with --off, allow it again)."""

    async def work(db: Database) -> None:
        await accounts.set_free_only(db, await _tenant_id(db, tenant), not off)

    run_with_db(settings_from(config, data_dir, database_url), work)
    typer.echo(f"{tenant}: free quota only {'off' if off else 'on'}.")
