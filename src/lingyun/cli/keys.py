"""``lingyun keys``: create (shown once), list (never a secret), revoke, priority."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from lingyun.cli.common import (
    ConfigOpt,
    DatabaseUrlOpt,
    DataDirOpt,
    JsonOpt,
    emit_json,
    parse_expiry,
    run_with_db,
    settings_from,
)
from lingyun.store.models import ApiKey
from lingyun.tenancy.audit import CLI_ACTOR
from lingyun.tenancy.service import DEFAULT_PROJECT, TenancyService

keys = typer.Typer(no_args_is_help=True, help="API keys for the /v1 endpoints.")


@keys.command("create")
def create_key(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    project: Annotated[str, typer.Option("--project", help="Project name.")] = DEFAULT_PROJECT,
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expiry, ISO 8601 with a timezone.")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--model", help="Allow only this model (repeat for more); default: all."),
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key. The secret is printed once; only its hash is stored."""
    expires_at = parse_expiry(expires)
    settings = settings_from(config, data_dir, database_url)
    created = run_with_db(
        settings,
        lambda db: TenancyService(db).create_key(
            tenant, project, name, expires_at, actor=CLI_ACTOR, models=models or None
        ),
    )
    if as_json:
        emit_json(asdict(created))
    else:
        typer.echo(
            f"Created key {created.id} for {tenant}/{project}. Copy it now; it is not shown again:"
        )
        typer.echo(created.key)


@keys.command("list")
def list_keys(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a tenant's keys (prefixes only)."""
    settings = settings_from(config, data_dir, database_url)
    rows = run_with_db(settings, lambda db: TenancyService(db).list_keys(tenant))
    data = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "project_id": k.project_id,
            "created_at": k.created_at,
            "expires_at": k.expires_at,
            "revoked_at": k.revoked_at,
            "last_used_at": k.last_used_at,
        }
        for k in rows
    ]
    if as_json:
        emit_json(data)
    else:
        for k in rows:
            state = "revoked" if k.revoked_at else "active"
            typer.echo(f"{k.id}  {k.prefix}…  {k.name or '-'}  {state}")


@keys.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a key; gateways stop accepting it within a second."""
    settings = settings_from(config, data_dir, database_url)
    run_with_db(settings, lambda db: TenancyService(db).revoke_key(key_id, actor=CLI_ACTOR))
    typer.echo(f"Revoked {key_id}.")


@keys.command("priority")
def key_priority(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    priority: Annotated[str, typer.Argument(help="interactive, standard, batch, or none.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set the key's priority band (none: its project's); gateways follow within a second."""
    settings = settings_from(config, data_dir, database_url)
    value = None if priority == "none" else priority
    run_with_db(
        settings,
        lambda db: TenancyService(db).set_priority(ApiKey, key_id, value, actor=CLI_ACTOR),
    )
    typer.echo(f"Key {key_id}: priority {priority}.")
