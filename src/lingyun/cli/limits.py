"""``lingyun limits``: requests and tokens per minute, requests in flight, per subject."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lingyun.admission.limits import LimitRule
from lingyun.admission.rules import LimitService, LimitValues, Subject
from lingyun.cli.common import (
    ConfigOpt,
    DatabaseUrlOpt,
    DataDirOpt,
    JsonOpt,
    emit_json,
    run_with_db,
    settings_from,
)
from lingyun.store.db import Database

limits = typer.Typer(
    no_args_is_help=True,
    help="Rate limits per tenant, project or key (and model). Gateways apply changes within "
    "a second.",
)

TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Tenant name.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="Project name (with --tenant).")]
KeyOpt = Annotated[str | None, typer.Option("--key", help="API key id (key_...).")]


def _rule_dict(rule: LimitRule) -> dict[str, Any]:
    return {
        "scope": rule.scope,
        "subject_id": rule.subject_id,
        "tenant_id": rule.tenant_id,
        "model": rule.model or None,
        "rpm": rule.rpm,
        "tpm": rule.tpm,
        "concurrency": rule.concurrency,
        "burst": rule.burst,
    }


def _describe(rule: LimitRule) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("rpm", rule.rpm),
            ("tpm", rule.tpm),
            ("concurrency", rule.concurrency),
            ("burst", rule.burst),
        )
        if value is not None
    ]
    return f"{rule.scope} {rule.subject_id} model={rule.model or '*'}: {' '.join(parts) or '-'}"


@limits.command("set")
def set_limits(
    tenant: TenantOpt = None,
    project: ProjectOpt = None,
    key: KeyOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model [default: all together].")
    ] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute.")] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="Tokens per minute (prompt + output).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Requests in flight.")
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst",
            help="Requests that may arrive at once (per-second smoothing at rpm/60); 0 turns "
            "smoothing off [default: one second's worth].",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set limits (options not given keep their current value)."""
    settings = settings_from(config, data_dir, database_url)
    values = LimitValues(rpm=rpm, tpm=tpm, concurrency=concurrency, burst=burst)

    async def work(db: Database) -> tuple[Subject, LimitRule]:
        service = LimitService(db)
        subject = await service.subject(tenant=tenant, project=project, key=key)
        return subject, await service.set(subject, model or "", values)

    subject, rule = run_with_db(settings, work)
    if as_json:
        emit_json(_rule_dict(rule))
    else:
        typer.echo(f"Limits for {subject.label}: {_describe(rule)}")


@limits.command("list")
def list_limits(
    tenant: TenantOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List limits (of one tenant, or all)."""
    settings = settings_from(config, data_dir, database_url)

    async def work(db: Database) -> list[LimitRule]:
        service = LimitService(db)
        tenant_id = (await service.subject(tenant=tenant)).tenant_id if tenant else None
        return await service.list(tenant_id)

    rules = run_with_db(settings, work)
    if as_json:
        emit_json([_rule_dict(r) for r in rules])
    else:
        for rule in rules:
            typer.echo(_describe(rule))


@limits.command("clear")
def clear_limits(
    tenant: TenantOpt = None,
    project: ProjectOpt = None,
    key: KeyOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model's limits [default: all].")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a subject's limits."""
    settings = settings_from(config, data_dir, database_url)

    async def work(db: Database) -> tuple[Subject, int]:
        service = LimitService(db)
        subject = await service.subject(tenant=tenant, project=project, key=key)
        return subject, await service.clear(subject, model)

    subject, removed = run_with_db(settings, work)
    if as_json:
        emit_json({"removed": removed})
    else:
        typer.echo(f"Removed {removed} limit rule(s) of {subject.label}.")
