"""``lingyun admin create-user``, ``lingyun models grant|revoke``, ``lingyun audit``.

Every change here is audited with actor and source ``cli``.
"""

from __future__ import annotations

import sys
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
from lingyun.store.db import Database
from lingyun.tenancy.audit import CLI_ACTOR, list_events
from lingyun.tenancy.grants import GrantService
from lingyun.tenancy.roles import Role
from lingyun.tenancy.service import TenancyService
from lingyun.tenancy.users import UserService

admin = typer.Typer(no_args_is_help=True, help="Users of the admin API.")

TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant name.")]


@admin.command("create-user")
def create_user(
    email: Annotated[str, typer.Argument(help="The user's email (their login).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    platform_admin: Annotated[
        bool, typer.Option("--platform-admin", help="Make the user a platform admin.")
    ] = False,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Bind the user into this tenant.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="...and this project (project roles).")
    ] = None,
    role: Annotated[
        str | None,
        typer.Option("--role", help="tenant_admin, project_admin, member or viewer."),
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user who can log in to /admin/v1 (bootstrap: --platform-admin)."""
    if not password_stdin:
        fail("pass the password on stdin with --password-stdin (never as an argument)")
    password = sys.stdin.readline().rstrip("\r\n")
    if platform_admin and (tenant or role):
        fail("--platform-admin takes no --tenant or --role")
    if (tenant is None) != (role is None):
        fail("--tenant and --role go together")
    try:
        bound = Role(role) if role is not None else None
    except ValueError:
        fail(f"unknown role {role!r}")
    if bound is Role.PLATFORM_ADMIN:
        fail("use --platform-admin")

    async def work(db: Database) -> dict[str, str | None]:
        tenant_id = project_id = None
        if tenant is not None:
            if project is not None:
                t, p = await TenancyService(db).project(tenant, project)
                tenant_id, project_id = t.id, p.id
            else:
                tenant_id = (await TenancyService(db).tenant(tenant)).id
        final_role = Role.PLATFORM_ADMIN if platform_admin else bound
        user = await UserService(db).create_user(
            email, password, actor=CLI_ACTOR, role=final_role, tenant_id=tenant_id,
            project_id=project_id,
        )  # fmt: skip
        return {"id": user.id, "email": user.email, "role": final_role}

    created = run_with_db(settings_from(config, data_dir, database_url), work)
    if as_json:
        emit_json(created)
    else:
        typer.echo(f"Created user {created['email']} ({created['id']}).")


async def _ids(db: Database, tenant: str, project: str | None) -> tuple[str, str | None]:
    if project is None:
        return (await TenancyService(db).tenant(tenant)).id, None
    t, p = await TenancyService(db).project(tenant, project)
    return t.id, p.id


def grant(
    model: Annotated[str, typer.Argument(help="Model name, or '*' for every model.")],
    tenant: TenantOpt,
    project: Annotated[str | None, typer.Option("--project", help="Project name.")] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Allow a tenant (or one project) to use a model. Once a tenant or project has any
    grant, it sees only the granted models."""

    async def work(db: Database) -> None:
        tenant_id, project_id = await _ids(db, tenant, project)
        await GrantService(db).grant(tenant_id, model, project_id, actor=CLI_ACTOR)

    run_with_db(settings_from(config, data_dir, database_url), work)
    where = f"{tenant}/{project}" if project else tenant
    typer.echo(f"Granted {model} to {where}.")


def revoke(
    model: Annotated[str, typer.Argument(help="Model name, or '*'.")],
    tenant: TenantOpt,
    project: Annotated[str | None, typer.Option("--project", help="Project name.")] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Withdraw a grant (with no grants left, the tenant or project sees every model)."""

    async def work(db: Database) -> None:
        tenant_id, project_id = await _ids(db, tenant, project)
        await GrantService(db).revoke(tenant_id, model, project_id, actor=CLI_ACTOR)

    run_with_db(settings_from(config, data_dir, database_url), work)
    where = f"{tenant}/{project}" if project else tenant
    typer.echo(f"Revoked {model} from {where}.")


def audit(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant name [default: every tenant].")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log, newest first."""

    async def work(db: Database) -> list[dict[str, object]]:
        tenant_id = (await TenancyService(db).tenant(tenant)).id if tenant else None
        rows = await list_events(db, tenant_id=tenant_id, limit=limit)
        return [
            {"id": e.id, "created_at": e.created_at, "actor": e.actor, "source": e.source,
             "action": e.action, "tenant_id": e.tenant_id, "project_id": e.project_id,
             "target_type": e.target_type, "target_id": e.target_id, "details": e.details}
            for e in rows
        ]  # fmt: skip

    events = run_with_db(settings_from(config, data_dir, database_url), work)
    if as_json:
        emit_json(events)
        return
    for e in events:
        typer.echo(
            f"{e['created_at']}  {e['actor']}@{e['source']}  {e['action']}  "
            f"{e['target_type']}:{e['target_id']}"
        )
