"""``lingyun tenants`` and ``lingyun projects``."""

from __future__ import annotations

from typing import Annotated

import typer

from lingyun.cli.common import (
    ConfigOpt,
    DatabaseUrlOpt,
    DataDirOpt,
    JsonOpt,
    emit_json,
    fail,
    run_with_db,
    settings_from,
)
from lingyun.errors import LingyunError
from lingyun.store.db import Database
from lingyun.store.models import Project
from lingyun.tenancy.audit import CLI_ACTOR
from lingyun.tenancy.prompt_logging import parse_retention, set_prompt_logging
from lingyun.tenancy.service import TenancyService

tenants = typer.Typer(no_args_is_help=True, help="Organisations that own projects and keys.")
projects = typer.Typer(no_args_is_help=True, help="Workspaces inside a tenant.")


@tenants.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Unique tenant name.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant (with a project named 'default')."""
    settings = settings_from(config, data_dir, database_url)
    tenant = run_with_db(
        settings, lambda db: TenancyService(db).create_tenant(name, actor=CLI_ACTOR)
    )
    if as_json:
        emit_json({"id": tenant.id, "name": tenant.name})
    else:
        typer.echo(f"Created tenant {tenant.name} ({tenant.id}).")


@tenants.command("update")
def update_tenant(
    name: Annotated[str, typer.Argument(help="Tenant name.")],
    weight: Annotated[
        float | None, typer.Option("--weight", help="Share under the fair scheduler (> 0).")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's settings."""
    settings = settings_from(config, data_dir, database_url)
    tenant = run_with_db(
        settings, lambda db: TenancyService(db).update_tenant(name, weight=weight, actor=CLI_ACTOR)
    )
    if as_json:
        emit_json({"id": tenant.id, "name": tenant.name, "weight": tenant.weight})
    else:
        typer.echo(f"Updated tenant {tenant.name}: weight {tenant.weight}.")


@tenants.command("list")
def list_tenants(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List tenants."""
    settings = settings_from(config, data_dir, database_url)
    rows = run_with_db(settings, lambda db: TenancyService(db).list_tenants())
    data = [{"id": t.id, "name": t.name, "created_at": t.created_at} for t in rows]
    if as_json:
        emit_json(data)
    else:
        for t in rows:
            typer.echo(f"{t.id}  {t.name}")


@projects.command("create")
def create_project(
    name: Annotated[str, typer.Argument(help="Project name, unique within the tenant.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a project inside a tenant."""
    settings = settings_from(config, data_dir, database_url)
    project = run_with_db(
        settings, lambda db: TenancyService(db).create_project(tenant, name, actor=CLI_ACTOR)
    )
    if as_json:
        emit_json({"id": project.id, "name": project.name, "tenant_id": project.tenant_id})
    else:
        typer.echo(f"Created project {project.name} ({project.id}) in tenant {tenant}.")


@projects.command("prompt-logging")
def prompt_logging(
    name: Annotated[str, typer.Argument(help="Project name.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    retention: Annotated[
        str | None,
        typer.Option(
            "--retention", help="Turn it on, keeping text this long: 3600, 90s, 30m, 12h, 7d."
        ),
    ] = None,
    off: Annotated[
        bool, typer.Option("--off", help="Turn it off and erase what is stored.")
    ] = False,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store this project's prompts and completions for a retention period, or stop.

    Running gateways see the change when they next look a key up (within the key cache's TTL).
    """
    if (retention is None) == (not off):
        fail("Give --retention DURATION to turn prompt logging on, or --off.")
    try:
        seconds = None if off else parse_retention(retention or "")
    except LingyunError as exc:
        fail(str(exc))

    async def work(db: Database) -> Project:
        _, project = await TenancyService(db).project(tenant, name)
        return await set_prompt_logging(db, project.id, seconds, CLI_ACTOR)

    project = run_with_db(settings_from(config, data_dir, database_url), work)
    if as_json:
        emit_json({"id": project.id, "prompt_log_retention_seconds": seconds})
    elif seconds is None:
        typer.echo(f"Prompt logging of {tenant}/{name} is off; its stored prompts are erased.")
    else:
        typer.echo(f"Prompt logging of {tenant}/{name} is on, kept {seconds} s.")


@projects.command("priority")
def project_priority(
    name: Annotated[str, typer.Argument(help="Project name.")],
    priority: Annotated[str, typer.Argument(help="interactive, standard, batch, or none.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set the priority band of the project's keys (a key's own priority overrides it)."""
    settings = settings_from(config, data_dir, database_url)
    value = None if priority == "none" else priority

    async def apply(db: Database) -> None:
        service = TenancyService(db)
        _, project = await service.project(tenant, name)
        await service.set_priority(Project, project.id, value, actor=CLI_ACTOR)

    run_with_db(settings, apply)
    typer.echo(f"Project {tenant}/{name}: priority {priority}.")
